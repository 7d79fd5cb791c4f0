"""Datasets by name, as benchmark configs refer to them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from ..checksum import file_digest
from ..info import ConceptInfo
from ..settings import Float, PositiveInt, SettingsError, Str, settings, validated
from .base import ConceptSplits
from .cub import CLASS_LEVEL_THRESHOLD, MIN_CLASSES, VAL_FRACTION, load_cub
from .fashion import FashionMNISTSettings, load_fashion_mnist
from .files import (
    ImageFolderSettings,
    TableSettings,
    TensorFileSettings,
    image_folder_splits,
    load_table,
    load_tensor_file,
)
from .images import ImageConceptDataset
from .offline import (
    CorrelatedSettings,
    DigitsSettings,
    MixedSettings,
    ShapesSettings,
    correlated_concepts,
    digits_arithmetic,
    mixed_concepts,
    rendered_shapes,
)
from .planted import PlantedSettings, load_planted
from .supervision import Supervision, drop_concepts, hide_labels, keep_concept_groups
from .synthetic import SYNTHETIC_DATASETS, make_synthetic


@settings
class SyntheticSettings(Supervision):
    """A generated dataset of the CEM paper: ``name`` xor, trig or dot, ``size`` samples in all.

    Attributes:
        name: ``xor``, ``trig`` or ``dot``.
        size: Samples in all (at least 10).
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["xor", "trig", "dot"]
    size: Annotated[PositiveInt, Field(ge=10)] = 3000


@settings
class CubSettings(Supervision):
    """CUB-200-2011 from its official archive, as features of a frozen backbone or as images.

    Attributes:
        name: ``cub``.
        root: The directory holding CUB_200_2011/ (or that directory itself).
        mode: ``frozen`` (cached backbone features) or ``finetune`` (images, end to end).
        backbone: The backbone that makes the features (frozen mode).
        weights: A local weights file, ``bundled`` (EfficientNet-Lite0) or null (random initialisation).
        image_size: The side images are resized to.
        concepts: ``auto``, ``image-labels`` or ``class-level``.
        threshold: Class-level fallback: % of a class's images above which it has an attribute.
        min_classes: Keep attributes present in at least this many classes (majority vote).
        val_fraction: Share of the official training split held out for validation.
        cache_dir: Where features are cached (default: $XDG_CACHE_HOME/conceptlab or ~/.cache/conceptlab).
        batch_size: Feature-extraction batch.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["cub"] = "cub"
    root: Str | None = None
    mode: Literal["frozen", "finetune"] = "frozen"
    backbone: Str = "efficientnet_lite0"
    weights: Str | None = "bundled"
    image_size: PositiveInt = 224
    concepts: Literal["auto", "image-labels", "class-level"] = "auto"
    threshold: Annotated[Float, Field(ge=0, le=100)] = CLASS_LEVEL_THRESHOLD
    min_classes: PositiveInt = MIN_CLASSES
    val_fraction: Annotated[Float, Field(ge=0, lt=1)] = VAL_FRACTION
    cache_dir: Str | None = None
    batch_size: PositiveInt = 64

    def __post_init__(self) -> None:
        from ..models.encoders import BACKBONES

        if self.backbone not in BACKBONES:
            raise SettingsError(f"dataset.backbone: unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")


DatasetSettings = (SyntheticSettings | CubSettings | TensorFileSettings | TableSettings | ImageFolderSettings | DigitsSettings
                   | CorrelatedSettings | FashionMNISTSettings | ShapesSettings | MixedSettings | PlantedSettings)
ImageSettings = CubSettings | ImageFolderSettings  # image datasets: frozen features or fine-tuning
_KINDS = {"cub": CubSettings, "tensors": TensorFileSettings, "table": TableSettings, "images": ImageFolderSettings,
          "digits": DigitsSettings, "correlated": CorrelatedSettings, "fashion-mnist": FashionMNISTSettings,
          "shapes": ShapesSettings, "mixed": MixedSettings, "planted": PlantedSettings}
DATASETS: tuple[str, ...] = (*SYNTHETIC_DATASETS, *_KINDS)
# settings that change how a result is computed but never the result: left out of run hashes
_NOT_HASHED = ("cache_dir", "batch_size")


def dataset_settings(config: Mapping[str, Any] | DatasetSettings) -> DatasetSettings:
    """Validated settings of the dataset a config block names, e.g. ``{"name": "xor", "size": 3000}``.

    Args:
        config: A dataset block (``name`` and its options) or settings already validated.

    Returns:
        The typed settings (``SyntheticSettings`` or ``CubSettings``).

    Raises:
        SettingsError: An unknown name, key or bad value (the message names the key).

    Examples:
        >>> from conceptlab.datasets import dataset_settings
        >>> dataset_settings({"name": "trig", "size": 500}).size
        500
    """
    if isinstance(config, (SyntheticSettings, *_KINDS.values())):
        return config
    if not isinstance(config, Mapping):
        raise SettingsError(f"dataset must be a mapping such as {{name: xor}}; got {config!r}")
    name = config.get("name")
    if name in SYNTHETIC_DATASETS:
        return validated(SyntheticSettings, config, "dataset")
    if name in _KINDS:
        return validated(_KINDS[name], config, "dataset")
    raise SettingsError(f"dataset.name: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def settings_dict(config: DatasetSettings) -> dict[str, Any]:
    """Every setting, defaults included, as plain JSON data (lists, not tuples): what a checkpoint
    and ``specs.json`` record, so a setting read back compares equal to the one written."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def hashed_settings(config: DatasetSettings) -> dict[str, Any]:
    """The settings that decide results, defaults included, so that ``{name: xor}`` and
    ``{name: xor, size: 3000}`` name the same runs; a user's data file adds its content digest, so
    editing the file names new runs."""
    hashed = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_HASHED}
    if isinstance(config, (TensorFileSettings, TableSettings)):
        hashed["content"] = file_digest(config.path)
    if isinstance(config, ImageFolderSettings):  # the annotations; the images are named by their paths
        hashed["content"] = file_digest(config.annotations)
    return hashed


