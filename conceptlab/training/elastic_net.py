"""Elastic-net logistic regression solved to a certificate: the sparse head of a post-hoc CBM.

Minimises, over a weight matrix W (T, k) and an unpenalised bias b,

    mean loss(x W^T + b, y) + lam * (l1_ratio * ||W||_1 + (1 - l1_ratio) / 2 * ||W||_F^2)

(scikit-learn's ``SGDClassifier(penalty="elasticnet", alpha=lam, l1_ratio=...)`` penalty, which the
PCBM authors used), with cross-entropy for T > 1 outputs and binary cross-entropy for one. The
problem is convex; it is solved full-batch by accelerated proximal gradient (FISTA, with adaptive
restarts) on centred ``x`` (the same problem: the bias absorbs the shift), with step 1/L from
the bound L = ||[x, 1]||_2^2 / (2N) + lam (1 - l1_ratio) on the curvature. Soft-thresholding
gives exact zeros. It stops when the proximal-gradient step moves no coefficient by more than
``tol`` (in units of the step size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.heads import task_loss


@dataclass(frozen=True)
class ElasticNetFit:
    """The solution and how it was reached: ``objective`` every 10 iterations, ``converged``.

    Attributes:
        weight: (n_outputs, k) the solution's weights.
        bias: (n_outputs,) its intercepts.
        iterations: Iterations run.
        converged: Whether the tolerance was reached before the iteration limit.
        objective: The objective every 10 iterations.
    """

    weight: Tensor
    bias: Tensor
    iterations: int
    converged: bool
    objective: list[float]


def fit_elastic_net(
    x: Tensor,
    y: Tensor,
    n_outputs: int,
    *,
    lam: float,
    l1_ratio: float = 0.99,
    max_iter: int = 5000,
    tol: float = 1e-5,
) -> ElasticNetFit:
    """Solve the elastic-net logistic regression of ``y`` (class indices, or 0/1 for one output) on ``x`` (N, k).

    Args:
        x: (N, k) inputs (a PCBM's concept scores).
        y: (N,) class indices, or 0/1 for one output.
        n_outputs: Logits of the head (1 for a binary task).
        lam: Penalty strength.
        l1_ratio: Share of the penalty that is L1 (the rest is L2).
        max_iter: Iteration limit.
        tol: Stop when a proximal-gradient step moves no coefficient by more than this (in units of the step size).

    Returns:
        The weights, bias, objective per iteration and whether it converged.

    Examples:
        >>> from conceptlab.training import fit_elastic_net
        >>> x = torch.randn(200, 3)
        >>> solution = fit_elastic_net(x, (x[:, 0] > 0).long(), 1, lam=1e-3)
        >>> solution.weight.shape, bool(solution.weight[0, 0] > 0)
        (torch.Size([1, 3]), True)
    """
    if x.ndim != 2 or y.shape[:1] != x.shape[:1]:
        raise ValueError(f"need x (N, k) and y (N,); got {tuple(x.shape)} and {tuple(y.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    if lam < 0 or not 0 <= l1_ratio <= 1:
        raise ValueError(f"need lam >= 0 and l1_ratio in [0, 1]; got {lam}, {l1_ratio}")
    x = x.detach().float()
    y = y.long() if n_outputs > 1 else y
    centre = x.mean(0)
    x = x - centre  # the same problem (the bias absorbs the shift), better conditioned: the mean no longer dominates L
    n, k = x.shape
    l1, l2 = lam * l1_ratio, lam * (1 - l1_ratio)
    augmented = torch.cat([x, x.new_ones(n, 1)], dim=1)
    curvature = float(torch.linalg.matrix_norm(augmented, ord=2)) ** 2 / (2 * n) + l2
    step = 1.0 / max(curvature, 1e-12)

    def smooth(w: Tensor, b: Tensor) -> Tensor:
        return task_loss(x @ w.T + b, y) + l2 / 2 * w.pow(2).sum()

    def objective(w: Tensor, b: Tensor) -> float:
        return float(smooth(w, b) + l1 * w.abs().sum())

    w = x.new_zeros(n_outputs, k)
    b = x.new_zeros(n_outputs)
    w_ahead, b_ahead, momentum = w.clone(), b.clone(), 1.0
    trace = [objective(w, b)]
    converged = False
    iteration = 0
    for iteration in range(1, max_iter + 1):
        w_ahead.requires_grad_(True)
        b_ahead.requires_grad_(True)
        grad_w, grad_b = torch.autograd.grad(smooth(w_ahead, b_ahead), (w_ahead, b_ahead))
        with torch.no_grad():
            moved = w_ahead - step * grad_w
            w_next = moved.sign() * (moved.abs() - step * l1).clamp_min(0)
            b_next = b_ahead - step * grad_b
            change = max(float((w_next - w_ahead).abs().max()), float((b_next - b_ahead).abs().max())) / step
            # adaptive restart (O'Donoghue and Candes, 2015): drop the momentum once it points uphill
            if float(((w_ahead - w_next) * (w_next - w)).sum() + ((b_ahead - b_next) * (b_next - b)).sum()) > 0:
                momentum = 1.0
            following = (1 + (1 + 4 * momentum**2) ** 0.5) / 2
            w_ahead = w_next + (momentum - 1) / following * (w_next - w)
            b_ahead = b_next + (momentum - 1) / following * (b_next - b)
            w, b, momentum = w_next, b_next, following
        if iteration % 10 == 0:
            trace.append(objective(w, b))
        if change <= tol:
            converged = True
            break
    return ElasticNetFit(w.detach(), (b - w @ centre).detach(), iteration, converged, trace)
