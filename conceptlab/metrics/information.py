"""k-nearest-neighbour estimators of mutual information, for continuous and discrete variables.

- Continuous with continuous: Kraskov, Stoegbauer and Grassberger (2004), their first estimator:
  the distance to the k-th neighbour in the joint space (max-norm) sets, for each sample, the
  radius in which its neighbours in each marginal space are counted;
  I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >.
- Continuous with discrete: Ross (2014): the k-th neighbour among samples of the same label sets
  the radius, and all samples within it are counted; I = psi(N) - < psi(N_label) > + psi(k) - < psi(m) >.
- Conditioning on a discrete variable: the estimate within each of its values, weighted by the
  value's share of the samples (values with too few samples for k neighbours are left out, and the
  share left out is reported).

Both are in nats. Ties (a saturated probability, a repeated value) would make a radius zero, so a
jitter of 1e-10 times each column's spread is added with a fixed seed, as scikit-learn does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def _columns(values: ArrayLike, what: str) -> np.ndarray:
    array = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{what} must be (N,) or (N, d) samples; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values: drop those samples (e.g. rows with a missing label) first")
    return array


def _labels(values: ArrayLike, what: str) -> np.ndarray:
    """Integer codes of the distinct rows (a vector of labels, or rows of several discrete columns)."""
    array = _columns(values, what)
    _, codes = np.unique(array, axis=0, return_inverse=True)
    return codes.reshape(-1)


def _jitter(x: np.ndarray, seed: int) -> np.ndarray:
    spread = x.std(0, keepdims=True)
    spread[spread == 0] = 1.0
    return x + 1e-10 * spread * np.random.default_rng(seed).standard_normal(x.shape)


def _count_within(points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Samples strictly closer than ``radius`` (max-norm) to each point, itself excluded."""
    tree = cKDTree(points)
    return tree.query_ball_point(points, np.nextafter(radius, 0), p=np.inf, return_length=True) - 1


def _check_sizes(n: int, k: int, *others: int) -> None:
    if any(o != n for o in others):
        raise ValueError(f"the variables must hold the same samples; got {(n, *others)} rows")
    if k < 1:
        raise ValueError(f"k must be a positive number of neighbours; got {k}")
    if n <= k:
        raise ValueError(f"{n} samples are too few for k = {k} neighbours: give more samples or a smaller k")


def _continuous_mi(x: np.ndarray, y: np.ndarray, k: int) -> float:
    joint = np.hstack([x, y])
    radius = cKDTree(joint).query(joint, k + 1, p=np.inf)[0][:, -1]
    n_x, n_y = _count_within(x, radius), _count_within(y, radius)
    value = digamma(k) + digamma(len(x)) - np.mean(digamma(n_x + 1) + digamma(n_y + 1))
    return float(max(value, 0.0))


def _discrete_mi(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    n = len(x)
    radius = np.zeros(n)
    kept = np.zeros(n, dtype=bool)
    label_counts = np.zeros(n)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) <= k:
            continue  # too few samples of this label to find k neighbours: left out, as scikit-learn does
        radius[rows] = cKDTree(x[rows]).query(x[rows], k + 1, p=np.inf)[0][:, -1]
        kept[rows] = True
        label_counts[rows] = len(rows)
    if kept.sum() <= k:
        raise ValueError(f"no label has more than k = {k} samples: the mutual information cannot be estimated")
    x, radius, label_counts = x[kept], radius[kept], label_counts[kept]
    m = cKDTree(x).query_ball_point(x, radius, p=np.inf, return_length=True) - 1
    value = digamma(len(x)) - np.mean(digamma(label_counts)) + digamma(k) - np.mean(digamma(np.maximum(m, 1)))
    return float(max(value, 0.0))


