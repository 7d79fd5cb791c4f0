"""Planning a grid: its runs (``RunPlan``), those still to do, and the fields that name a run in
``runs.jsonl`` whatever became of it."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .spec import BenchSpec
from .store import RunStore


@dataclass(frozen=True)
class RunPlan:
    """One training run of a grid: a (point of a) benchmark, a model key and a seed.

    Attributes:
        spec: The benchmark, at its sweep point.
        model: The model key.
        seed: Draws the data and initialises the model.
        out_dir: The result folder.
        tracker: ``tensorboard`` or ``mlflow`` to also log every epoch there; None.
    """

    spec: BenchSpec
    model: str
    seed: int
    out_dir: str
    tracker: str | None = None  # "tensorboard" or "mlflow": Lightning logs every epoch there too

    @property
    def name(self) -> str:
        return f"{self.spec.name}-{self.model}-seed{self.seed}-{self.spec.config_hash()}"

    @property
    def checkpoint(self) -> Path:
        """Named by the run's key, settings hash included: a record and its checkpoint always agree,
        and a run with other settings never overwrites the checkpoint an older record points to."""
        return Path(self.out_dir) / "checkpoints" / f"{self.name}.pt"


def versions() -> dict[str, str]:
    import lightning
    import sklearn

    return {
        "conceptlab": __version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def plan_record(plan: RunPlan) -> dict[str, Any]:
    """The fields that name a run in ``runs.jsonl``, whatever became of it."""
    spec = plan.spec
    return {
        "benchmark": spec.name,
        "model": plan.model,
        "seed": plan.seed,
        "config_hash": spec.config_hash(),
        "config": spec.config_dict(),
        "sweep_point": dict(spec.point),
        "versions": versions(),
    }


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
