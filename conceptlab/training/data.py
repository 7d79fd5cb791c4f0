"""Lightning DataModules: tensor datasets as device-resident index batches, image datasets through DataLoaders."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..datasets.base import ConceptDataset, ConceptSplits
from ..datasets.images import ImageConceptDataset


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


class ImageDataModule(L.LightningDataModule):
    """DataLoaders over train / val / test ``ImageConceptDataset``s (shuffled training batches)."""

    def __init__(self, splits, batch_size: int = 64, num_workers: int = 2, seed: int = 0):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    def _loader(self, data: ImageConceptDataset, shuffle: bool) -> DataLoader:
        import torch

        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(data, self.batch_size, shuffle=shuffle, generator=generator, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, shuffle=False)