def load_dataset(config: Mapping[str, Any] | DatasetSettings, seed: int) -> ConceptSplits:
    """Build the dataset a config names, e.g. ``{"name": "xor", "size": 3000}``, for ``seed``.

    Args:
        config: A dataset block (name and options) or its validated settings.
        seed: Draws the data (generators) and the split.

    Returns:
        The splits.

    Raises:
        SettingsError: The config names an unknown dataset or a bad value.

    Examples:
        >>> from conceptlab.datasets import load_dataset
        >>> len(load_dataset({"name": "xor", "size": 200}, seed=1).test)
        40
    """
    config = dataset_settings(config)
    if isinstance(config, SyntheticSettings):
        splits = make_synthetic(config.name, size=config.size, seed=seed)
    elif isinstance(config, TensorFileSettings):
        splits = load_tensor_file(config, seed)
    elif isinstance(config, TableSettings):
        splits = load_table(config, seed)
    elif isinstance(config, DigitsSettings):
        splits = digits_arithmetic(config.size, config.task, seed)
    elif isinstance(config, CorrelatedSettings):
        splits = correlated_concepts(config.size, config.rho, seed, n_concepts=config.n_concepts)
    elif isinstance(config, MixedSettings):
        splits = mixed_concepts(config.size, seed)
    elif isinstance(config, PlantedSettings):
        splits = load_planted(config, seed)
    elif isinstance(config, ShapesSettings):
        splits = rendered_shapes(config.size, config.rho, image_size=config.image_size, seed=seed)
    elif isinstance(config, FashionMNISTSettings):
        splits = load_fashion_mnist(config, seed)
    elif isinstance(config, ImageFolderSettings):
        splits = images_for_bench(config, image_folder_splits(config, seed))
    else:
        splits = load_cub_for_bench(config, seed)
    try:
        splits = drop_concepts(splits, config.hidden_concepts) if config.hidden_concepts else splits
    except ValueError as err:
        raise SettingsError(f"dataset.hidden_concepts: {err}") from None
    if config.kept_concept_groups < 1:
        splits = keep_concept_groups(splits, config.kept_concept_groups)
    return hide_labels(splits, config.missing_concept_labels, seed)


