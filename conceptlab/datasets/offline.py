"""Benchmarks that need no download: digit arithmetic on scikit-learn's bundled 8x8 digits, a
tabular toy whose concepts are correlated by a chosen rho, a toy of mixed concept types with a
multilabel task, and rendered shapes.

Digit arithmetic is the MNIST-addition setting of the concept literature on the 1,797 handwritten
digits that ship inside scikit-learn: a sample is two digit images side by side (128 pixels), its
concepts say which digit each image shows (two categorical concepts of ten values), and its task is their sum (19 classes) or the sum's parity. The images are divided into
train / val / test pools before pairs are drawn, so no test image is ever seen in training.
"""

from __future__ import annotations

import zlib
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from ..info import ConceptInfo
from ..settings import Float, PositiveInt, settings
from .base import ConceptDataset, ConceptSplits
from .supervision import Supervision
from .synthetic import TRAIN_FRACTION, VAL_FRACTION, block_splits

DigitsTask = Literal["sum", "parity"]


def _digit_pools(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The bundled digits (pixels scaled to [0, 1]) divided 70/10/20 into train / val / test pools."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng([seed, zlib.crc32(b"digit pools")]).permutation(len(digits.target))
    cuts = [int(TRAIN_FRACTION * len(order)), int((TRAIN_FRACTION + VAL_FRACTION) * len(order))]
    return [(digits.data[rows] / 16.0, digits.target[rows]) for rows in np.split(order, cuts)]


def digits_arithmetic(size: int = 6000, task: DigitsTask = "sum", seed: int = 0) -> ConceptSplits:
    """Pairs of bundled 8x8 digits with the two digits as concepts and their sum (or its parity) as task.

    Args:
        size: Pairs in all, divided 70/10/20 like the images they are drawn from.
        task: ``sum`` (19 classes, 0 to 18) or ``parity`` (even, odd).
        seed: Divides the images into pools and draws the pairs.

    Returns:
        Train / val / test splits; x (N, 128), c (N, 20) one-hot per digit: the categorical
        concepts ``left digit`` and ``right digit``.

    Raises:
        ValueError: An unknown task or fewer than 10 pairs.

    Examples:
        >>> from conceptlab.datasets import digits_arithmetic
        >>> splits = digits_arithmetic(size=100)
        >>> splits.train.x.shape, splits.info.n_classes, list(splits.info.concept_groups)
        (torch.Size([70, 128]), 19, ['left digit', 'right digit'])
    """
    if task not in ("sum", "parity"):
        raise ValueError(f"unknown digits task {task!r}; choose sum or parity")
    if size < 10:
        raise ValueError(f"digits arithmetic needs at least 10 pairs; got {size}")
    rng = np.random.default_rng([seed, zlib.crc32(b"digit pairs")])
    counts = [int(round(TRAIN_FRACTION * size)), int(round(VAL_FRACTION * size))]
    counts.append(size - sum(counts))
    names = tuple(f"{side}={d}" for side in ("left", "right") for d in range(10))
    groups = {"left digit": tuple(range(10)), "right digit": tuple(range(10, 20))}
    classes = tuple(str(s) for s in range(19)) if task == "sum" else ("even", "odd")
    info = ConceptInfo(names, classes, groups, categorical=tuple(groups))
    parts = []
    for (pixels, labels), n in zip(_digit_pools(seed), counts):
        left, right = rng.integers(0, len(labels), size=(2, n))
        x = np.concatenate([pixels[left], pixels[right]], axis=1)
        c = np.concatenate([np.eye(10)[labels[left]], np.eye(10)[labels[right]]], axis=1)
        total = labels[left] + labels[right]
        y = total if task == "sum" else total % 2
        parts.append(ConceptDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(c, dtype=torch.float32),
                                    torch.tensor(y), info))
    return ConceptSplits(*parts)


