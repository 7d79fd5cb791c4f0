"""A figure of a concept head: each chosen class's strongest concepts, and how sparse the head is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..info import ConceptInfo
from ..plotting import pyplot, save_figure
from .base import ConceptModel
from .editing import sparsity, top_concepts


def top_concepts_plot(model: ConceptModel, info: ConceptInfo, path: str | Path, classes: Sequence[str] | None = None,
                      k: int = 5, title: str = "") -> Path:
    """Horizontal bars of the ``k`` largest positive weights of each class in ``classes`` (default:
    the first six), titled with the head's sparsity."""
    top = top_concepts(model, info, k)
    classes = list(classes or list(top)[:6])
    plt = pyplot()
    columns = min(3, len(classes))
    rows = (len(classes) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 0.45 * k * rows + 1.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, classes):
        pairs = top[name][::-1]
        ax.barh([c.replace("has_", "").replace("::", ": ") for c, _ in pairs], [w for _, w in pairs], color="#3b7dd8")
        ax.set_title(name, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel("head weight", fontsize=8)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    fig.suptitle(f"{title + ': ' if title else ''}top concepts per class; {sparsity(model):.0%} of the head's weights are zero",
                 fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
