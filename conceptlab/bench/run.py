"""One run of a grid: train and evaluate one (model, seed) and return its record; every executor calls it."""

from __future__ import annotations

import time
import traceback
from dataclasses import replace
from typing import Any

from ..concepts.bank import BANK_SUFFIX
from ..datasets.registry import load_dataset, settings_dict
from ..models.io import save_model
from ..runtime import seeded
from ..training.recipes import fit
from .evaluation import evaluate_run, evaluate_split
from .plan import RunPlan, plan_record
from .spec import BenchSpec
from .tracking import RunTracker, final_metrics, flat_params
from .zoo import LABEL_FREE, MODEL_KEYS


def run_one(plan: RunPlan, callbacks: list | None = None) -> dict[str, Any]:
    """Train and evaluate one (model, seed); the seed draws the data and initialises the model.
    ``callbacks`` (Lightning callbacks) join its training, e.g. Ray Tune's per-epoch report.

    Args:
        plan: The run: benchmark (at its sweep point), model key, seed, output folder.
        callbacks: Lightning callbacks added to its training.

    Returns:
        The run's record (metrics, curves, timings, checkpoint path).

    Examples:
        >>> import tempfile
        >>> from conceptlab.bench import RunPlan, parse_spec, run_one
        >>> spec = parse_spec({"dataset": {"name": "xor", "size": 200}, "models": ["cem"], "seeds": 1,
        ...                    "train": {"max_epochs": 2}, "evaluation": {"intervention_policies": ["random"]}}, "tiny")
        >>> record = run_one(RunPlan(spec, "cem", seed=0, out_dir=tempfile.mkdtemp()))
        >>> record["status"], record["benchmark"], record["epochs"]
        ('ok', 'tiny', 2)
    """
    spec, key = plan.spec, MODEL_KEYS[plan.model]
    record = plan_record(plan)
    started = time.perf_counter()
    tracker = None
    try:
        dataset, bank = settings_dict(spec.dataset), None
        if key.recipe == LABEL_FREE:  # the fit chooses the concepts; the splits are relabelled to them
            model, splits, report = fit_label_free_run(spec, plan.seed)
            dataset["labelled_as"] = list(splits.info.concept_names)
        else:
            splits = load_dataset(spec.dataset, seed=plan.seed)
            with seeded(plan.seed):
                features = splits.train.features
                in_features = features.shape[1] if features is not None else 0  # images: the backbone decides
                model = key.build(in_features, splits.info, spec.model)
            bank = training_bank(splits, spec, plan.seed) if key.bank else None
            if bank is not None:
                model.set_bank(bank)
            train_config = key.train_config(replace(spec.train, seed=plan.seed), spec.model)
            if plan.tracker:
                tags = {"benchmark": spec.name, "model": plan.model, "seed": plan.seed, "config_hash": record["config_hash"]}
                params = {**flat_params(record["config"]), **{f"sweep.{k}": str(v) for k, v in record["sweep_point"].items()}}
                tracker = RunTracker(plan.tracker, plan.out_dir, spec.name, plan.name.removeprefix(f"{spec.name}-"), tags, params)
            report = fit(model, splits, key.recipe, config=train_config, loggers=[tracker.logger] if tracker else None,
                         callbacks=callbacks)
        metrics = evaluate_run(model, splits, spec.evaluation, seed=plan.seed)
        validation = evaluate_split(model, splits.val, spec.evaluation)
        if bank is not None:  # beside the checkpoint, so that `conceptlab explore` can draw counterfactuals
            bank.save(plan.checkpoint.with_name(plan.checkpoint.stem + BANK_SUFFIX), checkpoint=plan.checkpoint.name)
        save_model(
            model.cpu(), plan.checkpoint, splits.info,
            bench=spec.name, model_key=plan.model, seed=plan.seed, dataset=dataset,
            evaluation=spec.evaluation.to_dict(), config_hash=record["config_hash"],
        )
        record.update(
            status="ok",
            **metrics,
            **{f"val_{k}": v for k, v in validation.items()},
            history=report.history,
            epochs=report.epochs,
            stage_epochs=report.stage_epochs,
            train_seconds=round(report.seconds, 3),
            checkpoint=str(plan.checkpoint),
        )
    except Exception as err:  # a failed run is recorded and the grid goes on
        record.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
    record["wall_seconds"] = round(time.perf_counter() - started, 3)
    if tracker is not None:
        ok = record["status"] == "ok"
        tracker.finish(final_metrics(record) if ok else {}, "success" if ok else "failed")
    return record


def fit_label_free_run(spec: BenchSpec, seed: int):
    """A label-free CBM fitted on a dataset that carries image-text embeddings (``planted``), with the
    splits relabelled to the concepts the fit kept; the report's stages are the projection's steps and
    the head solver's iterations.

    Raises:
        ValueError: A dataset without image-text embeddings.
    """
    from ..datasets.planted import PlantedSettings, planted_data
    from ..training import FitReport, fit_label_free

    options = spec.dataset
    if not isinstance(options, PlantedSettings) or options.labelled_as:
        raise ValueError("the lfcbm key reads image and concept-text embeddings, which only the planted dataset "
                         "carries (dataset: {name: planted}); fit your own with conceptlab.training.fit_label_free")
    data = planted_data(options, seed)
    started = time.perf_counter()
    model, report = fit_label_free(data.splits.train, data.splits.val, image_embeddings=data.image_embeddings[:2],
                                   text_embeddings=data.text_embeddings, concept_names=data.concept_names,
                                   class_text_embeddings=data.class_text_embeddings, seed=seed)
    stages = {"projection": report.projection_steps, "head": report.head.iterations}
    history = {"head": {"train_loss": [round(v, 6) for v in report.head.objective], "val_loss": []}}
    return model, data.labelled_as(report.concepts), FitReport(sum(stages.values()), time.perf_counter() - started,
                                                               stages, history)


def training_bank(splits, spec: BenchSpec, seed: int):
    """A PCBM's concept bank, fitted on the training split's embeddings and concept labels."""
    from ..concepts.bank import bank_from_labels

    if splits.train.features is None:
        raise ValueError("pcbm and pcbm-h read embeddings: use the dataset in frozen mode (dataset.mode: frozen), "
                         "not images")
    return bank_from_labels(splits.train.x, splits.train.c, splits.info.concept_names, examples=spec.model.bank_examples,
                            alpha=spec.model.bank_alpha, seed=seed)
