"""Visual concepts with known ground truth: image edits applied to batches of [0, 1] images.

Each edit maps an (N, 3, H, W) batch to an edited batch of the same shape, deterministically, so
"image with concept S" is exact and reproducible. The counterfactual benchmark plants them as
spurious concepts and fits concept activation vectors on them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

Edit = Callable[[Tensor], Tensor]


def _blend(x: Tensor, overlay: Tensor, amount: float) -> Tensor:
    return (1 - amount) * x + amount * overlay


def _luminance(x: Tensor) -> Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


def _tint(rgb: tuple[float, float, float]) -> Edit:
    def edit(x: Tensor) -> Tensor:
        colour = torch.tensor(rgb, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return _blend(x, colour.expand_as(x), 0.35)

    return edit


def _coordinates(x: Tensor) -> tuple[Tensor, Tensor]:
    """Row and column index grids (H, W) scaled so that the image side is 224 units."""
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device, dtype=x.dtype)[:, None] * 224 / h
    cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, :] * 224 / w
    return rows.expand(h, w), cols.expand(h, w)


def grayscale(x: Tensor) -> Tensor:
    return _luminance(x)


def sepia(x: Tensor) -> Tensor:
    matrix = torch.tensor([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=x.dtype, device=x.device)
    return torch.einsum("oc,nchw->nohw", matrix, x).clamp(0, 1)


def blur(x: Tensor) -> Tensor:
    size = 2 * max(1, round(x.shape[-1] / 50)) + 1
    return gaussian_blur(x, [size, size], [size / 3, size / 3])


def pixelate(x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    small = F.adaptive_avg_pool2d(x, (max(1, h // 12), max(1, w // 12)))
    return F.interpolate(small, size=(h, w), mode="nearest")


def noise(x: Tensor) -> Tensor:
    generator = torch.Generator(device=x.device).manual_seed(0)
    return (x + 0.15 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).clamp(0, 1)


def washed_out(x: Tensor) -> Tensor:
    return 0.45 * x + 0.55


def vignette(x: Tensor) -> Tensor:
    rows, cols = _coordinates(x)
    distance = ((rows - 112) ** 2 + (cols - 112) ** 2).sqrt() / 158
    return x * (1 - distance.clamp(0, 1) ** 1.5)


def stripes(x: Tensor) -> Tensor:
    rows, _ = _coordinates(x)
    dark = (rows % 20) < 6
    return torch.where(dark, 0.1 * x, x)


def grid(x: Tensor) -> Tensor:
    rows, cols = _coordinates(x)
    line = ((rows % 32) < 3) | ((cols % 32) < 3)
    return torch.where(line, torch.ones_like(x), x)


def dots(x: Tensor) -> Tensor:
    rows, cols = _coordinates(x)
    spot = ((rows % 28) - 14) ** 2 + ((cols % 28) - 14) ** 2 < 25
    return torch.where(spot, torch.zeros_like(x), x)


def border(x: Tensor) -> Tensor:
    rows, cols = _coordinates(x)
    frame = (rows < 16) | (rows >= 208) | (cols < 16) | (cols >= 208)
    return torch.where(frame, torch.zeros_like(x), x)


VISUAL_CONCEPTS: dict[str, Edit] = {
    "grayscale": grayscale,
    "sepia": sepia,
    "blur": blur,
    "pixelate": pixelate,
    "noise": noise,
    "washed_out": washed_out,
    "vignette": vignette,
    "stripes": stripes,
    "grid": grid,
    "dots": dots,
    "border": border,
    "red_tint": _tint((1.0, 0.0, 0.0)),
    "green_tint": _tint((0.0, 1.0, 0.0)),
    "blue_tint": _tint((0.0, 0.0, 1.0)),
}


def visual_concept(name: str) -> Edit:
    """The edit called ``name``; ``"NAME@s"`` blends it in at strength ``s`` in (0, 1] (the image
    moves the fraction ``s`` of the way to its fully edited version); ``"A+B"`` applies A, then B.
    An unknown name lists the available ones."""
    if "+" in name:
        edits = [visual_concept(part) for part in name.split("+")]

        def composed(x: Tensor) -> Tensor:
            for edit in edits:
                x = edit(x)
            return x

        return composed
    base, _, strength = name.partition("@")
    if base not in VISUAL_CONCEPTS:
        raise ValueError(f"unknown visual concept {base!r}; choose from {', '.join(VISUAL_CONCEPTS)} "
                         "(optionally NAME@STRENGTH, e.g. sepia@0.5)")
    edit = VISUAL_CONCEPTS[base]
    if not strength:
        return edit
    try:
        amount = float(strength)
    except ValueError:
        amount = float("nan")
    if not 0 < amount <= 1:
        raise ValueError(f"the strength in {name!r} must be a number in (0, 1], e.g. {base}@0.5")
    return lambda x: _blend(x, edit(x), amount)
