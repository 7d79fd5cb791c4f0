"""Datasets by name, as benchmark configs refer to them."""

from __future__ import annotations

from typing import Any

from .base import ConceptSplits
from .synthetic import SYNTHETIC_DATASETS, make_synthetic


def load_dataset(config: dict[str, Any], seed: int) -> ConceptSplits:
    """Build the dataset a config names, e.g. ``{"name": "xor", "size": 3000}``, for ``seed``."""
    options = dict(config)
    name = options.pop("name", None)
    if name in SYNTHETIC_DATASETS:
        unknown = sorted(set(options) - {"size"})
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; known: ['size']")
        return make_synthetic(name, size=int(options.get("size", 3000)), seed=seed)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(SYNTHETIC_DATASETS)}")
