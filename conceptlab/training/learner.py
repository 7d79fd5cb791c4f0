"""The LightningModule that trains any concept model through one training stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from ..models.base import ConceptModel, Intervention
from ..models.heads import task_loss
from .config import TrainConfig
from .losses import concept_loss


@dataclass(frozen=True)
class Stage:
    """One optimisation problem of a recipe.

    ``trainable`` picks the parameters that learn: ``all``, ``concepts`` (input-to-concept part),
    ``task`` (the head) or ``residual`` (a path around the concepts: PCBM-h). ``true_concepts`` feeds the head the true concepts (independent CBM).
    ``intervention_prob`` > 0 enables RandInt: random training-time interventions with true values.
    ``trajectories`` trains with IntCEM's sampled intervention trajectories (``training.intcem``).

    Attributes:
        name: The stage's name (logged metrics are prefixed with it when a recipe has several).
        trainable: ``all``, ``concepts``, ``task`` or ``residual``.
        task_weight: Weight of the task loss.
        concept_weight: Weight of the concept loss.
        true_concepts: Feed the head the true concepts (independent CBM).
        intervention_prob: RandInt: probability of a training-time intervention.
        intervention_per: Draw RandInt's mask per ``sample`` or per ``batch``.
        trajectories: Train with IntCEM's sampled intervention trajectories.
        solver: ``lightning``, ``elastic-net`` (the PCBM head, solved exactly) or ``fixed-epochs`` (PCBM-h's residual as its authors train it).
    """

    name: str
    trainable: Literal["all", "concepts", "task", "residual"]
    task_weight: float
    concept_weight: float
    true_concepts: bool = False
    intervention_prob: float = 0.0
    intervention_per: Literal["sample", "batch"] = "sample"
    trajectories: bool = False
    # elastic-net: the head solved exactly; fixed-epochs: PCBM-h's residual as its authors train it (training.posthoc)
    solver: Literal["lightning", "elastic-net", "fixed-epochs"] = "lightning"


class ConceptLearner(L.LightningModule):
    """Optimises ``task_weight * L_task + concept_weight * L_concept`` for one ``Stage``.

    Args:
        model: The model trained.
        stage: The stage's objective and trainable parameters.
        config: The training settings.
        pos_weight: (k,) weights of each concept's positive term.
        class_weight: (n_classes,) weights of each class's samples in the task loss (a multilabel
            task: each label's positive weight).

    Examples:
        >>> from conceptlab.models import cbm
        >>> from conceptlab.training import ConceptLearner, TrainConfig, recipe_stages
        >>> config = TrainConfig()
        >>> learner = ConceptLearner(cbm(in_features=2, n_concepts=2, n_classes=2), recipe_stages("joint", config)[0], config)
        >>> learner.stage.name
        'joint'
    """

    def __init__(self, model: ConceptModel, stage: Stage, config: TrainConfig, *, pos_weight: Tensor | None = None,
                 class_weight: Tensor | None = None):
        super().__init__()
        self.model = model
        self.stage = stage
        self.config = config
        self.register_buffer("pos_weight", pos_weight, persistent=False)
        self.register_buffer("class_weight", class_weight, persistent=False)
        self._uses_concepts = model.n_concepts > 0 and (stage.concept_weight > 0 or stage.true_concepts)
        self._epoch_sums: dict[str, tuple[Tensor, int]] = {}

    def _intervention(self, c: Tensor, training: bool) -> Intervention | None:
        if self.model.n_concepts == 0:
            return None
        if self.stage.true_concepts:
            return Intervention.all(c)
        p = self.stage.intervention_prob
        if training and p > 0:
            shape = c.shape if self.stage.intervention_per == "sample" else (1, c.shape[1])
            mask = (torch.rand(shape, device=c.device) < p).expand_as(c) & ~torch.isnan(c)  # missing labels: never
            if self.model.categorical:  # a categorical concept is corrected whole (its first member's draw), or not at all
                mask = mask.clone()
                for members in self.model.categorical:
                    index = list(members)
                    mask[:, index] = (mask[:, index[:1]] & ~torch.isnan(c[:, index]).any(1, keepdim=True)).expand(-1, len(index))
            return Intervention(mask, c)
        return None

    #: Per-epoch diagnostics this learner logs beside ``train_loss`` and ``val_loss`` (kept in ``FitReport.history``).
    epoch_metrics: tuple[str, ...] = ()

    def loss_terms(self, batch: tuple[Tensor, Tensor, Tensor], training: bool) -> dict[str, Tensor]:
        """The weighted terms of this stage's objective on one batch, by name; the loss is their sum.

        Args:
            batch: ``(x, c, y)``: inputs, concept labels, task labels.
            training: Whether this is a training step (RandInt and trajectories run only then).
        """
        x, c, y = batch
        out = self.model(x, self._intervention(c, training))
        terms: dict[str, Tensor] = {}
        if self.stage.task_weight:
            terms["task"] = self.stage.task_weight * task_loss(out.task_logits, y, class_weight=self.class_weight,
                                                               task=self.model.task)
        if self.stage.concept_weight and out.concept_logits is not None:
            own = self.model.concept_objective(out, c, self.pos_weight, y=y)
            if "concept" not in own:
                own = {"concept": concept_loss(out.concept_logits, c, self.pos_weight, categorical=self.model.categorical,
                                               continuous=self.model.continuous), **own}
            terms.update({name: self.stage.concept_weight * value if name == "concept" else value for name, value in own.items()})
        return terms

    def _loss(self, batch: tuple[Tensor, Tensor, Tensor], training: bool) -> Tensor:
        return sum(self.loss_terms(batch, training).values())

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch, training=True)
        self.accumulate("train_loss", loss, batch[0].shape[0])
        return loss

    def accumulate(self, name: str, value: Tensor | float, weight: int = 1) -> None:
        """Add one training step's ``value`` to the epoch's ``weight``-weighted mean of ``name``,
        logged once when the epoch ends. ``self.log`` in every step cost about 1 ms each (a third
        of a small model's step); the logged means are the same."""
        value = value.detach() if isinstance(value, Tensor) else torch.tensor(float(value))
        total, count = self._epoch_sums.get(name, (0.0, 0))
        self._epoch_sums[name] = (total + value * weight, count + weight)

    def epoch_means(self) -> dict[str, float]:
        """The means accumulated so far in this training epoch, by name."""
        return {name: float(total / count) for name, (total, count) in self._epoch_sums.items()}

    def on_train_epoch_start(self) -> None:
        self.model.on_epoch(self.current_epoch, self.trainer.max_epochs or 1)

    def on_train_epoch_end(self) -> None:
        for name, (total, count) in self._epoch_sums.items():
            self.log(name, total / count)
        self._epoch_sums = {}

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch, training=False), batch_size=batch[0].shape[0], prog_bar=True)

    def _trainable_parameters(self) -> list[torch.nn.Parameter]:
        if self.stage.trainable == "concepts":
            return self.model.concept_parameters()
        if self.stage.trainable == "task":
            return self.model.task_parameters()
        if self.stage.trainable == "residual":
            return self.model.residual_parameters()
        return list(self.model.parameters())

    def configure_optimizers(self):
        params = self._trainable_parameters()
        trainable = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trainable)
        cfg = self.config
        if cfg.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}
