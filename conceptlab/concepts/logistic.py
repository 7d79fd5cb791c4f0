"""Many small L2-regularised logistic regressions solved at once by Newton's method.

Each problem ``p`` minimises, on its own examples only,

    L(w, b) = mean_i log(1 + exp(-y_i (w . x_i + b))) + alpha / 2 ||w||^2      (free, unregularised b)

With ``n`` examples of dimension ``D >> n`` the solution lies in the span of the (centred)
examples, ``w = sum_i a_i x_i``, so each Newton step solves an (n + 1) x (n + 1) system built
from the problem's Gram matrix instead of a D x D one; all problems step together, each with a
backtracking line search, and a problem stops once half its Newton decrement (the predicted
decrease, exact for a quadratic) is at most ``tol`` times its objective. Examples are centred per
problem as in :mod:`conceptlab.concepts.svm`, whose Gram matrices this shares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .svm import LinearSolution, centred_grams, primal_weights, problem_index


def fit_logistic_cavs(
    pool: Tensor, members: list[tuple[Tensor, Tensor]], alpha: float, tol: float = 1e-6, max_iter: int = 100
) -> LinearSolution:
    """One logistic regression per (positive rows, negative rows) of ``pool`` (M, D), all at once on
    ``pool``'s device. Returns weights, intercepts, objectives, the last relative Newton decrement
    (as ``gap``, an estimate, not a certificate) and Newton steps per problem."""
    index, labels = problem_index(pool, members)
    grams, centres = centred_grams(pool, index, labels != 0)
    coefficients, intercepts, objective, decrement, iterations = solve_logistic(grams, labels, alpha, tol, max_iter)
    weights, intercepts = primal_weights(pool, index, coefficients, intercepts, centres)
    return LinearSolution(weights, intercepts, objective, decrement, iterations)


def _objective(kernel: Tensor, a: Tensor, b: Tensor, y: Tensor, mask: Tensor, counts: Tensor, alpha: float) -> Tensor:
    ka = (kernel @ a[:, :, None])[..., 0]
    loss = (F.softplus(-y * (ka + b[:, None])) * mask).sum(1) / counts
    return loss + alpha / 2 * (a * ka).sum(1)


def solve_logistic(
    kernel: Tensor, labels: Tensor, alpha: float, tol: float = 1e-6, max_iter: int = 100
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Newton's method on Gram matrices ``kernel`` (P, n, n), labels (P, n) in {+1, -1, 0 = padding}.

    Returns coefficients a (P, n) with w = sum_i a_i x_i, intercepts (P,), objectives (P,),
    relative Newton decrements (P,) and steps taken (P,).
    """
    kernel = kernel.double()
    y = labels.double()
    mask = (labels != 0).double()
    counts = mask.sum(1).clamp_min(1)
    n_problems, n = y.shape
    a = torch.zeros(n_problems, n, dtype=torch.float64, device=y.device)
    b = torch.zeros(n_problems, dtype=torch.float64, device=y.device)
    active = torch.ones(n_problems, dtype=torch.bool, device=y.device)
    iterations = torch.zeros(n_problems, dtype=torch.long, device=y.device)
    decrement = torch.full((n_problems,), float("inf"), dtype=torch.float64, device=y.device)
    eye = torch.eye(n, dtype=torch.float64, device=y.device)
    objective = _objective(kernel, a, b, y, mask, counts, alpha)
    for _ in range(max_iter):
        f = (kernel @ a[:, :, None])[..., 0] + b[:, None]
        p = torch.sigmoid(-y * f)  # -dloss/d(y f) per example
        g = -y * p * mask / counts[:, None]  # dloss/df
        s = p * (1 - p) * mask / counts[:, None]  # d2loss/df2
        # Newton step in (a, b), its first block multiplied through by K^-1 (exact when K is singular too):
        # [S K + alpha I, s; s^T K, sum s] [da; db] = -[g + alpha a; sum g]
        system = torch.zeros(n_problems, n + 1, n + 1, dtype=torch.float64, device=y.device)
        system[:, :n, :n] = s[:, :, None] * kernel + alpha * eye
        system[:, :n, n] = s
        system[:, n, :n] = (s[:, None, :] @ kernel)[:, 0]
        system[:, n, n] = s.sum(1) + (s.sum(1) == 0).double()  # a problem with no valid rows: a dummy equation
        rhs = -torch.cat([g + alpha * a, g.sum(1, keepdim=True)], 1)
        step = torch.linalg.solve(system, rhs)
        da, db = step[:, :n] * mask, step[:, n]
        slope = ((kernel @ (g + alpha * a)[:, :, None])[..., 0] * da).sum(1) + g.sum(1) * db  # gradient . step
        decrement = (-slope / 2) / objective.abs().clamp_min(1e-300)
        active &= decrement > tol
        if not active.any():
            break
        length = torch.ones(n_problems, dtype=torch.float64, device=y.device)
        for _ in range(30):  # backtracking (Armijo) per problem
            trial = _objective(kernel, a + length[:, None] * da, b + length * db, y, mask, counts, alpha)
            ok = trial <= objective + 1e-4 * length * slope
            if ok.all():
                break
            length = torch.where(ok, length, length / 2)
        length = length * active
        a, b = a + length[:, None] * da, b + length * db
        objective = _objective(kernel, a, b, y, mask, counts, alpha)
        iterations += active.long()
    return a, b, objective, decrement.clamp_min(0), iterations
