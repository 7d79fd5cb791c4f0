"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (its IDX files), with class-level concepts.

The ten garment classes get ten binary concepts written for this benchmark (not taken from a
paper): what a garment is (a top, legwear, a one-piece, footwear) and what distinguishes the
classes within those (long sleeves, a front opening, outerwear, open footwear, covering the
ankle, a handle). Every class has its own combination, so the concepts determine the class: the
concepts-only ceiling is 100 %. Like CUB's class-level attributes, a sample's concepts are its
class's, so concept labels carry no information beyond the class.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from ..info import ConceptInfo
from ..settings import Float, PositiveInt, SettingsError, Str, settings
from .base import ConceptDataset, ConceptSplits
from .supervision import Supervision

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CLASS_CONCEPTS = {  # concept -> the classes that have it
    "top": ("T-shirt/top", "Pullover", "Coat", "Shirt"),
    "long sleeves": ("Pullover", "Coat"),
    "front opening": ("Coat", "Shirt"),
    "outerwear": ("Coat",),
    "legwear": ("Trouser",),
    "one-piece": ("Dress",),
    "footwear": ("Sandal", "Sneaker", "Ankle boot"),
    "open footwear": ("Sandal",),
    "covers ankle": ("Ankle boot",),
    "has handle": ("Bag",),
}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array of unsigned bytes, shaped as its header says.

    Args:
        path: An ``*-idx1-ubyte`` (labels) or ``*-idx3-ubyte`` (images) file, optionally ``.gz``.

    Returns:
        (N,) labels or (N, rows, columns) images.

    Raises:
        ValueError: Not an IDX file of unsigned bytes, or fewer bytes than the header announces.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path} could not be read ({type(err).__name__}: {err})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] == 0:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    dims = data[3]
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path} ends inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise ValueError(f"{path} holds {len(data) - header} bytes of data; its header announces {size} for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def class_concepts() -> tuple[ConceptInfo, np.ndarray]:
    """The concept names and the (10 classes, 10 concepts) 0/1 table of ``CLASS_CONCEPTS``."""
    names = tuple(CLASS_CONCEPTS)
    table = np.array([[cls in CLASS_CONCEPTS[n] for n in names] for cls in CLASSES], dtype=np.float32)
    return ConceptInfo(names, CLASSES), table


@settings
class FashionMNISTSettings(Supervision):
    """Fashion-MNIST from local IDX files (``apt-get install dataset-fashion-mnist``).

    Attributes:
        name: ``fashion-mnist``.
        root: The folder with the four IDX files (default: where the Debian package puts them).
        train_size: Images drawn from the official training set for training and validation.
        test_size: Images drawn from the official test set.
        val_fraction: Share of ``train_size`` held out for validation.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["fashion-mnist"]
    root: Str = DEBIAN_ROOT
    train_size: Annotated[PositiveInt, Field(le=60000)] = 10000
    test_size: Annotated[PositiveInt, Field(le=10000)] = 2000
    val_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.1

    def require_files(self) -> None:
        """Raise ``SettingsError`` saying how to install the data when the IDX files are not there
        (checked before a bench starts and when the data are read, not when a config is parsed)."""
        root = Path(self.root).expanduser()
        missing = [f for pair in FILES.values() for f in pair if not (root / f).is_file()]
        if missing:
            raise SettingsError(f"dataset.root: {root} lacks {', '.join(missing)}; install Fashion-MNIST with "
                                "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or set dataset.root to a "
                                "folder with the four IDX files")


def load_fashion_mnist(options: FashionMNISTSettings, seed: int) -> ConceptSplits:
    """Seeded subsets of the official splits, pixels scaled to [0, 1] and flattened (784 features).

    Args:
        options: The validated dataset block.
        seed: Draws the subsets and the validation split.

    Returns:
        Train / val / test splits with the class-level concepts.
    """
    options.require_files()
    root = Path(options.root).expanduser()
    info, table = class_concepts()
    rng = np.random.default_rng([seed, zlib.crc32(b"fashion-mnist")])

    def part(which: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = (read_idx(root / f) for f in FILES[which])
        if len(images) != len(labels):
            raise ValueError(f"{root}: {len(images)} {which} images but {len(labels)} labels")
        rows = rng.choice(len(labels), size=min(n, len(labels)), replace=False)
        return images[rows].reshape(len(rows), -1).astype(np.float32) / 255.0, labels[rows].astype(np.int64)

    def dataset(x: np.ndarray, y: np.ndarray) -> ConceptDataset:
        return ConceptDataset(torch.from_numpy(x), torch.from_numpy(table[y]), torch.from_numpy(y), info)

    x, y = part("train", options.train_size)
    n_val = max(1, int(round(options.val_fraction * len(y))))
    test_x, test_y = part("test", options.test_size)
    return ConceptSplits(dataset(x[n_val:], y[n_val:]), dataset(x[:n_val], y[:n_val]), dataset(test_x, test_y),
                         "class-level concepts written for this benchmark (conceptlab.datasets.fashion)")
