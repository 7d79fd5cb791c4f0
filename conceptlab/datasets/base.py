"""Containers for concept-annotated data: tensors plus named concepts, split helpers, batching."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import Tensor


@dataclass(frozen=True)
class ConceptInfo:
    """Names that give the tensors meaning.

    ``concept_groups`` maps a group name to the indices of its concepts; by default every concept
    is its own group. ``task_names`` holds one name per class (two for a binary task).
    """

    concept_names: tuple[str, ...]
    task_names: tuple[str, ...]
    concept_groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "concept_names", tuple(str(n) for n in self.concept_names))
        object.__setattr__(self, "task_names", tuple(str(n) for n in self.task_names))
        for what, names in (("concept_names", self.concept_names), ("task_names", self.task_names)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} must be unique; {repeated} appear more than once")
        if len(self.task_names) < 2:
            raise ValueError(
                f"task_names needs one name per class (at least 2, e.g. ('no', 'yes') for a binary "
                f"task); got {self.task_names!r}"
            )
        groups = self.concept_groups or {name: (i,) for i, name in enumerate(self.concept_names)}
        groups = {str(name): tuple(int(i) for i in idx) for name, idx in groups.items()}
        k = len(self.concept_names)
        covered = sorted(i for idx in groups.values() for i in idx)
        if covered != list(range(k)):
            raise ValueError(
                f"concept_groups must cover each of the {k} concepts exactly once; "
                f"they cover indices {covered}"
            )
        object.__setattr__(self, "concept_groups", groups)

    @property
    def n_concepts(self) -> int:
        return len(self.concept_names)

    @property
    def n_classes(self) -> int:
        return len(self.task_names)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.concept_groups)

    def group_matrix(self) -> Tensor:
        """Boolean (n_groups, n_concepts) membership matrix."""
        matrix = torch.zeros(len(self.concept_groups), self.n_concepts, dtype=torch.bool)
        for g, idx in enumerate(self.concept_groups.values()):
            matrix[g, list(idx)] = True
        return matrix

    def to_dict(self) -> dict:
        return {
            "concept_names": list(self.concept_names),
            "task_names": list(self.task_names),
            "concept_groups": {k: list(v) for k, v in self.concept_groups.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ConceptInfo:
        return cls(data["concept_names"], data["task_names"], data.get("concept_groups") or {})


@dataclass(frozen=True)
class ConceptDataset:
    """Inputs ``x`` (N, ...), concepts ``c`` (N, k) in [0, 1], class labels ``y`` (N,)."""

    x: Tensor
    c: Tensor
    y: Tensor
    info: ConceptInfo

    def __post_init__(self) -> None:
        x, c, y = (torch.as_tensor(t) for t in (self.x, self.c, self.y))
        n = x.shape[0] if x.ndim else 0
        if c.ndim != 2 or c.shape[0] != n:
            raise ValueError(f"c must have shape (N, n_concepts) with N = len(x) = {n}; got {tuple(c.shape)}")
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"y must have shape (N,) with N = len(x) = {n}; got {tuple(y.shape)}")
        if c.shape[1] != self.info.n_concepts:
            raise ValueError(
                f"c has {c.shape[1]} concepts but info names {self.info.n_concepts}; "
                "pass one concept name per column of c"
            )
        x = x.float()
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum()) if x.ndim else 1
            raise ValueError(f"x contains NaN or infinite values in {bad} row(s); impute or drop those rows before building the dataset")
        c = c.float()
        if torch.isnan(c).any() or (c < 0).any() or (c > 1).any():
            raise ValueError("c must hold concept labels in [0, 1] without NaN")
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ValueError("y must hold integer class indices, not scores")
        y = y.long()
        if n and (y.min() < 0 or y.max() >= self.info.n_classes):
            raise ValueError(
                f"y must hold class indices in [0, {self.info.n_classes - 1}] "
                f"(one per task name); got range [{int(y.min())}, {int(y.max())}]"
            )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def inputs(self) -> Tensor:
        """What ``predict`` takes for this dataset: the input tensor."""
        return self.x

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
    """

    train: ConceptDataset
    val: ConceptDataset
    test: ConceptDataset
    concept_source: str = ""

    @property
    def info(self) -> ConceptInfo:
        return self.train.info


def split_dataset(
    data: ConceptDataset, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> ConceptSplits:
    """Shuffle with ``seed`` and cut into train / val / test by ``fractions``."""
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


class TensorBatches:
    """Mini-batches sliced from tensors that already sit on the target device.

    No per-sample Python: each batch is one index into the whole tensors. Shuffling draws a fresh
    permutation every epoch from a private generator, so runs are reproducible without touching
    global random state.
    """

    def __init__(self, data: ConceptDataset, batch_size: int, shuffle: bool = False, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        n = len(self.data)
        if self.shuffle:
            order = torch.randperm(n, generator=self._generator).to(self.data.x.device)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield self.data.x[idx], self.data.c[idx], self.data.y[idx]
        else:
            for start in range(0, n, self.batch_size):
                end = start + self.batch_size
                yield self.data.x[start:end], self.data.c[start:end], self.data.y[start:end]


class ConceptDataModule(L.LightningDataModule):
    """Serves ``ConceptSplits`` as tensor batches on the trainer's device (moved once, in ``setup``)."""

    def __init__(self, splits: ConceptSplits, batch_size: int = 256, eval_batch_size: int = 4096, seed: int = 0):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            device = self.trainer.strategy.root_device
            s = self.splits
            self.splits = ConceptSplits(s.train.to(device), s.val.to(device), s.test.to(device), s.concept_source)

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(self.splits.train, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(self.splits.val, self.eval_batch_size)

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(self.splits.test, self.eval_batch_size)
