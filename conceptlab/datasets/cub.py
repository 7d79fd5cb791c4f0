"""CUB-200-2011 with the 112 class-level concepts of Koh et al. (ICML 2020).

Reads the official archive layout (``CUB_200_2011/images.txt`` and friends, ``attributes.txt``
in the archive's root or inside ``CUB_200_2011/``) or Koh's processed pickles
(``class_attr_data_10/{train,val,test}.pkl``). Concepts, as Koh et al. built them:

- with per-image labels (``attributes/image_attribute_labels.txt``): per (class, attribute) a
  majority vote over the *training* images, where "not visible" negatives do not vote and ties
  count as present; attributes present in at least ``min_classes`` classes are kept (112 on the
  full dataset); every image gets its class's vector;
- without them (as in the cub100 subset): Koh's 112 attributes thresholded on the official
  class-level percentages (``class_attribute_labels_continuous.txt``), an approximation.

Classes without images are dropped and the labels renumbered in class-id order.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import torch

from ..info import ConceptInfo
from .base import ConceptSplits
from .images import ImageConceptDataset

# 0-based indices of the 112 attributes Koh et al. kept (their processed CUB data)
KOH_ATTRIBUTES: tuple[int, ...] = (
    1, 4, 6, 7, 10, 14, 15, 20, 21, 23, 25, 29, 30, 35, 36, 38, 40, 44, 45, 50, 51, 53, 54, 56, 57, 59,
    63, 64, 69, 70, 72, 75, 80, 84, 90, 91, 93, 99, 101, 106, 110, 111, 116, 117, 119, 125, 126, 131,
    132, 134, 145, 149, 151, 152, 153, 157, 158, 163, 164, 168, 172, 178, 179, 181, 183, 187, 188, 193,
    194, 196, 198, 202, 203, 208, 209, 211, 212, 213, 218, 220, 221, 225, 235, 236, 238, 239, 240, 242,
    243, 244, 249, 253, 254, 259, 260, 262, 268, 274, 277, 283, 289, 292, 293, 294, 298, 299, 304, 305,
    308, 309, 310, 311,
)
NOT_VISIBLE = 1  # certainty id of "not visible" in attributes/certainties.txt
CLASS_LEVEL_THRESHOLD = 45.0  # % of a class's images annotated with an attribute (fallback rule)
MIN_CLASSES = 10  # keep an attribute present in at least this many classes (Koh et al.'s rule)
VAL_FRACTION = 0.2  # share of the official training split held out for validation


@dataclass(frozen=True)
class CubArchive:
    """The official index files of CUB-200-2011, one row per image (ids in file order)."""

    root: Path  # the CUB_200_2011 directory
    image_paths: list[str]  # relative to root/images
    class_ids: np.ndarray  # official 1-based class id per image
    is_train: np.ndarray  # bool per image
    class_names: dict[int, str]  # official class id -> name
    attribute_names: list[str]  # 312 names, attribute id - 1 -> name


def find_cub_root(path: str | Path) -> Path:
    """The CUB_200_2011 directory, given it or the directory that contains it."""
    path = Path(path)
    for candidate in (path, path / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    raise FileNotFoundError(
        f"no CUB-200-2011 archive at {path}: expected {path}/CUB_200_2011/images.txt (the official layout: "
        "images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/)"
    )


N_ATTRIBUTES = 312  # lines of the official attributes.txt


def _read_table(path: Path, columns: int, what: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of whitespace-separated rows with at least ``columns`` fields;
    errors name the file, the line and the expected format."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: expected {what}")
    rows = []
    with open(path, errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=columns - 1) if columns <= 2 else line.split()
            if len(fields) < columns:
                raise ValueError(f"{path}, line {number}: expected {what}; got {line.strip()!r}")
            rows.append((number, fields))
    if not rows:
        raise ValueError(f"{path} is empty: expected {what}")
    return rows


def _id_table(path: Path, what: str) -> dict[int, list[str]]:
    """A two-column index file keyed by its integer first column; a non-integer or repeated id
    names the file and line."""
    table: dict[int, list[str]] = {}
    first_line: dict[int, int] = {}
    for number, fields in _read_table(path, 2, what):
        try:
            key = int(fields[0])
        except ValueError:
            raise ValueError(f"{path}, line {number}: the id must be a whole number; got {fields[0]!r}") from None
        if key in table:
            raise ValueError(f"{path}, line {number}: id {key} appears again (first on line {first_line[key]}); "
                             "each id must be listed once")
        table[key], first_line[key] = fields[1:], number
    return table


def _integer_column(table: dict[int, list[str]], path: Path, what: str, allowed: set[int] | None = None) -> dict[int, int]:
    values = {}
    for key, fields in table.items():
        text = fields[0].strip()
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{path}: image {key}: {what} must be a whole number; got {text!r}") from None
        if allowed is not None and value not in allowed:
            raise ValueError(f"{path}: image {key}: {what} must be one of {sorted(allowed)}; got {value}")
        values[key] = value
    return values


def read_archive(path: str | Path) -> CubArchive:
    """Read the index files of the official archive; every problem names its file (and line)."""
    root = find_cub_root(path)
    images = _id_table(root / "images.txt", "'<image id> <relative path>' per line")
    labels_path, split_path = root / "image_class_labels.txt", root / "train_test_split.txt"
    labels = _integer_column(_id_table(labels_path, "'<image id> <class id>' per line"), labels_path, "the class id")
    split = _integer_column(_id_table(split_path, "'<image id> <1 train | 0 test>' per line"), split_path,
                            "the split flag (1 train, 0 test)", {0, 1})
    classes = _id_table(root / "classes.txt", "'<class id> <name>' per line")
    attribute_file = next((p for p in (root / "attributes.txt", root.parent / "attributes.txt",
                                       root / "attributes" / "attributes.txt") if p.is_file()), root.parent / "attributes.txt")
    attributes = _id_table(attribute_file, f"'<attribute id> <group::value>' per line ({N_ATTRIBUTES} lines)")
    if sorted(attributes) != list(range(1, N_ATTRIBUTES + 1)):
        missing = sorted(set(range(1, N_ATTRIBUTES + 1)) - set(attributes))
        where = f"attribute ids {missing[:5]} are missing" if missing else "ids beyond 312 are listed"
        raise ValueError(f"{attribute_file}: expected the {N_ATTRIBUTES} attributes of the official archive, ids 1..{N_ATTRIBUTES}; "
                         f"{where} (the file has {len(attributes)} lines: is it truncated?)")
    ids = sorted(images)
    missing = [i for i in ids if i not in labels or i not in split]
    if missing:
        raise ValueError(f"image ids {missing[:5]} of images.txt have no class label ({labels_path.name}) or no "
                         f"train/test split entry ({split_path.name})")
    class_ids = np.array([labels[i] for i in ids])
    is_train = np.array([split[i] == 1 for i in ids])
    for wanted, name in ((True, "training"), (False, "test")):
        if not (is_train == wanted).any():
            raise ValueError(f"{split_path}: no image is marked for {name} ({int(wanted)}); the official split has both")
    unknown = sorted(set(class_ids.tolist()) - set(classes))
    if unknown:
        raise ValueError(f"{labels_path} names class ids {unknown[:5]} that classes.txt does not list")
    image_paths = [images[i][0].strip() for i in ids]
    for i, relative in zip(ids, image_paths):
        parts = PurePosixPath(relative.replace("\\", "/")).parts
        if not parts or PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute() or ".." in parts:
            raise ValueError(f"{root / 'images.txt'}: image id {i} has path {relative!r}; paths must be relative to "
                             "images/ and stay inside it (no absolute paths, no '..')")
    return CubArchive(
        root=root,
        image_paths=image_paths,
        class_ids=class_ids,
        is_train=is_train,
        class_names={k: v[0].strip() for k, v in classes.items()},
        attribute_names=[attributes[k][0].strip() for k in sorted(attributes)],
    )


def read_image_attributes(root: Path, n_images: int, n_attributes: int) -> tuple[np.ndarray, np.ndarray]:
    """(is_present, certainty) arrays of shape (n_images, n_attributes) from image_attribute_labels.txt."""
    path = root / "attributes" / "image_attribute_labels.txt"
    what = "'<image id> <attribute id> <is_present 0|1> <certainty 1-4> [time]' per line"
    rows = _read_table(path, 4, what)
    table = np.zeros((len(rows), 4), dtype=np.int64)
    for k, (number, fields) in enumerate(rows):
        try:
            table[k] = [int(f) for f in fields[:4]]
        except ValueError:
            raise ValueError(f"{path}, line {number}: expected {what}; got {' '.join(fields)!r}") from None
    if table[:, 0].max() > n_images or table[:, 1].max() > n_attributes or table[:, 0].min() < 1:
        raise ValueError(f"{path}: image or attribute ids out of range (images 1..{n_images}, attributes 1..{n_attributes})")
    present = np.zeros((n_images, n_attributes), dtype=np.int8)
    certainty = np.zeros((n_images, n_attributes), dtype=np.int8)
    present[table[:, 0] - 1, table[:, 1] - 1] = table[:, 2]
    certainty[table[:, 0] - 1, table[:, 1] - 1] = table[:, 3]
    return present, certainty


def majority_class_concepts(
    present: np.ndarray, certainty: np.ndarray, classes: np.ndarray, n_classes: int, min_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Koh's rule on training images: (class x attribute) majority vote and the kept attributes.

    A "not visible" negative casts no vote; ties (including no votes) count as present. Returns the
    (n_classes, n_attributes) 0/1 matrix and the indices of attributes present in at least
    ``min_classes`` classes.
    """
    votes_for = np.zeros((n_classes, present.shape[1]))
    votes_against = np.zeros((n_classes, present.shape[1]))
    counted_negative = (present == 0) & (certainty != NOT_VISIBLE)
    np.add.at(votes_for, classes, present == 1)
    np.add.at(votes_against, classes, counted_negative)
    matrix = (votes_for >= votes_against).astype(np.int64)
    kept = np.flatnonzero(matrix.sum(0) >= min_classes)
    return matrix, kept


