"""Frozen-backbone features: images -> embeddings once, cached on disk, then plain tensors."""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..cache import CacheWarning, load_cached, store_cached
from ..models.encoders import backbone_weights_id, backbone_width, image_backbone
from .base import ConceptDataset, ConceptSplits
from .images import ImageConceptDataset
from .transforms import image_transform
from .visual_concepts import visual_concept

log = logging.getLogger(__name__)


def feature_cache_key(paths: list[Path], backbone: str, weights: str | None, transform, edit: str | None = None) -> str:
    """Hash of what determines the features: backbone and weights, transform, edit, files (paths and sizes)."""
    files = [(str(Path(p).resolve()), p.stat().st_size if p.exists() else -1) for p in paths]  # one key per file, however named
    parts = ["checksummed cache files", backbone_weights_id(backbone, weights), repr(transform), files] + ([edit] if edit else [])
    blob = json.dumps(parts)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@torch.inference_mode()
def extract_features(
    dataset: ImageConceptDataset,
    backbone: str,
    *,
    weights: str | None = "bundled",
    image_size: int = 224,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    edit: str | None = None,
) -> torch.Tensor:
    """(N, D) features of ``dataset``'s images in order; read from ``cache_dir`` when cached there.

    ``edit`` names a visual concept (``VISUAL_CONCEPTS``) applied to every image before the backbone.
    Cache files carry a checksum: a damaged one is reported with its path and extracted again;
    a cache directory that cannot be written is reported and the features are used uncached.

    Args:
        dataset: The images.
        backbone: A backbone name (``efficientnet-lite0``, ``resnet18``, ...).
        weights: ``bundled`` (the installed weights), a local weights file, or None (random).
        image_size: The side images are resized to.
        batch_size: Images per forward pass.
        cache_dir: Keep the features on disk.
        device: Where the backbone runs.
        num_workers: DataLoader workers reading the images.
        progress: Show a progress bar.
        edit: A visual concept applied to every image first.

    Returns:
        (N, D) float features, in the dataset's order.

    Raises:
        ValueError: An unknown backbone, or a cached file of the wrong shape.

    Examples:
        >>> features = extract_features(images, "resnet18", weights="resnet18.pth", cache_dir="~/.cache/conceptlab")  # doctest: +SKIP
    """
    transform = image_transform(image_size, train=False)
    change = visual_concept(edit) if edit else (lambda x: x)
    cache = None
    if cache_dir is not None:
        key = feature_cache_key(dataset.paths, backbone, weights, transform, edit)
        cache = Path(cache_dir) / f"features-{backbone}{'-' + edit if edit else ''}-{key}.pt"
        cached = load_cached(cache)
        expected = (len(dataset), backbone_width(backbone))
        if isinstance(cached, torch.Tensor) and tuple(cached.shape) == expected and torch.isfinite(cached).all():
            log.info("feature cache hit: %s", cache)
            return cached
        if cached is not None:  # intact bytes, wrong contents: e.g. written by other code under this name
            warnings.warn(f"feature cache file {cache} holds {_describe(cached)}, not finite features of shape "
                          f"{expected}; extracting them again", CacheWarning, stacklevel=2)
        log.info("feature cache miss: extracting %d images with %s into %s", len(dataset), backbone, cache)
    missing = [p for p in dataset.paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image file(s) are missing, e.g. {missing[0]}")
    with torch.random.fork_rng():  # a random-init backbone (weights=None) is the same one on every call
        torch.manual_seed(0)
        net = image_backbone(backbone, weights).to(device).eval()
    loader = DataLoader(dataset.with_transform(transform), batch_size=batch_size, num_workers=num_workers)
    desc = f"{backbone} features" + (f" ({edit})" if edit else "")
    parts = [net(change(x.to(device))).float().cpu() for x, _, _ in tqdm(loader, desc=desc, disable=not progress)]
    features = torch.cat(parts)
    if cache is not None:
        store_cached(features, cache)
    return features


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}" + ("" if torch.isfinite(value).all() else " with NaN or infinite values")
    return f"a {type(value).__name__}"


def feature_splits(splits: ConceptSplits, features_of: dict[Path, torch.Tensor]) -> ConceptSplits:
    """Replace each image of ``splits`` by its feature vector."""

    def convert(part: ImageConceptDataset) -> ConceptDataset:
        x = torch.stack([features_of[p] for p in part.paths])
        return ConceptDataset(x, part.c, part.y, part.info)

    return ConceptSplits(convert(splits.train), convert(splits.val), convert(splits.test), splits.concept_source)
