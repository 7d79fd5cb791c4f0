"""A picture of discovered concepts: one row per concept, most important first, its example parts along it."""

from __future__ import annotations

from pathlib import Path

from ...plotting import pyplot, save_figure
from .concepts import DiscoveredConcepts


def concept_examples_plot(found: DiscoveredConcepts, path: str | Path, *, title: str = "Discovered concepts",
                          per_concept: int = 8) -> None:
    """Write a grid of each concept's first ``per_concept`` example parts, concepts ranked by importance.

    Args:
        found: The discovered concepts.
        path: The image file to write.
        title: The figure's title.
        per_concept: Examples shown per concept.

    Examples:
        >>> import pathlib, tempfile
        >>> from conceptlab.concepts.discovery import CRAFT
        >>> from conceptlab.concepts.discovery.plot import concept_examples_plot
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> found = CRAFT(n_concepts=2, patch_size=8).fit(model, "1", torch.rand(3, 3, 16, 16)).concepts(examples=4)
        >>> concept_examples_plot(found, pathlib.Path(tempfile.mkdtemp()) / "concepts.png")
    """
    plt = pyplot()
    order = found.ranked()
    columns = max(1, min(per_concept, max(len(found.examples[k]) for k in order)))
    fig, axes = plt.subplots(len(order), columns, figsize=(1.2 * columns + 1.2, 1.25 * len(order) + 0.5), squeeze=False)
    for row, k in enumerate(order):
        parts = found.examples[k].images[:columns]
        for col in range(columns):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(parts):
                ax.imshow(parts[col].float().permute(1, 2, 0).clamp(0, 1).numpy().squeeze())
        label = found.names[k] if found.importance is None else f"{found.names[k]}\n{float(found.importance[k]):.3f}"
        axes[row][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