def continuous_class_concepts(root: Path, threshold: float = CLASS_LEVEL_THRESHOLD, n_classes: int = 200) -> np.ndarray:
    """(200, 312) 0/1 matrix: attribute present in at least ``threshold`` % of a class's images;
    the file must hold a row of percentages in [0, 100] for each of the ``n_classes`` class ids."""
    path = root / "attributes" / "class_attribute_labels_continuous.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"missing {path}: without attributes/image_attribute_labels.txt, CUB concepts come from the "
            "official class-level percentages (200 lines of 312 numbers)"
        )
    try:
        matrix = np.loadtxt(path, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: expected 312 space-separated percentages per line; {err}") from None
    if matrix.shape[1] != 312:
        raise ValueError(f"{path}: expected 312 percentages per line; got {matrix.shape[1]}")
    if matrix.shape[0] < n_classes:
        raise ValueError(f"{path}: expected a line per class id up to {n_classes}; got {matrix.shape[0]} line(s)")
    bad = np.argwhere(~np.isfinite(matrix) | (matrix < 0) | (matrix > 100))
    if len(bad):
        line, column = bad[0] + 1
        raise ValueError(f"{path}, line {line}: value {column} is {matrix[line - 1, column - 1]}, not a percentage in [0, 100]")
    return (matrix >= threshold).astype(np.int64)


def concept_groups(names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Group concepts by the attribute prefix before '::' (28 groups among Koh's 112)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.split("::")[0], []).append(i)
    return {k: tuple(v) for k, v in groups.items()}


def load_cub(
    path: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    concepts: str = "auto",
    min_classes: int = MIN_CLASSES,
    threshold: float = CLASS_LEVEL_THRESHOLD,
) -> ConceptSplits:
    """CUB splits with class-level concepts; ``concepts`` is 'auto', 'image-labels' or 'class-level'.

    The validation set is a ``seed``-determined ``val_fraction`` of the official training split.

    Args:
        path: The directory holding ``CUB_200_2011/`` (or that folder itself).
        seed: Draws the validation split.
        val_fraction: Share of the official training split held out for validation.
        concepts: ``auto``, ``image-labels`` or ``class-level``.
        min_classes: Class-level concepts: keep those present in at least this many classes.
        threshold: Class-level concepts: the percentage of a class's images above which it has the concept.

    Returns:
        Train / val / test splits of ``ImageConceptDataset``s.

    Raises:
        FileNotFoundError: ``path`` is not a CUB-200-2011 folder (the message says which file is missing).

    Examples:
        >>> splits = load_cub("data/CUB_200_2011", concepts="class-level")  # doctest: +SKIP
    """
    if concepts not in ("auto", "image-labels", "class-level"):
        raise ValueError(f"concepts must be 'auto', 'image-labels' or 'class-level'; got {concepts!r}")
    archive = read_archive(path)
    kept_classes = sorted(set(archive.class_ids.tolist()))
    remap = {cid: i for i, cid in enumerate(kept_classes)}
    y = np.array([remap[c] for c in archive.class_ids])
    labels_file = archive.root / "attributes" / "image_attribute_labels.txt"
    use_images = concepts == "image-labels" or (concepts == "auto" and labels_file.is_file())
    if use_images:
        present, certainty = read_image_attributes(archive.root, len(y), len(archive.attribute_names))
        train = archive.is_train
        matrix, kept = majority_class_concepts(present[train], certainty[train], y[train], len(kept_classes), min_classes)
        if len(kept) == 0:
            raise ValueError(f"no attribute is present in at least {min_classes} classes; lower min_classes")
        source = f"majority vote over per-image labels of the training split ({len(kept)} attributes in >= {min_classes} classes)"
    else:
        full = continuous_class_concepts(archive.root, threshold, max(kept_classes))
        matrix = full[[c - 1 for c in kept_classes]]
        kept = np.array(KOH_ATTRIBUTES)
        source = f"class-level fallback: Koh's 112 attributes at >= {threshold:g}% of a class's images (approximate)"
    names = [archive.attribute_names[i] for i in kept]
    info = ConceptInfo(names, [archive.class_names[c] for c in kept_classes], concept_groups(names))
    c = torch.as_tensor(matrix[:, kept][y], dtype=torch.float32)
    paths = [archive.root / "images" / p for p in archive.image_paths]
    return _split(paths, c, torch.as_tensor(y), info, archive.is_train, seed, val_fraction, source)


def _split(paths, c, y, info, is_train, seed, val_fraction, source) -> ConceptSplits:
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1); got {val_fraction}")
    train_idx = np.flatnonzero(is_train)
    test_idx = np.flatnonzero(~is_train)
    order = np.random.default_rng(seed).permutation(train_idx)
    n_val = int(round(val_fraction * len(order)))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])

    def part(index: np.ndarray) -> ImageConceptDataset:
        return ImageConceptDataset([paths[i] for i in index], c[index], y[index], info)

    return ConceptSplits(part(train_idx), part(val_idx), part(test_idx), source)


