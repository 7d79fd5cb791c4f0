"""Datasets by name, as benchmark configs refer to them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..settings import reject_unknown_keys
from .base import ConceptSplits
from .cub import CLASS_LEVEL_THRESHOLD, load_cub
from .images import ImageConceptDataset
from .synthetic import SYNTHETIC_DATASETS, make_synthetic

CUB_OPTIONS = {
    "root": None,  # directory holding CUB_200_2011/ (or that directory itself)
    "mode": "frozen",  # frozen: cached backbone features as tensors; finetune: images for end-to-end training
    "backbone": "efficientnet_lite0",
    "weights": "bundled",  # local weights file, "bundled" (EfficientNet-Lite0) or null (random init)
    "image_size": 224,
    "concepts": "auto",  # auto | image-labels | class-level
    "threshold": CLASS_LEVEL_THRESHOLD,  # % for the class-level fallback
    "min_classes": 10,  # keep attributes present in at least this many classes (majority-vote rule)
    "val_fraction": 0.2,
    "cache_dir": None,  # default: $XDG_CACHE_HOME/conceptlab or ~/.cache/conceptlab
    "batch_size": 64,  # feature extraction batch
}
DATASETS: tuple[str, ...] = (*SYNTHETIC_DATASETS, "cub")


def load_dataset(config: dict[str, Any], seed: int) -> ConceptSplits:
    """Build the dataset a config names, e.g. ``{"name": "xor", "size": 3000}``, for ``seed``."""
    options = dict(config)
    name = options.pop("name", None)
    if name in SYNTHETIC_DATASETS:
        reject_unknown_keys(options, {"size"}, f"option(s) for dataset {name!r}")
        return make_synthetic(name, size=int(options.get("size", 3000)), seed=seed)
    if name == "cub":
        reject_unknown_keys(options, CUB_OPTIONS, f"option(s) for dataset {name!r}")
        return load_cub_for_bench({**CUB_OPTIONS, **options}, seed)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def default_cache_dir() -> Path:
    """Where feature caches go unless a config says otherwise."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "conceptlab"


def load_cub_for_bench(options: dict[str, Any], seed: int) -> ConceptSplits:
    """CUB as frozen-backbone feature tensors (cached) or as images for fine-tuning."""
    from .features import feature_splits
    from .transforms import image_transform

    if not options["root"]:
        raise ValueError("the cub dataset needs a root: pass --root PATH (the directory holding CUB_200_2011/)")
    splits = load_cub(options["root"], seed, options["val_fraction"], options["concepts"], options["min_classes"],
                      options["threshold"])
    if options["mode"] == "finetune":
        size = options["image_size"]
        return ConceptSplits(
            splits.train.with_transform(image_transform(size, train=True)),
            splits.val.with_transform(image_transform(size)),
            splits.test.with_transform(image_transform(size)),
            splits.concept_source,
        )
    if options["mode"] != "frozen":
        raise ValueError(f"cub mode must be 'frozen' or 'finetune'; got {options['mode']!r}")
    return feature_splits(splits, features_by_path(splits, options))


def features_by_path(splits: ConceptSplits, options: dict[str, Any], progress: bool = True) -> dict[Path, torch.Tensor]:
    """Frozen-backbone features of every image of ``splits`` (cached), keyed by path.

    The cache key covers the sorted file list, so every seed and every benchmark that reads the
    same images (the CUB and the counterfactual benchmarks) shares one extraction.
    """
    from .features import extract_features

    every = sorted([*splits.train.paths, *splits.val.paths, *splits.test.paths])
    images = ImageConceptDataset(every, torch.zeros(len(every), splits.info.n_concepts), torch.zeros(len(every)), splits.info)
    features = extract_features(images, options["backbone"], options["weights"], options["image_size"],
                                options["batch_size"], options["cache_dir"] or default_cache_dir(), num_workers=1,
                                progress=progress)
    return dict(zip(every, features))
