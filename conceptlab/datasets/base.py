"""Containers for concept-annotated data: tensors plus named concepts, and split helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from ..info import ConceptInfo


class ConceptData(Protocol):
    """What every conceptlab dataset offers, tensors (``ConceptDataset``) or image files
    (``ImageConceptDataset``): code that needs to know which asks ``features``, never the type.

    Attributes:
        c: (N, k) concept labels in [0, 1].
        y: (N,) class indices.
        info: The concept and class names.

    Examples:
        >>> from conceptlab.datasets import xor
        >>> xor(size=100).test.features.shape  # tensors: features are x; image files: None
        torch.Size([20, 2])
    """

    c: Tensor
    y: Tensor
    info: ConceptInfo

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Any, Tensor, Tensor]:
        """Sample ``index`` as (input, c, y)."""
        ...

    @property
    def inputs(self) -> Any:
        """What ``predict`` takes: a tensor, or the dataset itself read in order."""
        ...

    @property
    def features(self) -> Tensor | None:
        """The inputs as one (N, ...) tensor, or None when they are files read on demand."""
        ...

    def with_concepts(self, c: Tensor, info: ConceptInfo) -> ConceptData:
        """The same samples with other concept labels ``c`` (N, k') named by ``info``."""
        ...

    def subset(self, index: Tensor | Sequence[int]) -> ConceptData:
        """The samples at ``index``, in that order."""
        ...


def check_one_hot(c: Tensor, info: ConceptInfo) -> None:
    """Refuse a categorical concept whose known row is not one-hot (exactly one value holds)."""
    for group, members in zip(info.categorical, info.categorical_indices()):
        values = c[:, list(members)]
        known = ~torch.isnan(values).any(1)
        bad = torch.nonzero(known & ~(((values == 0) | (values == 1)).all(1) & (values.sum(1) == 1))).flatten()
        if bad.numel():
            raise ValueError(f"categorical concept {group!r}: row {int(bad[0])} is not one-hot ({bad.numel()} row(s) in all); "
                             "exactly one value holds per sample (NaN for all its members where it is unknown)")


def check_labels(c: Tensor, y: Tensor, info: ConceptInfo) -> tuple[Tensor, Tensor]:
    """Concept labels (float) and task labels (long class indices, or float labels / targets)
    checked against ``info``'s concept types and task; the message says what is wrong and where.

    Args:
        c: (N, k) concept labels: 0 / 1 for binary and categorical members (one-hot per categorical
            concept), any finite value for a continuous concept, NaN where missing.
        y: (N,) class indices (multiclass); (N, T) 0 / 1 labels (multilabel) or real targets
            (regression), NaN where unknown.
        info: The concept and task names and kinds.

    Raises:
        ValueError: A shape, a value or a type that does not fit ``info``.
    """
    n = c.shape[0]
    if c.shape[1] != info.n_concepts:
        raise ValueError(f"c has {c.shape[1]} concepts but info names {info.n_concepts}; pass one concept name per column of c")
    c = c.float()
    if torch.isinf(c).any():
        raise ValueError("c contains infinite values; concept labels are finite (NaN marks a missing label)")
    continuous = list(info.continuous_indices())
    labels = c.clone()
    labels[:, continuous] = 0.5
    known = labels[~torch.isnan(labels)]
    if (known < 0).any() or (known > 1).any():
        raise ValueError("c must hold concept labels in [0, 1] (NaN marks a missing label); only a concept named in "
                         "ConceptInfo.continuous takes other values")
    check_one_hot(c, info)
    if info.task == "multiclass":
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"y must have shape (N,) with N = {n}; got {tuple(y.shape)} (several labels per sample: "
                             "ConceptInfo(task='multilabel'); real targets: task='regression')")
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise ValueError("y must hold integer class indices, not scores (real targets: ConceptInfo(task='regression'))")
        y = y.long()
        if n and (y.min() < 0 or y.max() >= info.n_classes):
            raise ValueError(f"y must hold class indices in [0, {info.n_classes - 1}] (one per task name); "
                             f"got range [{int(y.min())}, {int(y.max())}]")
        return c, y
    y = y.float().reshape(n, -1) if y.ndim == 1 and info.n_classes == 1 else y.float()
    if y.ndim != 2 or y.shape != (n, info.n_classes):
        raise ValueError(f"a {info.task} task's y must have shape (N, {info.n_classes}) = one column per task name; "
                         f"got {tuple(y.shape)}")
    if torch.isinf(y).any():
        raise ValueError("y contains infinite values (NaN marks an unknown label or target)")
    known = y[~torch.isnan(y)]
    if info.task == "multilabel" and not ((known == 0) | (known == 1)).all():
        raise ValueError("a multilabel task's y must hold 0 / 1 labels (NaN where unknown)")
    return c, y