def mutual_information(x: ArrayLike, y: ArrayLike, *, discrete_y: bool = False, k: int = 3, seed: int = 0) -> float:
    """Mutual information I(X; Y) in nats, by k nearest neighbours.

    Args:
        x: (N,) or (N, d) continuous samples.
        y: (N,) or (N, e) samples: continuous, or discrete labels with ``discrete_y`` (several
            discrete columns count as one label per distinct row).
        discrete_y: ``y`` holds labels (Ross's estimator) rather than continuous values (KSG).
        k: Neighbours.
        seed: Seeds the tie-breaking jitter.

    Returns:
        The estimate (clipped at 0).

    Raises:
        ValueError: Different numbers of samples, too few samples for ``k``, or NaN values.

    Examples:
        >>> from conceptlab.metrics import mutual_information
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(3000, generator=g)
        >>> y = 0.8 * x + 0.6 * torch.randn(3000, generator=g)  # correlation 0.8: I = 0.511 nats
        >>> abs(mutual_information(x, y) - 0.511) < 0.02
        True
    """
    xs = _jitter(_columns(x, "x"), seed)
    _check_sizes(len(xs), k, len(y))
    if discrete_y:
        return _discrete_mi(xs, _labels(y, "y"), k)
    return _continuous_mi(xs, _jitter(_columns(y, "y"), seed + 1), k)


@dataclass(frozen=True)
class ConditionalInformation:
    """I(X; Y | Z) with Z discrete.

    Attributes:
        value: The estimate in nats: the per-stratum estimates weighted by their share of the kept samples.
        kept_share: Share of the samples in strata (values of Z) large enough to estimate within.
    """

    value: float
    kept_share: float


def conditional_mutual_information(
    x: ArrayLike, y: ArrayLike, z: ArrayLike, *, discrete_y: bool = False, k: int = 3, min_stratum: int | None = None,
    seed: int = 0,
) -> ConditionalInformation:
    """I(X; Y | Z) in nats for a discrete ``z``: the estimate within each value of Z, weighted by its share.

    Args:
        x: (N,) or (N, d) continuous samples.
        y: (N,) or (N, e) samples, continuous or (``discrete_y``) labels.
        z: (N,) or (N, f) discrete conditioning labels (each distinct row is one stratum).
        discrete_y: ``y`` holds labels.
        k: Neighbours.
        min_stratum: Smallest stratum estimated within (default 4 k); smaller ones are left out.
        seed: Seeds the tie-breaking jitter.

    Returns:
        The estimate and the share of samples it rests on.

    Raises:
        ValueError: No stratum of Z is large enough (too few samples per value of Z).

    Examples:
        >>> from conceptlab.metrics import conditional_mutual_information
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randint(0, 2, (2000,), generator=g)
        >>> x = z + torch.randn(2000, generator=g)
        >>> y = z + torch.randn(2000, generator=g)  # dependent only through z
        >>> conditional_mutual_information(x, y, z).value < 0.02
        True
    """
    strata = _labels(z, "z")
    xs, ys = _columns(x, "x"), _columns(y, "y")
    _check_sizes(len(xs), k, len(ys), len(strata))
    smallest = 4 * k if min_stratum is None else min_stratum
    values, weights = [], []
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        if len(rows) < max(smallest, k + 1):
            continue
        labels = _labels(ys[rows], "y") if discrete_y else None
        if discrete_y and len(np.unique(labels)) == 1:
            values.append(0.0)  # Y is constant here: it carries nothing beyond Z
        elif discrete_y:
            values.append(_discrete_mi(_jitter(xs[rows], seed), labels, k))
        else:
            values.append(_continuous_mi(_jitter(xs[rows], seed), _jitter(ys[rows], seed + 1), k))
        weights.append(len(rows))
    if not weights:
        raise ValueError(f"no value of the conditioning variable has {smallest} samples: give more samples, or condition "
                         "on fewer concepts")
    return ConditionalInformation(float(np.average(values, weights=weights)), float(sum(weights) / len(strata)))


def gaussian_mutual_information(rho: float) -> float:
    """I(X; Y) in nats of two jointly Gaussian variables with correlation ``rho``: -log(1 - rho^2) / 2.

    Args:
        rho: The correlation, in (-1, 1).

    Returns:
        The mutual information in nats.

    Examples:
        >>> from conceptlab.metrics import gaussian_mutual_information
        >>> round(gaussian_mutual_information(0.8), 4)
        0.5108
    """
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1); got {rho}")
    return float(-0.5 * np.log1p(-rho * rho))

