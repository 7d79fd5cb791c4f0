"""A Lightning logger seen through one stage of a recipe."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers.logger import Logger


class StageLogger(Logger):
    """Passes metrics to ``inner``, as ``STAGE/NAME`` when ``stage`` is given, so that the stages
    of a sequential or independent CBM keep separate curves (each stage's steps start again at 0),
    and leaves the run open when a stage ends: whoever made ``inner`` finalizes it once, after the
    last stage and the final metrics.

    Args:
        inner: The run's logger (TensorBoard, MLflow, ...).
        stage: The stage's name, e.g. ``"concepts"`` or ``"task"``; None: metric names unchanged.
    """

    def __init__(self, inner: Logger, stage: str | None):
        super().__init__()
        self.inner = inner
        self.stage = stage

    @property
    def name(self) -> str | None:
        return self.inner.name

    @property
    def version(self) -> int | str | None:
        return self.inner.version

    @property
    def save_dir(self) -> str | None:
        return self.inner.save_dir

    @property
    def log_dir(self) -> str | None:
        return getattr(self.inner, "log_dir", None)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics({f"{self.stage}/{k}": v for k, v in metrics.items()} if self.stage else metrics, step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.inner.log_hyperparams(params, *args, **kwargs)

    def save(self) -> None:
        self.inner.save()

    def finalize(self, status: str) -> None:
        self.inner.save()  # flushed, but the run goes on into the next stage
