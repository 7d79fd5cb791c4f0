"""A 2-D view of a synthetic dataset (XOR, Trig, Dot) as SVG: the test samples coloured by class,
the concept boundaries, and one sample marked.

Each dataset is drawn in the plane where its concepts are half-planes: XOR in (x1, x2); Dot in
the projections of v1 on (1, 1) and of v3 on (-1, -1), recovered from x = [v1 + v3, v1 - v3];
Trig in its latent (a, b), recovered from x (a + sin a is increasing, so it inverts), with the
third concept (z > 0) left out of the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import torch
from torch import Tensor

CLASS_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2")


@dataclass(frozen=True)
class PlaneView:
    """Coordinates (N, 2), axis labels, and where each axis's concept boundary lies."""

    points: Tensor
    labels: tuple[str, str]
    boundaries: tuple[float, float]
    note: str = ""


def _invert_a_plus_sin(value: Tensor) -> Tensor:
    """a with a + sin(a) = value (increasing in a), by bisection."""
    low, high = value - 1.0 - 1e-6, value + 1.0 + 1e-6
    for _ in range(60):
        middle = (low + high) / 2
        above = middle + torch.sin(middle) > value
        high, low = torch.where(above, middle, high), torch.where(above, low, middle)
    return (low + high) / 2


def plane_view(dataset: str, x: Tensor, concept_names: tuple[str, ...]) -> PlaneView | None:
    """The 2-D view of a synthetic dataset's inputs ``x``; ``None`` for any other dataset."""
    x = x.double()
    if dataset == "xor":
        return PlaneView(x[:, :2], (concept_names[0], concept_names[1]), (0.5, 0.5))
    if dataset == "dot":
        v1, v3 = (x[:, :2] + x[:, 2:]) / 2, (x[:, :2] - x[:, 2:]) / 2
        points = torch.stack([v1.sum(1), -v3.sum(1)], 1) / math.sqrt(2)
        return PlaneView(points, ("v1 . (1,1) / sqrt 2", "v3 . (-1,-1) / sqrt 2"), (0.0, 0.0),
                         "the class is the sign of v1 . v3, which these two concepts do not fix")
    if dataset == "trig":
        points = torch.stack([_invert_a_plus_sin(x[:, 0]), _invert_a_plus_sin(x[:, 2])], 1)
        return PlaneView(points, ("a", "b"), (0.0, 0.0), "z, the third latent, is not shown")
    return None


PLANE_SIZE, PLANE_PAD = 320, 34  # the drawing's side and margin, in pixels


def plane_pixels(view: PlaneView, points: Tensor | None = None, size: int = PLANE_SIZE) -> Tensor:
    """(N, 2) where ``points`` (default: the view's samples) are drawn, in the drawing's pixels."""
    low, high = view.points.min(0).values, view.points.max(0).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    unit = ((view.points if points is None else points) - low) / span
    inner = size - 2 * PLANE_PAD
    return torch.stack([PLANE_PAD + unit[..., 0] * inner, size - PLANE_PAD - unit[..., 1] * inner], -1)


def nearest_sample(view: PlaneView, x: float, y: float) -> int:
    """The sample drawn nearest to the drawing's pixel (x, y): what a click there opens."""
    return int(((plane_pixels(view) - torch.tensor([x, y], dtype=view.points.dtype)) ** 2).sum(1).argmin())


def plane_svg(view: PlaneView, y: Tensor, classes: tuple[str, ...], sample: int, size: int = PLANE_SIZE) -> str:
    """The view as an SVG document: samples by class, dashed concept boundaries, ``sample`` ringed."""
    pad = PLANE_PAD
    points = view.points

    def to_pixels(p: Tensor) -> Tensor:
        return plane_pixels(view, p, size)

    pixels = to_pixels(points)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
             f'role="img" aria-label="the test samples in the plane of {escape(view.labels[0])} and {escape(view.labels[1])}">',
             f'<rect x="{pad}" y="{pad}" width="{size - 2 * pad}" height="{size - 2 * pad}" fill="#fafafa" stroke="#999"/>']
    for (px, py), label in zip(pixels.tolist(), y.tolist()):
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{CLASS_COLOURS[label % len(CLASS_COLOURS)]}" '
                     'fill-opacity="0.55"/>')
    edge = to_pixels(torch.tensor(view.boundaries, dtype=points.dtype))
    bx, by = edge.tolist()
    if pad <= bx <= size - pad:
        parts.append(f'<line x1="{bx:.1f}" y1="{pad}" x2="{bx:.1f}" y2="{size - pad}" stroke="#333" stroke-dasharray="4 3"/>')
    if pad <= by <= size - pad:
        parts.append(f'<line x1="{pad}" y1="{by:.1f}" x2="{size - pad}" y2="{by:.1f}" stroke="#333" stroke-dasharray="4 3"/>')
    sx, sy = pixels[sample].tolist()
    parts.append(f'<circle cx="{sx:.1f}" cy="{sy:.1f}" r="7" fill="none" stroke="#000" stroke-width="2.5"/>')
    parts.append(f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle" font-size="11">{escape(view.labels[0])} &#8594;</text>')
    parts.append(f'<text x="12" y="{size / 2}" text-anchor="middle" font-size="11" '
                 f'transform="rotate(-90 12 {size / 2})">{escape(view.labels[1])} &#8594;</text>')
    for i, name in enumerate(classes[: len(CLASS_COLOURS)]):
        parts.append(f'<circle cx="{pad + 6 + 110 * i}" cy="14" r="4" fill="{CLASS_COLOURS[i]}"/>'
                     f'<text x="{pad + 14 + 110 * i}" y="18" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
