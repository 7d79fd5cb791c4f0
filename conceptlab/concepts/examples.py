"""Concept examples and inputs from folders: images or tensor files, read safely, errors naming the file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def read_image(file: str | Path, transform) -> Tensor:
    """One image file as a [0, 1] tensor (3, H, W) through ``transform``; an unreadable file names itself."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return transform(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {file}: {err}") from None


def read_tensor(file: str | Path) -> Tensor:
    """A tensor file written by ``torch.save``; loaded with ``weights_only=True``, so it never runs code."""
    try:
        x = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as err:  # truncated, not a torch file, or a pickle with code in it
        raise ValueError(f"cannot read tensor file {file} ({type(err).__name__}): save examples with torch.save(tensor, path)") from None
    if not isinstance(x, Tensor):
        raise ValueError(f"{file} holds a {type(x).__name__}, not a tensor of examples")
    return x


def load_examples(folder: str | Path, image_size: int) -> Tensor:
    """All examples in ``folder``: images (resized, centre-cropped, in [0, 1]) or .pt tensors."""
    from ..datasets.transforms import image_transform

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory of examples")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".pt"})
    if not files:
        raise ValueError(f"{folder} holds no examples: put images (.jpg, .png) or tensors (.pt) in it")
    transform = image_transform(image_size)
    parts = []
    for file in files:
        if file.suffix == ".pt":
            x = read_tensor(file)
            parts.append(x.unsqueeze(0) if x.ndim in (1, 3) else x)
        else:
            parts.append(read_image(file, transform).unsqueeze(0))
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"the examples in {folder} have different shapes {sorted(shapes)}; give one shape per folder")
    examples = torch.cat(parts).float()
    if not torch.isfinite(examples).all():
        raise ValueError(f"the examples in {folder} contain NaN or infinite values")
    return examples


def example_sets(root: str | Path, image_size: int, limit: int | None = None) -> dict[str, Tensor]:
    """One example set per sub-directory of ``root`` (at most ``limit``), named after it."""
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{root} is not a directory: expected one sub-directory of examples per set")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subdirs:
        raise ValueError(f"{root} has no sub-directories: expected one folder of examples per concept or random set")
    return {d.name: load_examples(d, image_size) for d in subdirs[:limit]}


def image_files(paths: list[str]) -> list[Path]:
    """Image files named directly or found in folders, in order."""
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"no image at {item}")
    if not files:
        raise ValueError(f"no images (.jpg, .png) found in {', '.join(paths)}")
    return files
