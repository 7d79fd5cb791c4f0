"""Figure of one conceptual counterfactual: the image next to its top concepts to add and remove."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..plotting import pyplot, save_figure
from .cce import Counterfactuals


def explanation_plot(image: Tensor | None, result: Counterfactuals, sample: int, path: str | Path,
                     title: str = "", top: int = 5) -> None:
    """Image (3, H, W in [0, 1], or None) beside bars of concept weights: green add, red remove."""
    plt = pyplot()
    explanation = result.explanation(sample, top)
    items = explanation["add"] + explanation["remove"][::-1]
    panels = 2 if image is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels + 1.5, 3.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.4][-panels:]})
    if image is not None:
        axes[0, 0].imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        axes[0, 0].axis("off")
    ax = axes[0, -1]
    names = [name for name, _ in items][::-1]
    weights = [weight for _, weight in items][::-1]
    ax.barh(range(len(items)), weights, color=["tab:green" if w > 0 else "tab:red" for w in weights])
    ax.set_yticks(range(len(items)), names, fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("concept weight (> 0 add, < 0 remove)")
    status = "reaches" if bool(result.success[sample]) else "does not reach"
    ax.set_title(f"counterfactual {status} the target (p = {float(result.target_probability[sample]):.2f})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