def load_koh_pickles(pickle_dir: str | Path, cub_path: str | Path) -> ConceptSplits:
    """Koh et al.'s processed splits (``train.pkl``, ``val.pkl``, ``test.pkl``) with images from ``cub_path``.

    Each pickle is a list of dicts with 'img_path', 'class_label' and 'attribute_label' (112 values);
    image paths are re-rooted at ``cub_path``'s images directory.

    Args:
        pickle_dir: The folder holding ``train.pkl``, ``val.pkl`` and ``test.pkl``.
        cub_path: The CUB archive the images are read from.

    Returns:
        Train / val / test splits with Koh et al.'s per-image concept labels.

    Raises:
        FileNotFoundError: A pickle or an image is missing.

    Examples:
        >>> splits = load_koh_pickles("CUB_processed/class_attr_data_10", "data/CUB_200_2011")  # doctest: +SKIP
    """
    pickle_dir = Path(pickle_dir)
    archive = read_archive(cub_path)
    names = [archive.attribute_names[i] for i in KOH_ATTRIBUTES]
    splits = {}
    for part in ("train", "val", "test"):
        file = pickle_dir / f"{part}.pkl"
        if not file.is_file():
            raise FileNotFoundError(f"missing {file}: expected Koh's class_attr_data_10/{{train,val,test}}.pkl")
        with open(file, "rb") as handle:
            rows = pickle.load(handle)
        try:
            paths = [archive.root / "images" / str(r["img_path"]).replace("\\", "/").split("images/")[-1] for r in rows]
            c = torch.tensor([r["attribute_label"] for r in rows], dtype=torch.float32)
            y = torch.tensor([int(r["class_label"]) for r in rows])
        except (KeyError, TypeError) as err:
            raise ValueError(f"{file}: expected a list of dicts with img_path, class_label, attribute_label; {err!r}") from None
        if c.shape[1] != len(names):
            raise ValueError(f"{file}: attribute_label has {c.shape[1]} values; Koh's pickles have {len(names)}")
        splits[part] = (paths, c, y)
    n_classes = int(max(int(s[2].max()) for s in splits.values())) + 1
    class_names = [archive.class_names[k] for k in sorted(archive.class_names)][:n_classes]
    info = ConceptInfo(names, class_names, concept_groups(names))
    train, val, test = (ImageConceptDataset(*splits[p], info) for p in ("train", "val", "test"))
    return ConceptSplits(train, val, test, "Koh et al.'s processed pickles (class_attr_data_10)")
