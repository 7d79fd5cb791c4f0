"""Training recipes (joint, sequential, independent) and ``fit``, which runs one on any model."""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from ..datasets.base import ConceptDataset, ConceptSplits
from ..models.base import ConceptModel, predict
from ..models.heads import check_task
from ..runtime import seeded
from .config import TrainConfig
from .data import ConceptDataModule, ImageDataModule
from .intcem import IntCEMLearner
from .learner import ConceptLearner, Stage
from .losses import concept_pos_weight, task_class_weights
from .posthoc import check_posthoc, fit_residual_as_authors, fit_sparse_head
from .stage_logger import StageLogger

RECIPES: tuple[str, ...] = ("joint", "sequential", "independent", "intcem", "posthoc")
"""The training recipes ``fit`` accepts, by name."""


def recipe_stages(recipe: str, config: TrainConfig) -> list[Stage]:
    """The stages of ``recipe`` (Koh et al., ICML 2020).

    joint: one stage, L_task + concept_weight * L_concept, all parameters.
    sequential: x->c on the concept loss, then c->y on the *predicted* concepts (encoder frozen).
    independent: x->c on the concept loss, then c->y on the *true* concepts.
    intcem: one stage, IntCEM's trajectory objective (Espinosa Zarlenga et al., NeurIPS 2023).
    posthoc: a PCBM's elastic-net head, solved exactly on the fixed concept bank, then (PCBM-h) the
    residual on the task loss with the head frozen, as its authors train it or with Lightning
    (``config.posthoc.residual``; Yuksekgonul et al., ICLR 2023).

    Args:
        recipe: ``joint``, ``sequential``, ``independent``, ``intcem`` or ``posthoc``.
        config: The training settings (loss weights, RandInt, PCBM options).

    Returns:
        The stages, in training order.

    Raises:
        ValueError: An unknown recipe.

    Examples:
        >>> from conceptlab.training import TrainConfig, recipe_stages
        >>> [stage.name for stage in recipe_stages("sequential", TrainConfig())]
        ['concepts', 'task']
    """
    randint = dict(intervention_prob=config.intervention_prob, intervention_per=config.intervention_per)
    concepts_first = Stage("concepts", "concepts", task_weight=0.0, concept_weight=1.0)
    if recipe == "joint":
        return [Stage("joint", "all", task_weight=1.0, concept_weight=config.concept_weight, **randint)]
    if recipe == "sequential":
        return [concepts_first, Stage("task", "task", task_weight=1.0, concept_weight=0.0)]
    if recipe == "independent":
        return [concepts_first, Stage("task", "task", task_weight=1.0, concept_weight=0.0, true_concepts=True)]
    if recipe == "intcem":
        return [Stage("intcem", "all", task_weight=1.0, concept_weight=config.concept_weight, trajectories=True, **randint)]
    if recipe == "posthoc":
        residual = "fixed-epochs" if config.posthoc.residual == "authors" else "lightning"
        return [Stage("head", "task", task_weight=1.0, concept_weight=0.0, solver="elastic-net"),
                Stage("residual", "residual", task_weight=1.0, concept_weight=0.0, solver=residual)]
    raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")


@dataclass(frozen=True)
class FitReport:
    """What training did: epochs (summed over stages), wall time, epochs per stage, and each
    stage's per-epoch ``train_loss`` and ``val_loss``.

    Attributes:
        epochs: Epochs trained, summed over stages.
        seconds: Wall time of the fit.
        stage_epochs: Epochs of each stage, by name.
        history: Each stage's per-epoch ``train_loss`` and ``val_loss`` (and its learner's diagnostics).
    """

    epochs: int
    seconds: float
    stage_epochs: dict[str, int]
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)


class _History(Callback):
    """Mean training and validation loss of every epoch, and the learner's own ``epoch_metrics``."""

    def __init__(self, epoch_metrics: tuple[str, ...] = ()) -> None:
        self.losses: dict[str, list[float]] = {"train_loss": [], "val_loss": [], **{name: [] for name in epoch_metrics}}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        means = pl_module.epoch_means()  # callbacks run before the learner logs (and resets) them
        for name in self.losses:
            if name != "val_loss" and name in means:
                self.losses[name].append(round(means[name], 6))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and "val_loss" in trainer.callback_metrics:
            self.losses["val_loss"].append(round(float(trainer.callback_metrics["val_loss"]), 6))


