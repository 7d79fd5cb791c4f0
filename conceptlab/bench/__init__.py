"""Benchmark grids: config -> runs -> results store -> tables and plots."""

from .plan import RunPlan
from .report import write_reports
from .run import run_one
from .runner import run_grid
from .spec import BenchSpec, bundled_configs, load_spec, parse_spec
from .store import RunStore
from .zoo import MODEL_KEYS, ModelSettings

__all__ = [
    "MODEL_KEYS",
    "BenchSpec",
    "ModelSettings",
    "RunPlan",
    "RunStore",
    "bundled_configs",
    "load_spec",
    "parse_spec",
    "run_grid",
    "run_one",
    "write_reports",
]
