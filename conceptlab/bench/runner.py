"""Run a benchmark grid (models x seeds), resumably, in parallel worker processes."""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..concepts.bank import BANK_SUFFIX
from ..datasets.registry import load_dataset, prepare_shared, settings_dict
from ..models.io import save_model
from ..processes import WorkerPool, sigterm_as_exit
from ..runtime import seeded
from ..training.recipes import fit
from .evaluation import evaluate_run, evaluate_split
from .plan import RunPlan, plan_record
from .spec import BenchSpec
from .store import RunStore
from .tracking import RunTracker, final_metrics, flat_params
from .worker import setup_worker
from .zoo import MODEL_KEYS

log = logging.getLogger(__name__)


def run_one(plan: RunPlan, callbacks: list | None = None) -> dict[str, Any]:
    """Train and evaluate one (model, seed); the seed draws the data and initialises the model.
    ``callbacks`` (Lightning callbacks) join its training, e.g. Ray Tune's per-epoch report."""
    spec, key = plan.spec, MODEL_KEYS[plan.model]
    record = plan_record(plan)
    started = time.perf_counter()
    tracker = None
    try:
        splits = load_dataset(spec.dataset, seed=plan.seed)
        with seeded(plan.seed):
            in_features = splits.train.x.shape[1] if hasattr(splits.train, "x") else 0  # images: the backbone decides
            model = key.build(in_features, splits.info, spec.model)
        bank = training_bank(splits, spec, plan.seed) if key.bank else None
        if bank is not None:
            model.set_bank(bank)
        train_config = key.train_config(replace(spec.train, seed=plan.seed), spec.model)
        if plan.tracker:
            tags = {"dataset": spec.name, "model": plan.model, "seed": plan.seed, "config_hash": record["config_hash"]}
            params = {**flat_params(record["config"]), **{f"sweep.{k}": str(v) for k, v in record["sweep_point"].items()}}
            tracker = RunTracker(plan.tracker, plan.out_dir, spec.name, plan.name.removeprefix(f"{spec.name}-"), tags, params)
        report = fit(model, splits, key.recipe, train_config, loggers=[tracker.logger] if tracker else None,
                     callbacks=callbacks)
        metrics = evaluate_run(model, splits, spec.evaluation, seed=plan.seed)
        validation = evaluate_split(model, splits.val, spec.evaluation)
        if bank is not None:  # beside the checkpoint, so that `conceptlab explore` can draw counterfactuals
            bank.save(plan.checkpoint.with_name(plan.checkpoint.stem + BANK_SUFFIX), checkpoint=plan.checkpoint.name)
        save_model(
            model.cpu(), plan.checkpoint, splits.info,
            bench=spec.name, model_key=plan.model, seed=plan.seed, dataset=settings_dict(spec.dataset),
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


def training_bank(splits, spec: BenchSpec, seed: int):
    """A PCBM's concept bank, fitted on the training split's embeddings and concept labels."""
    from ..concepts.bank import bank_from_labels

    if not hasattr(splits.train, "x"):
        raise ValueError("pcbm and pcbm-h read embeddings: use the dataset in frozen mode (dataset.mode: frozen), "
                         "not images")
    return bank_from_labels(splits.train.x, splits.train.c, splits.info.concept_names, spec.model.bank_examples,
                            spec.model.bank_alpha, seed=seed)


SPECS_FILE = "specs.json"


def record_specs(specs: list[BenchSpec], out_dir: Path) -> None:
    """Keep each benchmark's full settings beside its runs (``specs.json``), so that
    ``conceptlab report`` can render the tables again without the original config files."""
    from filelock import FileLock

    from ..atomic import write_atomic

    path = out_dir / SPECS_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        known = _read_specs(path) if path.is_file() else {}
        for spec in specs:
            known[spec.name] = _merged(known.get(spec.name), spec.to_config())
        write_atomic(path, json.dumps(known, indent=1, sort_keys=True))


def _merged(old: dict | None, new: dict) -> dict:
    """A rerun with other models or fewer seeds but the same settings widens what was recorded
    (so the report keeps every model already run); other settings replace the old ones."""
    if old is None:
        return new
    rest = ("models", "seeds")
    if {k: v for k, v in old.items() if k not in rest} != {k: v for k, v in new.items() if k not in rest}:
        return new
    models = list(old.get("models", [])) + [m for m in new.get("models", []) if m not in old.get("models", [])]
    return {**new, "models": models, "seeds": max(old.get("seeds", 1), new.get("seeds", 1))}


def recorded_specs(*out_dirs: Path) -> list[BenchSpec]:
    """The benchmarks result folders hold, from their ``specs.json``; one benchmark run in several
    folders (split by model or by seed, same settings) is merged as a rerun in one folder would be."""
    from .spec import parse_spec

    configs: dict[str, dict] = {}
    for out_dir in out_dirs:
        path = Path(out_dir) / SPECS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {out_dir} is not a folder written by `conceptlab bench`")
        for name, config in _read_specs(path).items():
            try:
                parse_spec(config, default_name=name)
            except ValueError as err:
                raise ValueError(f"{path}, benchmark {name!r}: {err}") from None
            configs[name] = _merged(configs.get(name), config)
    return [parse_spec(config, default_name=name) for name, config in configs.items()]


def _read_specs(path: Path) -> dict[str, dict]:
    """``specs.json`` as {benchmark name: config}; anything else is an error naming the file."""
    try:
        configs = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and run the bench again to rewrite it") from None
    if not isinstance(configs, dict) or not all(isinstance(c, dict) for c in configs.values()):
        raise ValueError(f"{path} is not a conceptlab specs file (expected {{benchmark name: settings}}); "
                         "delete it and run the bench again to rewrite it")
    return configs


def plan_runs(spec: BenchSpec, out_dir: Path, store: RunStore, tracker: str | None = None) -> list[RunPlan]:
    """Every (sweep point, seed, model) not finished in ``store``."""
    done = store.finished()
    return [
        RunPlan(point, model, seed, str(out_dir), tracker)
        for point in spec.points()
        for seed in range(spec.seeds)
        for model in spec.models
        if (spec.name, model, seed, point.config_hash()) not in done
    ]


def default_workers(device: str) -> int:
    """One process per core on the CPU; a single process when a GPU does the work."""
    if device in ("cuda", "gpu") or (device == "auto" and torch.cuda.is_available()):
        return 1
    return max(1, os.cpu_count() or 1)


def run_grid(
    specs: list[BenchSpec],
    out_dir: Path,
    workers: int | None = None,
    progress: bool = True,
    tracker: str | None = None,
    backend: str = "local",
    address: str | None = None,
) -> RunStore:
    """Run every missing (spec, sweep point, model, seed) and record each result in ``out_dir/runs.jsonl``.

    ``backend="local"`` runs on a process pool of ``workers`` (default: one per core; one on a
    GPU); ``backend="ray"`` runs one Ray task per run (one Ray Tune trial per run when a config
    has a ``search`` block), on a local instance (with ``workers`` CPUs) or the cluster at
    ``address``. Either way only this process writes ``runs.jsonl``.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}; choose local or ray")
    asha = [spec.name for spec in specs if spec.search and spec.search.asha]
    if asha and backend != "ray":
        raise ValueError(f"{asha[0]}: search.asha stops trials through Ray Tune; add --backend ray (pip install -e "
                         "\".[ray]\"), or drop search.asha to run the whole sweep on the local pool")
    out_dir = Path(out_dir)
    record_specs(specs, out_dir)
    store = RunStore(out_dir / "runs.jsonl")
    plans = [plan for spec in specs for plan in plan_runs(spec, out_dir, store, tracker)]
    skipped = sum(len(spec.points()) * spec.seeds * len(spec.models) for spec in specs) - len(plans)
    if skipped:
        log.info("resuming: %d finished run(s) found in %s are skipped", skipped, store.path)
    if not plans:
        return store
    bar = tqdm(total=len(plans), desc="runs", unit="run", disable=not progress)
    try:
        if backend == "ray":
            if any(spec.search for spec in specs):
                from .tune_backend import run_on_tune as run_on_cluster
            else:
                from .ray_backend import run_on_ray as run_on_cluster
            run_on_cluster(plans, run_one, address, workers, lambda record: _record(store, record, bar))
            return store
        for spec in {plan.spec.name: plan.spec for plan in plans}.values():
            prepare_shared(spec.dataset, progress=progress)  # e.g. CUB features: extracted once, not once per worker
        workers = min(workers or default_workers(specs[0].train.device), len(plans))
        if workers == 1:
            for plan in plans:
                _record(store, run_one(plan), bar)
        else:
            _run_parallel(plans, workers, store, bar)
    finally:
        bar.close()
    return store


def _run_parallel(plans: list[RunPlan], workers: int, store: RunStore, bar: tqdm) -> None:
    """Runs on a pool of worker processes this process owns: an interruption (Ctrl-C, SIGTERM, an
    error) kills every worker, whose runs were never recorded, and so cannot hang on a worker."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    with sigterm_as_exit(), WorkerPool(workers, initializer=setup_worker, initargs=(threads,)) as pool:
        for outcome in pool.imap_unordered(run_one, plans):
            if outcome.error is None:
                _record(store, outcome.value, bar)
            else:  # the worker died during the run (run_one records its own errors)
                _record(store, {**plan_record(outcome.item), "status": "failed", "error": outcome.error}, bar)


def _record(store: RunStore, record: dict[str, Any], bar: tqdm) -> None:
    store.add(record)
    bar.update(1)
    if record["status"] == "ok":
        bar.set_postfix_str(f"{record['dataset']} {record['model']} s{record['seed']}: {100 * record['task_accuracy']:.1f}%")
    else:
        log.error("run %s %s seed %s failed: %s", record["dataset"], record["model"], record["seed"], record["error"])
