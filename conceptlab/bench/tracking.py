"""Experiment trackers for benchmark runs: one TensorBoard or MLflow run per benchmark run, exactly once.

A run's tracker record holds its per-epoch losses (each stage of a multi-stage recipe under its own
name), its settings and sweep point as parameters, its final validation and test metrics, and tags
naming it (benchmark, model, seed, settings hash). A run that is trained again (a retry, a resumed
failure) first removes what an earlier attempt logged under the same name, so each run appears once.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Literal

Tracker = Literal["tensorboard", "mlflow"]
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
RUN_FIGURES = ("epochs", "train_seconds", "eval_seconds", "wall_seconds")  # numbers about the run, not a split
RUN_TAG = "conceptlab.run"  # the tag that names a run in MLflow, to find an earlier attempt


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


def mlflow_uri(out_dir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI``, or a SQLite store in the output folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(out_dir).resolve() / 'mlflow.db'}"


class RunTracker:
    """One benchmark run's record in TensorBoard (``out_dir/tensorboard/EXPERIMENT/RUN``) or MLflow.

    Args:
        tracker: ``"tensorboard"`` or ``"mlflow"``.
        out_dir: The bench's output folder.
        experiment: The benchmark's name.
        run: The run's name, unique per (model, seed, settings).
        tags: What names the run (benchmark, model, seed, settings hash).
        params: Its settings and sweep point (``flat_params``), recorded at once.
    """

    def __init__(self, tracker: Tracker, out_dir: str | Path, experiment: str, run: str, tags: dict[str, Any],
                 params: dict[str, str]):
        check_tracker(tracker)
        self.tracker = tracker
        if tracker == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            folder = Path(out_dir) / "tensorboard" / experiment / run
            shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt's curves
            self.logger = TensorBoardLogger(save_dir=str(Path(out_dir) / "tensorboard"), name=experiment, version=run,
                                            default_hp_metric=False)
        else:
            from lightning.pytorch.loggers import MLFlowLogger

            uri = mlflow_uri(out_dir)
            _delete_earlier_mlflow_runs(uri, experiment, run)
            self.logger = MLFlowLogger(experiment_name=experiment, run_name=run, tracking_uri=uri,
                                       tags={RUN_TAG: run, **{k: str(v) for k, v in tags.items()}})
        # TensorBoard has no tags: they go with the parameters
        self.logger.log_hyperparams({**{f"tag.{k}": v for k, v in tags.items()}, **params}
                                    if tracker == "tensorboard" else params)

    def finish(self, metrics: dict[str, float], status: str = "success") -> None:
        """Record the run's final metrics and close it (``status``: success or failed)."""
        if metrics:
            self.logger.log_metrics(metrics, step=0)
        self.logger.finalize(status)


def _delete_earlier_mlflow_runs(uri: str, experiment: str, run: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return
    for earlier in client.search_runs([found.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run}'"):
        client.delete_run(earlier.info.run_id)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested settings dict as ``{"train.lr": "0.01", ...}`` (lists as their JSON-like text)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The run record's finite numbers (test metrics as ``test/NAME``, validation ones as ``val/NAME``)
    and its intervention AUCs (``test/intervention_auc/POLICY``), in names every tracker accepts."""
    metrics: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if key == "seed":
            continue
        if key in RUN_FIGURES:
            name = key
        else:
            name = f"val/{key.removeprefix('val_')}" if key.startswith("val_") else f"test/{key}"
        metrics[name] = float(value)
    for policy, auc in (record.get("intervention_auc") or {}).items():
        if auc is not None and math.isfinite(auc):
            metrics[f"test/intervention_auc/{re.sub(r'[^0-9A-Za-z_./ -]', '-', policy)}"] = float(auc)
    return metrics
