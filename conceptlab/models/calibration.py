"""Platt scaling of concept scores on held-out labels: the one calibration the models share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CALIBRATION_STEPS = 100  # L-BFGS iterations of the Platt scaling fit
CALIBRATION_PENALTY = 0.01  # weight of the squared distance of (scale, bias) from (1, 0), per concept


def fit_platt(scores: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Per-concept scale a and bias b making sigmoid(a * score + b) match the labels.

    Minimises the concepts' binary cross-entropy with L-BFGS plus a small penalty
    (``CALIBRATION_PENALTY``) on the distance from a = 1, b = 0: a concept the scores separate
    perfectly has no finite best scale, and without it the fit drives the probabilities to 0 and 1.
    A concept whose labels are all missing or all one value keeps a = 1, b = 0.

    Args:
        scores: (N, k) uncalibrated concept logits.
        c: (N, k) concept labels, 0 / 1, NaN where missing.

    Returns:
        ``(scale, bias)``, (k,) each, on ``scores``' device and dtype.

    Examples:
        >>> from conceptlab.models.calibration import fit_platt
        >>> scores = torch.linspace(-3, 3, 200).unsqueeze(1)
        >>> scale, bias = fit_platt(scores, (torch.rand(200, 1) < torch.sigmoid(2 * scores - 1)).float())
        >>> 1 < scale.item() < 3 and bias.item() < 0
        True
    """
    if scores.shape != c.shape or scores.ndim != 2:
        raise ValueError(f"need scores and labels of the same (N, k) shape; got {tuple(scores.shape)} and {tuple(c.shape)}")
    values = scores.detach().double()
    c = c.to(values.device, values.dtype)
    known = ~torch.isnan(c)
    varied = (c == 1).any(0) & (c == 0).any(0)  # NaN equals neither
    scale = torch.ones(values.shape[1], dtype=values.dtype, device=values.device, requires_grad=True)
    bias = torch.zeros_like(scale, requires_grad=True)
    optimizer = torch.optim.LBFGS([scale, bias], max_iter=CALIBRATION_STEPS, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        optimizer.zero_grad()
        terms = F.binary_cross_entropy_with_logits(scale * values + bias, c.nan_to_num(0.0), reduction="none")
        value = (terms * known).sum() / known.sum().clamp(min=1)
        value = value + CALIBRATION_PENALTY * ((scale - 1).square() + bias.square()).mean()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    fitted = varied & torch.isfinite(scale.detach()) & torch.isfinite(bias.detach())
    return (torch.where(fitted, scale.detach(), 1.0).to(scores.dtype),
            torch.where(fitted, bias.detach(), 0.0).to(scores.dtype))