def default_cache_dir() -> Path:
    """Where feature caches go unless a config says otherwise."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "conceptlab"


def cub_image_splits(options: CubSettings, seed: int) -> ConceptSplits:
    """CUB's splits of image files, read from the archive as ``options`` say."""
    if not options.root:
        raise ValueError("the cub dataset needs a root: pass --root PATH (the directory holding CUB_200_2011/)")
    return load_cub(options.root, seed=seed, val_fraction=options.val_fraction, concepts=options.concepts, min_classes=options.min_classes, threshold=options.threshold)


def load_cub_for_bench(options: CubSettings, seed: int, images: ConceptSplits | None = None) -> ConceptSplits:
    """CUB as frozen-backbone feature tensors (cached) or as images for fine-tuning; ``images``
    (from ``cub_image_splits``) saves reading the archive again."""
    return images_for_bench(options, images if images is not None else cub_image_splits(options, seed))


def images_for_bench(options: ImageSettings, splits: ConceptSplits) -> ConceptSplits:
    """Image splits as frozen-backbone feature tensors (cached) or, in finetune mode, as images
    with the training and evaluation transforms."""
    from .features import feature_splits
    from .transforms import image_transform

    if options.mode == "finetune":
        size = options.image_size
        return ConceptSplits(
            splits.train.with_transform(image_transform(size, train=True)),
            splits.val.with_transform(image_transform(size)),
            splits.test.with_transform(image_transform(size)),
            splits.concept_source,
        )
    return feature_splits(splits, features_by_path(splits, options))


def prepare_shared(config: DatasetSettings, seed: int = 0, progress: bool = True) -> None:
    """Compute what every run of a grid on this dataset reads (CUB features), once, before the runs.

    The feature cache key covers the whole file list, so one extraction serves every seed.
    """
    if isinstance(config, CubSettings) and config.mode == "frozen":
        features_by_path(cub_image_splits(config, seed), config, progress)
    if isinstance(config, ImageFolderSettings) and config.mode == "frozen":
        features_by_path(image_folder_splits(config, seed), config, progress)


def features_by_path(splits: ConceptSplits, options: ImageSettings, progress: bool = True) -> dict[Path, torch.Tensor]:
    """Frozen-backbone features of every image of ``splits`` (cached), keyed by path.

    The cache key covers the sorted file list, so every seed and every benchmark that reads the
    same images (the CUB and the counterfactual benchmarks) shares one extraction.
    """
    every = sorted([*splits.train.paths, *splits.val.paths, *splits.test.paths])
    return dict(zip(every, image_features(every, splits.info, options, progress=progress)))


def image_features(paths: list[Path], info: ConceptInfo, options: ImageSettings, edit: str | None = None,
                   progress: bool = True, num_workers: int = 1) -> torch.Tensor:
    """(N, D) frozen-backbone features of image files in order, ``edit`` (a visual concept) applied
    first, through the feature cache that ``options`` name."""
    from .features import extract_features

    images = ImageConceptDataset(paths, torch.zeros(len(paths), info.n_concepts), torch.zeros(len(paths)), info)
    return extract_features(images, options.backbone, weights=options.weights, image_size=options.image_size, batch_size=options.batch_size,
                            cache_dir=options.cache_dir or default_cache_dir(), num_workers=num_workers, progress=progress, edit=edit)
