"""Input encoders: the MLP of the CEM paper's synthetic experiments."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_features: int, out_features: int, hidden: Sequence[int] = (128, 128)) -> nn.Sequential:
    """Linear -> LeakyReLU blocks of widths ``hidden``, then a final Linear to ``out_features``."""
    if in_features < 1 or out_features < 1:
        raise ValueError(f"mlp needs positive sizes; got in={in_features}, out={out_features}")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.LeakyReLU()]
        width = int(h)
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
