"""A tiny CUB-200-2011 archive in the official layout, built in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

N_ATTRIBUTES = 312
CLASSES = ["001.Alpha_Bird", "002.Beta_Bird", "003.Gamma_Bird", "004.Delta_Bird"]  # Delta has no images
IMAGES_PER_CLASS = 6  # 4 train, 2 test


def attribute_name(i: int) -> str:
    return f"has_part{i % 28}::value_{i}"


def build_cub(root: Path, image_labels: bool = True, image_size: int = 40, images_per_class: int = IMAGES_PER_CLASS,
              train_per_class: int = 4) -> Path:
    """Write the archive under ``root``; returns ``root`` (which holds CUB_200_2011/)."""
    cub = root / "CUB_200_2011"
    (cub / "attributes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, labels, split = [], [], []
    for class_index, name in enumerate(CLASSES[:3]):
        folder = cub / "images" / name
        folder.mkdir(parents=True)
        for j in range(images_per_class):
            pixels = rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
            pixels[..., class_index] = 255  # a class colour, so features separate classes
            path = folder / f"{name.split('.')[1]}_{j:04d}.jpg"
            Image.fromarray(pixels).save(path)
            images.append(f"{name}/{path.name}")
            labels.append(class_index + 1)
            split.append(1 if j < train_per_class else 0)
    write = lambda path, rows: path.write_text("".join(f"{r}\n" for r in rows))  # noqa: E731
    write(cub / "images.txt", [f"{i + 1} {p}" for i, p in enumerate(images)])
    write(cub / "image_class_labels.txt", [f"{i + 1} {c}" for i, c in enumerate(labels)])
    write(cub / "train_test_split.txt", [f"{i + 1} {s}" for i, s in enumerate(split)])
    write(cub / "classes.txt", [f"{i + 1} {n}" for i, n in enumerate(CLASSES)])
    write(root / "attributes.txt", [f"{i + 1} {attribute_name(i)}" for i in range(N_ATTRIBUTES)])
    write(cub / "attributes" / "certainties.txt", ["1 not visible", "2 guessing", "3 probably", "4 definitely"])
    # class-level percentages: class k has attribute a at 80% when (a + k) % 3 == 0, else 10%
    percent = np.array([[80.0 if (a + k) % 3 == 0 else 10.0 for a in range(N_ATTRIBUTES)] for k in range(len(CLASSES))])
    write(cub / "attributes" / "class_attribute_labels_continuous.txt", [" ".join(f"{v:g}" for v in row) for row in percent])
    if image_labels:
        rows = []
        for i, c in enumerate(labels):
            for a in range(N_ATTRIBUTES):
                present = int((a + c - 1) % 3 == 0)
                rows.append(f"{i + 1} {a + 1} {present} 3 1.5")
        write(cub / "attributes" / "image_attribute_labels.txt", rows)
    return root
