"""The synthetic XOR, Trig and Dot datasets of the CEM paper (Espinosa Zarlenga et al., 2022).

Each generator draws ``size`` i.i.d. samples from its own ``numpy.random.Generator`` seeded by
``seed`` (no global random state is touched) and returns train / val / test splits of 70/10/20 %.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .base import ConceptDataset, ConceptInfo, ConceptSplits

TRAIN_FRACTION, VAL_FRACTION = 0.7, 0.1
NOISE_STD = 2.0  # "N(0, 2)" in the paper means standard deviation 2


def _xor_draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.uniform(0.0, 1.0, size=(n, 2))
    c = x > 0.5
    y = np.logical_xor(c[:, 0], c[:, 1])
    return x, c, y


def _trig_draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = rng.normal(0.0, NOISE_STD, size=(n, 3))
    a, b, z = h.T
    x = np.stack(
        [np.sin(a) + a, np.cos(a) + a, np.sin(b) + b, np.cos(b) + b, np.sin(z) + z, np.cos(z) + z,
         a**2 + b**2 + z**2],
        axis=1,
    )
    c = h > 0
    y = h.sum(axis=1) > 1  # the label of the official code, which produced the published tables
    return x, c, y


def _dot_draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v1 = rng.normal(0.0, NOISE_STD, size=(n, 2))
    v3 = rng.normal(0.0, NOISE_STD, size=(n, 2))
    x = np.concatenate([v1 + v3, v1 - v3], axis=1)
    c = np.stack([v1 @ np.array([1.0, 1.0]) > 0, v3 @ np.array([-1.0, -1.0]) > 0], axis=1)
    y = np.einsum("nd,nd->n", v1, v3) > 0
    return x, c, y


_GENERATORS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "xor": (_xor_draw, ("x1 > 0.5", "x2 > 0.5")),
    "trig": (_trig_draw, ("a > 0", "b > 0", "z > 0")),
    "dot": (_dot_draw, ("v1 . (1,1) > 0", "v3 . (-1,-1) > 0")),
}

SYNTHETIC_DATASETS: tuple[str, ...] = tuple(_GENERATORS)
"""The names of the bundled synthetic generators (``make_synthetic``)."""


def make_synthetic(name: str, size: int = 3000, seed: int = 0) -> ConceptSplits:
    """Draw the synthetic dataset ``name`` ('xor', 'trig' or 'dot') and split it 70/10/20.

    Args:
        name: ``xor``, ``trig`` or ``dot``.
        size: Samples in all.
        seed: Draws the samples and the split.

    Returns:
        The splits.

    Raises:
        ValueError: ``name`` is not a synthetic dataset.

    Examples:
        >>> from conceptlab.datasets import make_synthetic
        >>> make_synthetic("trig", size=100).train.x.shape
        torch.Size([70, 7])
    """
    if name not in _GENERATORS:
        raise ValueError(f"unknown synthetic dataset {name!r}; choose one of {', '.join(SYNTHETIC_DATASETS)}")
    if size < 10:
        raise ValueError(f"size must be at least 10 samples; got {size}")
    draw, concept_names = _GENERATORS[name]
    x, c, y = draw(np.random.default_rng(seed), size)
    info = ConceptInfo(concept_names=concept_names, task_names=(f"not {name}", name))
    full = ConceptDataset(
        torch.as_tensor(x, dtype=torch.float32),
        torch.as_tensor(c, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.long),
        info,
    )
    return block_splits(full)


def block_splits(data: ConceptDataset) -> ConceptSplits:
    """70/10/20 % train / val / test as consecutive blocks: a random split when the rows are i.i.d. draws."""
    size = len(data)
    n_train = int(TRAIN_FRACTION * size)
    n_val = int(VAL_FRACTION * size)
    return ConceptSplits(
        data.subset(range(n_train)),
        data.subset(range(n_train, n_train + n_val)),
        data.subset(range(n_train + n_val, size)),
    )


def xor(size: int = 3000, seed: int = 0) -> ConceptSplits:
    """XOR: x ~ U(0,1)^2, concepts x_i > 0.5, task c1 XOR c2.

    Args:
        size: Samples in all, split 70 / 10 / 20 % into train / validation / test.
        seed: Draws the samples and the split.

    Returns:
        70/10/20 train / val / test splits.

    Examples:
        >>> from conceptlab.datasets import xor
        >>> splits = xor(size=100)
        >>> splits.info.concept_names, splits.info.task_names
        (('x1 > 0.5', 'x2 > 0.5'), ('not xor', 'xor'))
    """
    return make_synthetic("xor", size, seed)


def trig(size: int = 3000, seed: int = 0) -> ConceptSplits:
    """Trig: seven trigonometric features of h ~ N(0, 2)^3, concepts h_i > 0, task sum(h) > 1.

    Args:
        size: Samples in all, split 70 / 10 / 20 % into train / validation / test.
        seed: Draws the samples and the split.

    Returns:
        70/10/20 train / val / test splits.

    Examples:
        >>> from conceptlab.datasets import trig
        >>> trig(size=100).info.n_concepts
        3
    """
    return make_synthetic("trig", size, seed)


def dot(size: int = 3000, seed: int = 0) -> ConceptSplits:
    """Dot: x = [v1 + v3, v1 - v3], concepts on projections of v1 and v3, task v1 . v3 > 0.

    Args:
        size: Samples in all, split 70 / 10 / 20 % into train / validation / test.
        seed: Draws the samples and the split.

    Returns:
        70/10/20 train / val / test splits.

    Examples:
        >>> from conceptlab.datasets import dot
        >>> splits = dot(size=100)
        >>> splits.train.x.shape, splits.info.n_concepts
        (torch.Size([70, 4]), 2)
    """
    return make_synthetic("dot", size, seed)
