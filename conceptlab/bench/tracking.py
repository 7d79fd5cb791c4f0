"""Experiment trackers for benchmark runs: Lightning's TensorBoard or MLflow logger, one run each."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

Tracker = Literal["tensorboard", "mlflow"]
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


def check_tracker(tracker: str | None) -> None:
    """Fail before any run when the tracker's package is missing."""
    if tracker is None:
        return
    if tracker not in _PACKAGES:
        raise ValueError(f"unknown logger {tracker!r}; choose tensorboard or mlflow")
    module, package = _PACKAGES[tracker]
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"--logger {tracker} needs the {package} package: pip install {package} "
                         f"(or pip install -e \".[{tracker}]\")")


def make_logger(tracker: str | None, out_dir: str | Path, experiment: str, run: str):
    """A Lightning logger for one run: TensorBoard event files under ``out_dir/tensorboard``, or an
    MLflow run in ``$MLFLOW_TRACKING_URI`` (default: a SQLite store, ``out_dir/mlflow.db``)."""
    if tracker is None:
        return None
    if tracker == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(Path(out_dir) / "tensorboard"), name=experiment, version=run)
    from lightning.pytorch.loggers import MLFlowLogger

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(out_dir).resolve() / 'mlflow.db'}"
    return MLFlowLogger(experiment_name=experiment, run_name=run, tracking_uri=uri)