def correlated_concepts(size: int = 3000, rho: float = 0.5, seed: int = 0, *, n_concepts: int = 3) -> ConceptSplits:
    """A tabular toy for leakage and intervention studies: ``n_concepts`` binary concepts from latent
    Gaussians whose pairwise correlation is ``rho``; inputs are noisy views of the latents (the
    value and its square, each with noise 0.5), the task is whether most concepts hold.

    Args:
        size: Samples in all, split 70/10/20.
        rho: Correlation between every pair of latent concept variables, in (-1 / (n_concepts - 1), 1).
        seed: Draws the samples.
        n_concepts: Number of concepts (odd numbers avoid ties in the majority).

    Returns:
        Train / val / test splits; x (N, 2 n_concepts), c (N, n_concepts).

    Raises:
        ValueError: ``rho`` outside its range (the correlation matrix must be positive definite), or
            fewer than 2 concepts.

    Examples:
        >>> from conceptlab.datasets import correlated_concepts
        >>> splits = correlated_concepts(size=2000, rho=0.9)
        >>> c = splits.train.c
        >>> bool(torch.corrcoef(c.T)[0, 1] > 0.6)  # strongly correlated concepts
        True
    """
    if n_concepts < 2:
        raise ValueError(f"n_concepts must be at least 2; got {n_concepts}")
    low = -1 / (n_concepts - 1)
    if not low < rho < 1:
        raise ValueError(f"rho must be in ({low:g}, 1) for {n_concepts} equally correlated variables; got {rho}")
    rng = np.random.default_rng([seed, zlib.crc32(b"correlated concepts")])
    covariance = np.full((n_concepts, n_concepts), rho) + (1 - rho) * np.eye(n_concepts)
    latent = rng.multivariate_normal(np.zeros(n_concepts), covariance, size=size)
    x = np.concatenate([latent + 0.5 * rng.standard_normal((size, n_concepts)),
                        latent ** 2 + 0.5 * rng.standard_normal((size, n_concepts))], 1)
    c = latent > 0
    y = 2 * c.sum(1) > n_concepts
    info = ConceptInfo(tuple(f"c{i + 1} > 0" for i in range(n_concepts)), ("minority", "majority"))
    return block_splits(ConceptDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(c, dtype=torch.float32),
                                       torch.tensor(y).long(), info))


@settings
class DigitsSettings(Supervision):
    """Digit arithmetic on scikit-learn's bundled 8x8 digits (``digits_arithmetic``).

    Attributes:
        name: ``digits``.
        size: Digit pairs in all (at least 10).
        task: ``sum`` (19 classes) or ``parity``.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["digits"]
    size: Annotated[PositiveInt, Field(ge=10)] = 6000
    task: DigitsTask = "sum"


@settings
class CorrelatedSettings(Supervision):
    """The tabular toy with concept correlation ``rho`` (``correlated_concepts``).

    Attributes:
        name: ``correlated``.
        size: Samples in all (at least 10).
        rho: Correlation between every pair of latent concept variables, in (-0.5, 1).
        n_concepts: Number of concepts.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["correlated"]
    size: Annotated[PositiveInt, Field(ge=10)] = 3000
    rho: Annotated[Float, Field(gt=-0.5, lt=1)] = 0.5
    n_concepts: Annotated[PositiveInt, Field(ge=2)] = 3


MIXED_INFO = ConceptInfo(
    ("colour=red", "colour=green", "colour=blue", "colour=yellow", "size", "striped"),
    ("warm", "big", "blue or huge"),
    {"colour": (0, 1, 2, 3), "size": (4,), "striped": (5,)},
    categorical=("colour",), continuous=("size",), task="multilabel",
)
MIXED_CENTRES = ((1.5, 1.5), (-1.5, 1.5), (-1.5, -1.5), (1.5, -1.5))  # where each colour's inputs cluster


def mixed_concepts(size: int = 3000, seed: int = 0) -> ConceptSplits:
    """A toy with one concept of each type and a multilabel task: a 4-way categorical ``colour``,
    a continuous ``size`` and a binary ``striped``; three labels, ``warm`` (red or yellow), ``big``
    (size > 0) and ``blue or huge`` (blue, or size > 1.2), all functions of the concepts, so the
    concepts-only ceiling is 100 %.

    The size is small (|size| in [0.2, 0.8]) or large ([1.6, 2.4]), either sign, so its labels
    keep a margin from their thresholds. Inputs (N, 6): the colour's 2-d centre with unit noise
    (the colours overlap, so colour is the concept a model gets wrong), the size with noise 0.1,
    the striped flag with noise 0.5, and two pure-noise columns. ``striped`` does not enter the
    labels (a distractor concept).

    Args:
        size: Samples in all, split 70/10/20.
        seed: Draws the samples.

    Returns:
        Train / val / test splits; x (N, 6), c (N, 6): four colour members, size, striped; y (N, 3).

    Examples:
        >>> from conceptlab.datasets import mixed_concepts
        >>> splits = mixed_concepts(size=200)
        >>> splits.info.task, splits.info.categorical, splits.info.continuous, tuple(splits.train.y.shape)
        ('multilabel', ('colour',), ('size',), (140, 3))
    """
    rng = np.random.default_rng([seed, zlib.crc32(b"mixed concepts")])
    colour = rng.integers(0, 4, size)
    magnitude = rng.choice([-1.0, 1.0], size) * (rng.uniform(0.2, 0.8, size) + 1.4 * rng.integers(0, 2, size))
    striped = rng.integers(0, 2, size)
    x = np.concatenate([
        np.asarray(MIXED_CENTRES)[colour] + rng.standard_normal((size, 2)),
        (magnitude + 0.1 * rng.standard_normal(size))[:, None],
        (2.0 * striped - 1 + 0.5 * rng.standard_normal(size))[:, None],
        rng.standard_normal((size, 2)),
    ], 1)
    c = np.concatenate([np.eye(4)[colour], magnitude[:, None], striped[:, None]], 1)
    y = np.stack([(colour == 0) | (colour == 3), magnitude > 0, (colour == 2) | (magnitude > 1.2)], 1)
    return block_splits(ConceptDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(c, dtype=torch.float32),
                                       torch.tensor(y, dtype=torch.float32), MIXED_INFO))


