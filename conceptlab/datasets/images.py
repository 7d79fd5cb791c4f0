"""Image datasets with concepts, and their Lightning DataModule."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .base import ConceptInfo


class ImageConceptDataset(Dataset):
    """Image files with concept and class labels; items are (image tensor, c, y)."""

    def __init__(self, paths: Sequence[Path], c: Tensor, y: Tensor, info: ConceptInfo, transform=None):
        if not (len(paths) == c.shape[0] == y.shape[0]):
            raise ValueError(f"got {len(paths)} paths, {c.shape[0]} concept rows and {y.shape[0]} labels; they must match")
        if c.shape[1] != info.n_concepts:
            raise ValueError(f"c has {c.shape[1]} concepts but info names {info.n_concepts}")
        self.paths = [Path(p) for p in paths]
        self.c = c.float()
        self.y = y.long()
        self.info = info
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB")
            x = self.transform(image) if self.transform is not None else image
        return x, self.c[index], self.y[index]

    @property
    def inputs(self) -> ImageConceptDataset:
        """What ``predict`` takes for this dataset: the dataset itself, read in order."""
        return self

    def with_transform(self, transform) -> ImageConceptDataset:
        return ImageConceptDataset(self.paths, self.c, self.y, self.info, transform)


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