class _RestoreBestWeights(Callback):
    """Keep the weights of the epoch with the lowest validation loss and restore them at the end."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics["val_loss"])
        if loss < self.best:
            self.best = loss
            self.state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's per-fit banners and its own deprecation notices during one fit."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"lightning\..*")
            warnings.filterwarnings("ignore", message=r".*treespec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def check_compatible(model: ConceptModel, data: ConceptSplits | ConceptDataset) -> None:
    """Fail with the fix when ``model`` cannot read ``data``: concepts, classes, input width, samples."""
    parts = [data.train, data.val, data.test] if isinstance(data, ConceptSplits) else [data]
    info = parts[0].info
    if model.n_concepts and model.n_concepts != info.n_concepts:
        raise ValueError(
            f"the model predicts {model.n_concepts} concepts but the data has {info.n_concepts}; "
            f"build the model with n_concepts={info.n_concepts}"
        )
    check_task(model.task, info.task)
    if model.n_classes != info.n_classes:
        raise ValueError(
            f"the model predicts {model.n_classes} classes but the data has {info.n_classes}; "
            f"build the model with n_classes={info.n_classes}"
        )
    if model.n_concepts and model.continuous != info.continuous_indices():
        raise ValueError(f"the model reads concepts {list(model.continuous)} as continuous but the data's continuous concepts "
                         f"are {list(info.continuous_indices())}; build the model with continuous=info.continuous_indices() "
                         "(a PCBM's bank is fitted from binary labels: it takes no continuous concepts)")
    if model.categorical and model.categorical != info.categorical_indices():
        raise ValueError(f"the model's categorical concepts {[list(g) for g in model.categorical]} differ from the data's "
                         f"{[list(g) for g in info.categorical_indices()]}; build the model with "
                         "categorical=info.categorical_indices()")
    width = (model.build_spec or {}).get("kwargs", {}).get("in_features")
    x = parts[0].features
    if width and x is not None and x.ndim == 2 and x.shape[1] != width:
        raise ValueError(f"the model takes inputs of {width} features but the data's x has {x.shape[1]}; "
                         f"build the model with in_features={x.shape[1]}")


# recipes that write true concept labels into the model, so every training and validation label must be known
NEEDS_EVERY_LABEL = {
    "independent": "trains the head on the true concepts",
    "intcem": "corrects concepts with their true labels along its trajectories (missing labels: not yet supported)",
}


def check_known_labels(splits: ConceptSplits, recipe: str) -> None:
    """Refuse missing concept labels (NaN) for a recipe that reads every true label, saying which can train on them."""
    missing = int(torch.isnan(splits.train.c).sum()) + int(torch.isnan(splits.val.c).sum())
    if missing and recipe in NEEDS_EVERY_LABEL:
        raise ValueError(f"the {recipe} recipe {NEEDS_EVERY_LABEL[recipe]}, but {missing} training/validation concept "
                         "label(s) are missing (NaN); use the joint or sequential recipe, which learn from the known "
                         "labels only")


def fit(
    model: ConceptModel,
    splits: ConceptSplits,
    recipe: str = "joint",
    *,
    config: TrainConfig | None = None,
    loggers: list | None = None,
    callbacks: list[Callback] | None = None,
) -> FitReport:
    """Train ``model`` in place on ``splits`` with ``recipe``; returns epochs, wall time and the
    per-epoch losses of every stage.

    Each stage early-stops on its validation loss and ends with the weights of its best epoch
    (``config.keep = "last"``: of its last epoch).
    Afterwards the model learns its intervention values from the training set (logit CBMs).
    ``loggers`` (Lightning loggers, e.g. ``TensorBoardLogger``) receive every logged metric, each
    stage's as ``STAGE/NAME`` when several stages train; they are flushed but left open, so that
    the caller can add final metrics to the same run (then call their ``finalize``).
    ``callbacks`` (Lightning callbacks) join every Lightning-trained stage, e.g. to report each
    validation epoch to a hyperparameter scheduler.

    Args:
        model: A conceptlab model; it is trained in place.
        splits: Train, validation (early stopping, the schedule) and test splits.
        recipe: ``joint``, ``sequential``, ``independent``, ``intcem`` or ``posthoc`` (``recipe_stages``).
        config: Optimiser, schedule, early stopping, loss weights, device; default ``TrainConfig()``.
        loggers: Lightning loggers that receive every logged metric.
        callbacks: Lightning callbacks added to every Lightning-trained stage.

    Raises:
        ValueError: An empty split, a model that does not read these data, or missing concept labels (NaN)
            for the independent or intcem recipe.

    Returns:
        A ``FitReport``: epochs per stage, seconds, and the loss history.

    Examples:
        >>> from conceptlab.datasets import xor
        >>> from conceptlab.models import cbm
        >>> from conceptlab.training import TrainConfig, fit
        >>> report = fit(cbm(in_features=2, n_concepts=2, n_classes=2), xor(size=200), "joint", config=TrainConfig(max_epochs=2))
        >>> report.epochs
        2
    """
    config = config or TrainConfig()
    check_compatible(model, splits)
    check_posthoc(model, recipe)
    for part, name in ((splits.train, "training"), (splits.val, "validation")):
        if len(part) == 0:
            hint = " (early stopping and the learning-rate schedule read it)" if name == "validation" else ""
            raise ValueError(f"the {name} split is empty{hint}; give it samples, e.g. split_dataset(data, (0.7, 0.1, 0.2))")
    check_known_labels(splits, recipe)
    stages = recipe_stages(recipe, config)
    if model.n_concepts == 0:
        stages = [s for s in stages if s.task_weight > 0]
    if not model.residual_parameters():
        stages = [s for s in stages if s.trainable != "residual"]
    pos_weight = concept_pos_weight(splits.train.c) if config.concept_class_weighting else None
    class_weight = task_class_weights(splits.train.y, model.n_classes, model.task) if config.task_class_weighting else None
    start = time.perf_counter()
    stage_epochs: dict[str, int] = {}
    history: dict[str, dict[str, list[float]]] = {}
    trained = sum(s.solver == "lightning" for s in stages)  # stages Lightning runs
    for index, stage in enumerate(stages):
        if stage.solver == "fixed-epochs":
            losses = fit_residual_as_authors(model, splits.train, config.seed + index)
            stage_epochs[stage.name] = len(losses)
            history[stage.name] = {"train_loss": losses, "val_loss": []}
            continue
        if stage.solver == "elastic-net":
            solution = fit_sparse_head(model, splits.train, config.posthoc)
            stage_epochs[stage.name] = solution.iterations
            history[stage.name] = {"train_loss": [round(v, 6) for v in solution.objective], "val_loss": []}
            if not solution.converged:
                warnings.warn(f"the sparse head stopped at max_iter={config.posthoc.max_iter} before reaching "
                              f"tol={config.posthoc.tol}; raise train.posthoc.max_iter", RuntimeWarning, stacklevel=2)
            continue
        learner = (IntCEMLearner if stage.trajectories else ConceptLearner)(model, stage, config, pos_weight=pos_weight,
                                                                              class_weight=class_weight)
        recorder = _History(learner.epoch_metrics)
        stage_loggers = [StageLogger(lg, stage.name if trained > 1 else None) for lg in loggers or []]
        with _quiet_lightning():
            trainer = _trainer(config, [recorder, *(callbacks or [])], stage_loggers)
        data = _datamodule(splits, config, seed=config.seed + index)
        try:
            with seeded(config.seed + index, trainer.strategy.root_device), _quiet_lightning():
                trainer.fit(learner, datamodule=data)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
        stage_epochs[stage.name] = trainer.current_epoch
        history[stage.name] = recorder.losses
    if model.n_concepts:
        model.calibrate_concepts(splits.val.inputs, splits.val.c)
        model.calibrate_interventions(predict(model, splits.train.inputs).concept_logits)
    return FitReport(sum(stage_epochs.values()), time.perf_counter() - start, stage_epochs, history)


def _datamodule(splits, config: TrainConfig, seed: int) -> L.LightningDataModule:
    """Tensor splits live on the device and are sliced; image splits go through DataLoaders."""
    if splits.train.features is not None:
        return ConceptDataModule(splits, config.batch_size, seed=seed)
    return ImageDataModule(splits, config.batch_size, num_workers=config.num_workers, seed=seed)


def _trainer(config: TrainConfig, extra: list[Callback], loggers: list | None) -> L.Trainer:
    callbacks: list[Callback] = [*([_RestoreBestWeights()] if config.keep == "best" else []), *extra]
    if config.early_stopping_patience > 0:
        callbacks.append(EarlyStopping("val_loss", patience=config.early_stopping_patience))
    return L.Trainer(
        accelerator=config.device,
        devices=config.devices,
        max_epochs=config.max_epochs,
        callbacks=callbacks,
        logger=loggers or False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