@settings
class MixedSettings(Supervision):
    """The toy of mixed concept types with a multilabel task (``mixed_concepts``).

    Attributes:
        name: ``mixed``.
        size: Samples in all (at least 10).
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["mixed"]
    size: Annotated[PositiveInt, Field(ge=10)] = 3000


SHAPE_CONCEPTS = ("round", "red", "large", "left", "top")


def rendered_shapes(size: int = 3000, rho: float = 0.0, *, image_size: int = 16, seed: int = 0) -> ConceptSplits:
    """A dSprites-like renderer: one shape per RGB image, its five binary factors correlated by ``rho``.

    Each image shows a square or a disc (``round``), red or blue (``red``), large or small
    (``large``), in the left or right half (``left``) and the top or bottom half (``top``), at a
    jittered position, with pixel noise. The five factors are thresholds of latent Gaussians with
    pairwise correlation ``rho``, so a model can be trained where concepts co-occur (leakage and
    shortcut studies) and tested where they do not. Task: ``round`` decides between ``red`` and
    ``large`` (a round shape's class is its colour, a square's its size).

    Args:
        size: Images in all, split 70/10/20.
        rho: Correlation between every pair of latent factors, in (-0.25, 1).
        image_size: Side of the square images (at least 8).
        seed: Draws the factors, positions and noise.

    Returns:
        Train / val / test splits; x (N, 3 * image_size**2) pixels in [0, 1], c (N, 5).

    Raises:
        ValueError: ``rho`` or ``image_size`` out of range.

    Examples:
        >>> from conceptlab.datasets import rendered_shapes
        >>> splits = rendered_shapes(size=200)
        >>> splits.train.x.shape, splits.info.concept_names
        (torch.Size([140, 768]), ('round', 'red', 'large', 'left', 'top'))
    """
    if not -0.25 < rho < 1:
        raise ValueError(f"rho must be in (-0.25, 1) for five equally correlated factors; got {rho}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels; got {image_size}")
    rng = np.random.default_rng([seed, zlib.crc32(b"rendered shapes")])
    k = len(SHAPE_CONCEPTS)
    latent = rng.multivariate_normal(np.zeros(k), np.full((k, k), rho) + (1 - rho) * np.eye(k), size=size)
    c = latent > 0
    round_, red, large, left, top = c.T
    side = np.where(large, 0.45, 0.25) * image_size
    half = image_size / 2
    cx = np.where(left, half / 2, half + half / 2) + rng.uniform(-1, 1, size) * (half / 2 - side / 2).clip(min=0)
    cy = np.where(top, half / 2, half + half / 2) + rng.uniform(-1, 1, size) * (half / 2 - side / 2).clip(min=0)
    grid = np.arange(image_size) + 0.5
    dx, dy = grid[None, None, :] - cx[:, None, None], grid[None, :, None] - cy[:, None, None]
    inside = np.where(round_[:, None, None], dx ** 2 + dy ** 2 <= (side[:, None, None] / 2) ** 2,
                      (np.abs(dx) <= side[:, None, None] / 2) & (np.abs(dy) <= side[:, None, None] / 2))
    colour = np.where(red[:, None], [0.9, 0.1, 0.1], [0.1, 0.1, 0.9])  # (N, 3)
    images = inside[:, None] * colour[:, :, None, None] + rng.normal(0, 0.05, (size, 3, image_size, image_size))
    x = images.clip(0, 1).reshape(size, -1)
    y = np.where(round_, red, large)
    info = ConceptInfo(SHAPE_CONCEPTS, ("no", "yes"))
    return block_splits(ConceptDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(c, dtype=torch.float32),
                                       torch.tensor(y).long(), info))


@settings
class ShapesSettings(Supervision):
    """The rendered-shapes dataset (``rendered_shapes``).

    Attributes:
        name: ``shapes``.
        size: Images in all (at least 10).
        rho: Correlation between every pair of latent factors, in (-0.25, 1).
        image_size: Side of the square images.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["shapes"]
    size: Annotated[PositiveInt, Field(ge=10)] = 3000
    rho: Annotated[Float, Field(gt=-0.25, lt=1)] = 0.0
    image_size: Annotated[PositiveInt, Field(ge=8)] = 16
