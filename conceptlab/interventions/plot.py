"""Figure of intervention curves: accuracy against the number of units intervened, one line per curve."""

from __future__ import annotations

from pathlib import Path

from ..plotting import pyplot, save_figure
from .curves import InterventionCurve


def curve_plot(curves: list[InterventionCurve], path: Path, *, title: str, unit: str = "concept groups") -> None:
    """Plot ``InterventionCurve``s of one model: accuracy (%) against units intervened, std band.

    Args:
        curves: The curves of one model.
        path: The image file to write.
        title: The figure's title.
        unit: What the x axis counts (``concept groups`` or ``concepts``).

    Examples:
        >>> import tempfile, pathlib
        >>> from conceptlab.datasets import xor
        >>> from conceptlab.interventions import curve_plot, intervention_curve
        >>> from conceptlab.models import cbm
        >>> curve = intervention_curve(cbm(in_features=2, n_concepts=2, n_classes=2), xor(size=100).test, repeats=1)
        >>> curve_plot([curve], pathlib.Path(tempfile.mkdtemp()) / "curve.png", title="XOR CBM")
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for curve in curves:
        xs = list(range(len(curve.accuracy_mean)))
        mean = [100 * v for v in curve.accuracy_mean]
        std = [100 * v for v in curve.accuracy_std]
        ax.plot(xs, mean, marker="o", ms=3, label=curve.name)
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.15)
    ax.set_xlabel(f"{unit} intervened")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("task accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
