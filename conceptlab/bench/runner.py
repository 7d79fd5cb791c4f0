"""Run a benchmark grid (models x seeds), resumably: record its specs, plan the runs still to do
(``plan``), and hand them to an executor (``executors``, ``ray_backend``, ``tune_backend``), each
running ``run.run_one``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..datasets.registry import prepare_shared
from .executors import run_inline, run_on_pool
from .plan import plan_runs
from .run import run_one
from .spec import BenchSpec
from .store import RunStore

log = logging.getLogger(__name__)


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


def default_workers(device: str) -> int:
    """One process per core on the CPU; a single process when a GPU does the work."""
    if device in ("cuda", "gpu") or (device == "auto" and torch.cuda.is_available()):
        return 1
    return max(1, os.cpu_count() or 1)


def run_grid(
    specs: list[BenchSpec],
    out_dir: Path,
    *,
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

    Args:
        specs: The benchmarks to run.
        out_dir: The result folder (``runs.jsonl``, ``specs.json``, checkpoints).
        workers: Parallel runs (default: one per core; one on a GPU); on Ray without an address, the local instance's CPUs.
        progress: Show a progress bar.
        tracker: ``tensorboard`` or ``mlflow``: also log every epoch there.
        backend: ``local`` (a process pool) or ``ray``.
        address: A Ray cluster's address (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None starts a local instance.

    Returns:
        The store of every record in ``out_dir``.

    Raises:
        ValueError: An unknown backend or a cluster address that cannot be reached.

    Examples:
        >>> import tempfile, pathlib
        >>> from conceptlab.bench import parse_spec, run_grid
        >>> spec = parse_spec({"dataset": {"name": "xor", "size": 200}, "models": ["cbm-fuzzy"], "seeds": 1,
        ...                    "train": {"max_epochs": 2}, "evaluation": {"intervention_policies": ["random"], "intervention_repeats": 1}}, "tiny")
        >>> store = run_grid([spec], pathlib.Path(tempfile.mkdtemp()), workers=1, progress=False)
        >>> [record["status"] for record in store.records()]
        ['ok']
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

    def keep(record: dict[str, Any]) -> None:
        _record(store, record, bar)

    try:
        if backend == "ray":
            if any(spec.search for spec in specs):
                from .tune_backend import run_on_tune as run_on_cluster
            else:
                from .ray_backend import run_on_ray as run_on_cluster
            run_on_cluster(plans, run_one, address, workers, keep)
            return store
        for spec in {plan.spec.name: plan.spec for plan in plans}.values():
            prepare_shared(spec.dataset, progress=progress)  # e.g. CUB features: extracted once, not once per worker
        workers = min(workers or default_workers(specs[0].train.device), len(plans))
        if workers == 1:
            run_inline(plans, run_one, keep)
        else:
            run_on_pool(plans, run_one, workers, keep)
    finally:
        bar.close()
    return store


def _record(store: RunStore, record: dict[str, Any], bar: tqdm) -> None:
    store.add(record)
    bar.update(1)
    if record["status"] == "ok":
        score = (f"{100 * record['task_accuracy']:.1f}%" if record.get("task_accuracy") is not None
                 else f"R^2 {record['task_r2']:.3f}")  # a regression task has no accuracy
        bar.set_postfix_str(f"{record['benchmark']} {record['model']} s{record['seed']}: {score}")
    else:
        log.error("run %s %s seed %s failed: %s", record["benchmark"], record["model"], record["seed"], record["error"])