@dataclass(frozen=True)
class ConceptDataset:
    """Inputs ``x`` (N, ...), concepts ``c`` (N, k), task labels ``y``, checked by ``check_labels``.

    A concept label that is not known is NaN: it adds nothing to the concept loss (and no
    gradient), metrics skip it, and an intervention on it is refused.

    Attributes:
        x: (N, ...) inputs (floats, finite).
        c: (N, k) concept labels in [0, 1] (any value for a continuous concept); NaN where a label is missing.
        y: (N,) class indices; (N, T) labels or targets for a multilabel or regression task.
        info: The concept and class names.
    """

    x: Tensor
    c: Tensor
    y: Tensor
    info: ConceptInfo

    def __post_init__(self) -> None:
        x, c, y = (torch.as_tensor(t) for t in (self.x, self.c, self.y))
        n = x.shape[0] if x.ndim else 0
        if c.ndim != 2 or c.shape[0] != n:
            raise ValueError(f"c must have shape (N, n_concepts) with N = len(x) = {n}; got {tuple(c.shape)}")
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"y must have one row per sample, N = len(x) = {n}; got {tuple(y.shape)}")
        x = x.float()
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum()) if x.ndim else 1
            raise ValueError(f"x contains NaN or infinite values in {bad} row(s); impute or drop those rows before building the dataset")
        c, y = check_labels(c, y, self.info)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.x[index], self.c[index], self.y[index]

    @property
    def inputs(self) -> Tensor:
        """What ``predict`` takes for this dataset: the input tensor."""
        return self.x

    @property
    def features(self) -> Tensor:
        """The input tensor (every row in memory)."""
        return self.x

    def with_concepts(self, c: Tensor, info: ConceptInfo) -> ConceptDataset:
        """The same samples with other concept labels ``c`` (N, k') named by ``info``."""
        return ConceptDataset(self.x, c, self.y, info)

    def subset(self, index: Tensor | Sequence[int]) -> ConceptDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        return ConceptDataset(self.x[index], self.c[index], self.y[index], self.info)

    def to(self, device: torch.device | str) -> ConceptDataset:
        return ConceptDataset(self.x.to(device), self.c.to(device), self.y.to(device), self.info)


@dataclass(frozen=True)
class ConceptSplits:
    """Train / validation / test datasets sharing one ``ConceptInfo``.

    The parts are ``ConceptDataset``s (tensors) or ``ImageConceptDataset``s (image files);
    ``concept_source`` says how the concept labels were made, where that is not obvious.

    Attributes:
        train: The training split.
        val: The validation split (early stopping, model selection).
        test: The test split.
        concept_source: How the concept labels were made, where that is not obvious.
    """

    train: ConceptData
    val: ConceptData
    test: ConceptData
    concept_source: str = ""

    @property
    def info(self) -> ConceptInfo:
        return self.train.info


def split_dataset(
    data: ConceptDataset, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> ConceptSplits:
    """Shuffle with ``seed`` and cut into train / val / test by ``fractions``.

    Args:
        data: The whole dataset.
        fractions: Three non-negative fractions summing to 1: train, validation, test.
        seed: Draws the shuffle.

    Raises:
        ValueError: Fractions that are not three non-negative numbers summing to 1.

    Returns:
        The splits, in the order of ``fractions``.

    Examples:
        >>> from conceptlab.datasets import ConceptDataset, ConceptInfo, split_dataset
        >>> data = ConceptDataset(torch.randn(10, 3), torch.ones(10, 1), torch.zeros(10, dtype=torch.long), ConceptInfo(("c",), ("a", "b")))
        >>> [len(part) for part in (split_dataset(data).train, split_dataset(data).val, split_dataset(data).test)]
        [7, 1, 2]
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1; got {fractions}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    n_train = int(round(fractions[0] * len(data)))
    n_val = int(round(fractions[1] * len(data)))
    return ConceptSplits(
        data.subset(order[:n_train]),
        data.subset(order[n_train : n_train + n_val]),
        data.subset(order[n_train + n_val :]),
    )
