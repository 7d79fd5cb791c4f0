"""Image datasets with concepts: image files read on demand, with concept and class labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from ..info import ConceptInfo
from .base import check_labels


class ImageConceptDataset(Dataset):
    """Image files with concept and class labels; items are (image tensor, c, y).

    Args:
        paths: The image files, one per sample.
        c: (N, k) concept labels.
        y: (N,) class indices.
        info: The concept and class names.
        transform: Applied to each PIL image as it is read (e.g. ``datasets.transforms.image_transform``).

    Examples:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> from conceptlab.datasets import ConceptInfo, ImageConceptDataset
        >>> from conceptlab.datasets.transforms import image_transform
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "bird.png"
        >>> Image.new("RGB", (40, 30), "red").save(path)
        >>> data = ImageConceptDataset([path], torch.ones(1, 1), torch.zeros(1, dtype=torch.long),
        ...                            ConceptInfo(("red",), ("a", "b")), transform=image_transform(32))
        >>> data[0][0].shape
        torch.Size([3, 32, 32])
    """

    def __init__(self, paths: Sequence[Path], c: Tensor, y: Tensor, info: ConceptInfo, *, transform: Callable | None = None):
        if not (len(paths) == c.shape[0] == y.shape[0]):
            raise ValueError(f"got {len(paths)} paths, {c.shape[0]} concept rows and {y.shape[0]} labels; they must match")
        self.c, self.y = check_labels(c, y, info)
        self.paths = [Path(p) for p in paths]
        self.info = info
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:  # truncated, not an image, unreadable
            raise ValueError(f"{path} is not a readable image ({type(err).__name__}: {str(err)[:120]}); "
                             "replace or remove it") from None
        x = self.transform(image) if self.transform is not None else image
        return x, self.c[index], self.y[index]

    @property
    def inputs(self) -> ImageConceptDataset:
        """What ``predict`` takes for this dataset: the dataset itself, read in order."""
        return self

    @property
    def features(self) -> None:
        """None: images are files read on demand, not one tensor."""
        return None

    def subset(self, index: Tensor | Sequence[int]) -> ImageConceptDataset:
        """The samples at ``index``, in that order."""
        rows = [int(i) for i in index]
        return ImageConceptDataset([self.paths[i] for i in rows], self.c[rows], self.y[rows], self.info, transform=self.transform)

    def with_concepts(self, c: Tensor, info: ConceptInfo) -> ImageConceptDataset:
        """The same images with other concept labels ``c`` (N, k') named by ``info``."""
        return ImageConceptDataset(self.paths, c, self.y, info, transform=self.transform)

    def with_transform(self, transform) -> ImageConceptDataset:
        return ImageConceptDataset(self.paths, self.c, self.y, self.info, transform=transform)
