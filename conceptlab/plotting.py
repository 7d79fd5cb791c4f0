"""Figure helpers shared by every plot: a headless pyplot and atomic PNG writes."""

from __future__ import annotations

import io
from pathlib import Path

from .atomic import write_bytes_atomic


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (creating its folder) and close it; two
    processes writing the same figure at once each replace it whole."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    pyplot().close(fig)
    return write_bytes_atomic(path, buffer.getvalue())
