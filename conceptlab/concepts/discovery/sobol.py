"""Total Sobol indices of a function of masks in [0, 1]^K, by Jansen's estimator on a quasi-random design."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import qmc


def sobol_designs(n_factors: int, n_designs: int, seed: int) -> np.ndarray:
    """(n_designs (K + 2), K) masks: the designs A, B and A with column i from B, for each i.

    ``n_designs`` rows of a scrambled Sobol sequence in [0, 1]^(2K) give A (first K columns) and B.
    """
    points = qmc.Sobol(2 * n_factors, scramble=True, seed=seed).random(n_designs)
    a, b = points[:, :n_factors], points[:, n_factors:]
    mixed = []
    for i in range(n_factors):
        ab = a.copy()
        ab[:, i] = b[:, i]
        mixed.append(ab)
    return np.concatenate([a, b, *mixed]).astype(np.float32)


def total_indices(values: np.ndarray, n_factors: int, n_designs: int) -> np.ndarray:
    """(K,) total Sobol indices from ``values`` of the function at ``sobol_designs``' rows (Jansen):
    ST_i = E[(f(A) - f(A_B^i))^2] / (2 Var f). A function that does not vary gives zeros."""
    f_a, f_b = values[:n_designs], values[n_designs : 2 * n_designs]
    variance = np.var(np.concatenate([f_a, f_b]))
    if variance <= 0:
        return np.zeros(n_factors)
    mixed = values[2 * n_designs :].reshape(n_factors, n_designs)
    return ((f_a[None] - mixed) ** 2).mean(1) / (2 * variance)


def sobol_importance(function: Callable[[np.ndarray], np.ndarray], n_factors: int, *, n_designs: int = 32,
                     seed: int = 0) -> np.ndarray:
    """(K,) total Sobol indices of ``function`` (masks (M, K) -> values (M,)) over uniform masks."""
    designs = sobol_designs(n_factors, n_designs, seed)
    return total_indices(np.asarray(function(designs), dtype=float), n_factors, n_designs)
