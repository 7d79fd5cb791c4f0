"""A user's own data as a benchmark dataset: a tensor file (``tensors``) or a table (``table``).

Both are read into one ``ConceptDataset`` and split by the run's seed (or, for a table, by a split
column the user fills in). Every error names the file and, where there is one, the column and the
row (rows counted as a spreadsheet shows them: the header is row 1), and says what to change.
An empty concept cell (or NaN in a tensor) is a missing label, which training skips.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import KW_ONLY
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field

from ..info import ConceptInfo
from ..settings import Bool, Float, SettingsError, Str, settings
from .base import ConceptData, ConceptDataset, ConceptSplits, split_dataset
from .supervision import Supervision

TENSOR_SUFFIXES = (".pt", ".npz")
TABLE_SUFFIXES = (".csv", ".parquet")
SPLIT_NAMES = ("train", "val", "test")
Fractions = tuple[Annotated[Float, Field(ge=0, le=1)], Annotated[Float, Field(ge=0, le=1)], Annotated[Float, Field(ge=0, le=1)]]


def _existing_file(path: str, suffixes: tuple[str, ...]) -> Path:
    file = Path(path).expanduser()
    if file.suffix.lower() not in suffixes:
        raise SettingsError(f"dataset.path: {file} should end in {' or '.join(suffixes)}")
    if not file.is_file():
        raise SettingsError(f"dataset.path: no file at {file.resolve()} (a relative path is read from the config "
                            "file's folder)")
    return file


def _check_fractions(fractions: Sequence[float]) -> None:
    if abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] == 0 or fractions[2] == 0:
        raise SettingsError(f"dataset.fractions: train, val and test shares must sum to 1, with some training and test "
                            f"data; got {list(fractions)}")


def _check_columns(file: Path, named: list[str]) -> None:
    """Every column a dataset block names is in the file's header, each in one role only."""
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise SettingsError(f"dataset: column(s) {twice} are named in more than one role (features, concepts, task, "
                            "image or split column); give each column one role")
    header = list(_read_table(file, nrows=0).columns)
    absent = [c for c in named if c not in header]
    if absent:
        raise SettingsError(f"dataset: {file} has no column(s) {absent}; its columns are {header}")


@settings
class TensorFileSettings(Supervision):
    """Your data as tensors in one file: ``x`` (N, ...), ``c`` (N, k) in [0, 1] (NaN: missing),
    ``y`` (N,) class indices, and optionally ``concept_names``, ``task_names`` and the
    ``ConceptInfo`` fields ``concept_groups``, ``categorical``, ``continuous`` and ``task``
    (``y`` is then (N, T) labels or targets).

    Attributes:
        name: ``tensors``.
        path: A ``.pt`` (``torch.save`` of a dict) or ``.npz`` (``numpy.savez``) file.
        fractions: Train, validation and test shares of the seeded split.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["tensors"]
    path: Str
    fractions: Fractions = (0.7, 0.1, 0.2)

    def __post_init__(self) -> None:
        file = _existing_file(self.path, TENSOR_SUFFIXES)
        _check_fractions(self.fractions)
        if file.suffix.lower() == ".npz":  # its member names are read without loading the arrays (a .pt is read whole, later)
            try:
                with np.load(file, allow_pickle=False) as archive:
                    names = set(archive.files)
            except (ValueError, OSError) as err:
                raise SettingsError(f"dataset.path: {file} is not a readable .npz ({type(err).__name__})") from None
            absent = [key for key in ("x", "c", "y") if key not in names]
            if absent:
                raise SettingsError(f"dataset.path: {file} has no {', '.join(absent)}; it holds {sorted(names)} (x: inputs, "
                                    "c: concept labels, y: class indices)")


@settings
class LabelColumns(Supervision):
    """The concept and task columns a table or an image folder's CSV names (keyword-only, as the
    supervision keys): its subclasses document each key among their attributes, and
    ``_label_columns`` checks them.

    Attributes:
        concepts: Binary concept columns.
        task: The class label column.
        categorical_concepts: Columns of categorical concepts.
        continuous_concepts: Numeric concept columns.
        task_labels: Instead of ``task``: 0/1 label columns of a multilabel task.
        task_targets: Instead of ``task``: numeric target columns of a regression task.
        classes: The class values in the order the model's outputs take (default: sorted).
    """

    _: KW_ONLY
    concepts: tuple[Str, ...] = ()
    task: Str | None = None
    categorical_concepts: tuple[Str, ...] = ()
    continuous_concepts: tuple[Str, ...] = ()
    task_labels: tuple[Str, ...] = ()
    task_targets: tuple[Str, ...] = ()
    classes: tuple[Str, ...] | None = None


@settings
class TableSettings(LabelColumns):
    """Your data as a table (CSV or Parquet): feature, concept and task columns by name.

    Attributes:
        name: ``table``.
        path: A ``.csv`` or ``.parquet`` file with a header row.
        features: Numeric input columns.
        concepts: Binary concept columns (0/1, true/false, yes/no; an empty cell is a missing label).
        categorical_concepts: Columns of categorical concepts (any values, e.g. a colour): each becomes
            one categorical concept with a member per value, ``column=value``, values sorted.
        continuous_concepts: Numeric concept columns, regressed as they are (give them a unit scale;
            an empty cell is a missing label).
        task: The class label column (any values; classes are sorted unless ``classes`` orders them).
        task_labels: Instead of ``task``: 0/1 label columns of a multilabel task.
        task_targets: Instead of ``task``: numeric target columns of a regression task.
        classes: The class values in the order the model's outputs take (default: sorted).
        split_column: A column of ``train`` / ``val`` / ``test`` fixing the split (else a seeded split).
        standardize: Scale each feature to mean 0, std 1 with the training split's statistics.
        fractions: Train, validation and test shares of the seeded split.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["table"]
    path: Str
    features: tuple[Str, ...]
    split_column: Str | None = None
    standardize: Bool = True
    fractions: Fractions = (0.7, 0.1, 0.2)

    def __post_init__(self) -> None:
        file = _existing_file(self.path, TABLE_SUFFIXES)
        _check_fractions(self.fractions)
        if not self.features:
            raise SettingsError("dataset.features needs at least one column name")
        _check_columns(file, [*self.features, *_label_columns(self), *([self.split_column] if self.split_column else [])])


def _label_columns(options: LabelColumns) -> list[str]:
    """The concept and task columns a table or image-folder block names, checked: at least one
    concept column, and exactly one of ``task``, ``task_labels``, ``task_targets``."""
    concepts = [*options.concepts, *options.categorical_concepts, *options.continuous_concepts]
    if not concepts:
        raise SettingsError("dataset.concepts (or categorical_concepts, continuous_concepts) needs at least one column name")
    tasks = [key for key in ("task", "task_labels", "task_targets") if getattr(options, key)]
    if len(tasks) != 1:
        raise SettingsError("dataset: name the task once: task (a class column), task_labels (0/1 columns of a multilabel "
                            f"task) or task_targets (numeric columns of a regression task); got {tasks or 'none'}")
    if options.classes and not options.task:
        raise SettingsError("dataset.classes orders the classes of a `task` column; a multilabel or regression task has none")
    named = [*concepts, *([options.task] if options.task else []), *options.task_labels, *options.task_targets]
    repeated = sorted({n for n in named if named.count(n) > 1})
    if repeated:
        raise SettingsError(f"dataset: column(s) {repeated} are named twice among the concept and task columns")
    return named


def _read_table(file: Path, nrows: int | None = None) -> Any:
    import pandas as pd

    if file.suffix.lower() == ".parquet":
        try:
            table = pd.read_parquet(file)
        except ImportError:
            raise SettingsError("reading Parquet needs pyarrow: pip install pyarrow (or save the table as CSV)") from None
        return table.head(nrows) if nrows is not None else table
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's byte-order mark is not a name
            first = handle.readline()
        try:
            delimiter = csv.Sniffer().sniff(first, delimiters=",;\t").delimiter  # comma, semicolon (European Excel) or tab
        except csv.Error:
            delimiter = ","
        header = next(csv.reader([first], delimiter=delimiter), [])
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ValueError(f"{file}: column(s) {repeated} appear more than once in the header; give every column its own name")
        return pd.read_csv(file, sep=delimiter, encoding="utf-8-sig", nrows=nrows, keep_default_na=True)
    except UnicodeDecodeError as err:
        raise ValueError(f"{file} is not UTF-8 text ({err.reason} at byte {err.start}); save the table as UTF-8 CSV") from None
    except ValueError as err:
        if str(err).startswith(str(file)):
            raise
        raise ValueError(f"{file} is not a readable CSV table ({type(err).__name__}: {str(err)[:160]})") from None


def load_tensor_file(options: TensorFileSettings, seed: int) -> ConceptSplits:
    """The tensors of ``options.path`` as one dataset, split by ``seed``.

    Args:
        options: The validated dataset block.
        seed: Draws the split.

    Returns:
        Train / val / test splits.

    Raises:
        ValueError: A missing key, a shape, a label out of range, or a file that is not tensors (the
            message names the file and the key).
    """
    file = Path(options.path).expanduser()
    if file.suffix.lower() == ".npz":
        try:
            with np.load(file, allow_pickle=False) as archive:
                content = {key: archive[key] for key in archive.files}
        except (ValueError, OSError) as err:
            raise ValueError(f"{file} is not a readable .npz of arrays ({type(err).__name__}: {str(err)[:160]})") from None
    else:
        try:
            content = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, a pickle that carries code, not a torch file
            raise ValueError(f"{file} is not a readable torch file of tensors ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:160] if str(err) else ''}); save a dict with torch.save") from None
    if not isinstance(content, dict):
        raise ValueError(f"{file} holds a {type(content).__name__}; save a dict with keys x, c, y "
                         "(and optionally concept_names, task_names)")
    absent = [key for key in ("x", "c", "y") if key not in content]
    if absent:
        raise ValueError(f"{file} has no {', '.join(absent)}; it holds {sorted(content)} (x: inputs, c: concept "
                         "labels, y: class indices)")
    x, c, y = (torch.as_tensor(np.asarray(content[k]) if not isinstance(content[k], torch.Tensor) else content[k])
               for k in ("x", "c", "y"))
    k = c.shape[1] if c.ndim == 2 else 0
    task = str(content.get("task", "multiclass"))
    default_tasks = ([f"class{j}" for j in range(max(int(y.max()) + 1 if y.numel() else 2, 2))] if task == "multiclass"
                     else [f"{'label' if task == 'multilabel' else 'target'}{j}" for j in range(y.shape[1] if y.ndim == 2 else 1)])
    concept_names = [str(n) for n in content.get("concept_names", [f"c{i}" for i in range(k)])]
    task_names = [str(n) for n in content.get("task_names", default_tasks)]
    groups = {str(g): tuple(int(i) for i in np.asarray(members).reshape(-1)) for g, members in dict(content.get("concept_groups", {})).items()}
    try:
        info = ConceptInfo(tuple(concept_names), tuple(task_names), groups,
                           tuple(str(g) for g in content.get("categorical", ())),
                           tuple(str(g) for g in content.get("continuous", ())), task)
        data = ConceptDataset(x, c, y, info)
    except ValueError as err:
        raise ValueError(f"{file}: {err}") from None
    return split_dataset(data, options.fractions, seed=seed)


def _blank(value: Any) -> bool:
    """An empty table cell, as the reader hands it over (None or a float NaN)."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _binary(values: Any, file: Path, column: str) -> np.ndarray:
    """A concept column as floats 1 / 0 / NaN (missing), or an error naming the first bad row."""
    words = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "1.0": 1.0, "0.0": 0.0}
    out = np.empty(len(values), dtype=np.float32)
    for row, value in enumerate(values):
        if _blank(value):
            out[row] = np.nan
            continue
        key = str(value).strip().lower()
        if key not in words:
            raise ValueError(f"{file}, column {column!r}, row {row + 2}: {value!r} is not a concept label; write 1/0, "
                             "true/false or yes/no, and leave the cell empty where the label is unknown")
        out[row] = words[key]
    return out


def _numbers(values: Any, file: Path, column: str, what: str) -> np.ndarray:
    """A numeric column as floats (NaN for an empty cell), or an error naming the first bad row."""
    out = np.empty(len(values), dtype=np.float32)
    for row, value in enumerate(values):
        try:
            out[row] = np.nan if _blank(value) or str(value).strip() == "" else float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{file}, column {column!r}, row {row + 2}: {value!r} is not a number; {what} columns "
                             "hold numbers (an empty cell where unknown)") from None
        if np.isinf(out[row]):
            raise ValueError(f"{file}, column {column!r}, row {row + 2}: {value!r} is not finite")
    return out


def _labels(table: Any, file: Path, options: LabelColumns) -> tuple[Any, Any, ConceptInfo]:
    """A table's concept labels (N, k) with NaN for empty cells (a categorical column one-hot over
    its values, a continuous column as numbers), its task labels and the ``ConceptInfo`` naming them."""
    concepts, categorical = options.concepts, options.categorical_concepts
    columns = [_binary(table[column].to_numpy(dtype=object), file, column) for column in concepts]
    names, groups = list(concepts), {column: (i,) for i, column in enumerate(concepts)}
    for column in categorical:
        cells = table[column].to_numpy(dtype=object)
        known = [not (_blank(v) or str(v).strip() == "") for v in cells]
        values = sorted({str(v).strip() for v, k in zip(cells, known) if k})
        if len(values) < 2:
            raise ValueError(f"{file}, column {column!r}: a categorical concept needs two values or more; found {values}")
        start = len(names)
        for value in values:
            columns.append(np.array([(1.0 if str(v).strip() == value else 0.0) if k else np.nan for v, k in zip(cells, known)],
                                    dtype=np.float32))
            names.append(f"{column}={value}")
        groups[column] = tuple(range(start, start + len(values)))
    for column in options.continuous_concepts:
        columns.append(_numbers(table[column].to_numpy(dtype=object), file, column, "continuous concept"))
        groups[column] = (len(names),)
        names.append(column)
    c = torch.from_numpy(np.stack(columns, 1))
    kinds = {"categorical": tuple(categorical), "continuous": tuple(options.continuous_concepts)}
    if options.task_labels:
        y = np.stack([_binary(table[column].to_numpy(dtype=object), file, column) for column in options.task_labels], 1)
        return c, torch.from_numpy(y), ConceptInfo(tuple(names), tuple(options.task_labels), groups, **kinds, task="multilabel")
    if options.task_targets:
        y = np.stack([_numbers(table[column].to_numpy(dtype=object), file, column, "task target")
                      for column in options.task_targets], 1)
        return c, torch.from_numpy(y), ConceptInfo(tuple(names), tuple(options.task_targets), groups, **kinds, task="regression")
    task, classes = options.task, options.classes
    task_values = [str(v) for v in table[task].to_numpy(dtype=object)]
    empty = [row for row, v in enumerate(table[task].isna()) if v]
    if empty:
        raise ValueError(f"{file}, column {task!r}, row {empty[0] + 2}: the task label is empty "
                         f"({len(empty)} row(s) in all); every row needs its class")
    class_names = list(classes) if classes else sorted(set(task_values))
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [(row, v) for row, v in enumerate(task_values) if v not in index]
    if unknown:
        row, value = unknown[0]
        raise ValueError(f"{file}, column {task!r}, row {row + 2}: {value!r} is not one of dataset.classes {class_names}")
    if len(class_names) < 2:
        raise ValueError(f"{file}, column {task!r}: every row has the class {class_names[0]!r}; a task needs two classes or more")
    info = ConceptInfo(tuple(names), tuple(class_names), groups, **kinds)
    return c, torch.tensor([index[v] for v in task_values]), info


def _split(data: ConceptData, table: Any, file: Path, split_column: str | None, fractions: Sequence[float],
           seed: int) -> ConceptSplits:
    """The split a table's ``split_column`` marks row by row, or else a split drawn by ``seed``."""
    if split_column is None:
        return split_dataset(data, fractions, seed=seed)
    parts = [str(v).strip().lower() for v in table[split_column].to_numpy(dtype=object)]
    wrong = [(row, v) for row, v in enumerate(parts) if v not in SPLIT_NAMES]
    if wrong:
        row, value = wrong[0]
        raise ValueError(f"{file}, column {split_column!r}, row {row + 2}: {value!r} is not train, val or test")
    rows = {name: [i for i, v in enumerate(parts) if v == name] for name in SPLIT_NAMES}
    empty_parts = [name for name, members in rows.items() if not members]
    if empty_parts:
        raise ValueError(f"{file}, column {split_column!r}: no row is marked {' or '.join(empty_parts)}")
    return ConceptSplits(*(data.subset(rows[name]) for name in SPLIT_NAMES))


def load_table(options: TableSettings, seed: int) -> ConceptSplits:
    """The table of ``options.path`` as one dataset, split by its split column or by ``seed``.

    Args:
        options: The validated dataset block.
        seed: Draws the split when the table has no split column.

    Returns:
        Train / val / test splits.

    Raises:
        ValueError: A non-numeric or empty feature cell, a concept cell that is not a label, a task
            value outside ``classes``, or a split value other than train/val/test (the message names
            the file, the column and the row).
    """
    file = Path(options.path).expanduser()
    table = _read_table(file)
    if len(table) == 0:
        raise ValueError(f"{file} has a header but no rows")
    features = np.empty((len(table), len(options.features)), dtype=np.float32)
    for j, column in enumerate(options.features):
        values = table[column].to_numpy()
        for row, value in enumerate(values):
            try:
                features[row, j] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{file}, column {column!r}, row {row + 2}: {value!r} is not a number; feature columns "
                                 "must be numeric (encode categories as numbers first)") from None
        bad = np.flatnonzero(~np.isfinite(features[:, j]))
        if bad.size:
            raise ValueError(f"{file}, column {column!r}, row {bad[0] + 2}: the feature is empty or not finite "
                             f"({bad.size} row(s) in all); fill or drop those rows")
    c, y, info = _labels(table, file, options)
    data = ConceptDataset(torch.from_numpy(features), c, y, info)
    splits = _split(data, table, file, options.split_column, options.fractions, seed)
    return _standardized(splits) if options.standardize else splits


def _standardized(splits: ConceptSplits) -> ConceptSplits:
    """Every split's features scaled by the training split's mean and std (a constant feature: by 1)."""
    mean, std = splits.train.x.mean(0), splits.train.x.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return ConceptSplits(*(ConceptDataset((part.x - mean) / std, part.c, part.y, part.info)
                           for part in (splits.train, splits.val, splits.test)), splits.concept_source)


@settings
class ImageFolderSettings(LabelColumns):
    """Your images: a folder of image files and a CSV that names each file with its concept and
    task labels; frozen backbone features (cached) or the images themselves for fine-tuning.

    Attributes:
        name: ``images``.
        folder: The folder the CSV's image paths are relative to.
        annotations: The CSV file (a header row; one row per image).
        image_column: The column of image paths (relative to ``folder``).
        concepts: Binary concept columns (0/1, true/false, yes/no; an empty cell is a missing label).
        task: The class label column.
        categorical_concepts: Columns of categorical concepts, as for a table.
        continuous_concepts: Numeric concept columns, as for a table.
        task_labels: Instead of ``task``: 0/1 label columns of a multilabel task.
        task_targets: Instead of ``task``: numeric target columns of a regression task.
        classes: The class values in the order the model's outputs take (default: sorted).
        split_column: A column of ``train`` / ``val`` / ``test`` fixing the split (else a seeded split).
        fractions: Train, validation and test shares of the seeded split.
        mode: ``frozen`` (cached backbone features) or ``finetune`` (images, end to end).
        backbone: The backbone that makes the features (frozen mode).
        weights: A local weights file, ``bundled`` (EfficientNet-Lite0) or null (random initialisation).
        image_size: The side images are resized to.
        cache_dir: Where features are cached (default: $XDG_CACHE_HOME/conceptlab or ~/.cache/conceptlab).
        batch_size: Feature-extraction batch.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["images"]
    folder: Str
    annotations: Str
    image_column: Str = "image"
    split_column: Str | None = None
    fractions: Fractions = (0.7, 0.1, 0.2)
    mode: Literal["frozen", "finetune"] = "frozen"
    backbone: Str = "efficientnet_lite0"
    weights: Str | None = "bundled"
    image_size: Annotated[int, Field(gt=0, strict=True)] = 224
    cache_dir: Str | None = None
    batch_size: Annotated[int, Field(gt=0, strict=True)] = 64

    def __post_init__(self) -> None:
        from ..models.encoders import BACKBONES

        if not Path(self.folder).expanduser().is_dir():
            raise SettingsError(f"dataset.folder: no folder at {Path(self.folder).expanduser().resolve()} (a relative "
                                "path is read from the config file's folder)")
        file = _existing_file(self.annotations, (".csv",))
        _check_fractions(self.fractions)
        if self.backbone not in BACKBONES:
            raise SettingsError(f"dataset.backbone: unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")
        _check_columns(file, [self.image_column, *_label_columns(self), *([self.split_column] if self.split_column else [])])


def image_folder_splits(options: ImageFolderSettings, seed: int) -> ConceptSplits:
    """The annotated images of ``options`` as ``ImageConceptDataset`` splits (files read on demand).

    Args:
        options: The validated dataset block.
        seed: Draws the split when the CSV has no split column.

    Returns:
        Train / val / test splits of image files.

    Raises:
        ValueError: An image file that does not exist, a file listed twice, or a bad label cell (the
            message names the CSV, the column and the row).
    """
    from .images import ImageConceptDataset

    file, folder = Path(options.annotations).expanduser(), Path(options.folder).expanduser()
    table = _read_table(file)
    if len(table) == 0:
        raise ValueError(f"{file} has a header but no rows")
    paths = []
    for row, value in enumerate(table[options.image_column].to_numpy(dtype=object)):
        path = folder / str(value)
        if _blank(value) or not path.is_file():
            raise ValueError(f"{file}, column {options.image_column!r}, row {row + 2}: no image file at {path}; paths are "
                             f"relative to dataset.folder ({folder})")
        paths.append(path.resolve())
    repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
    if repeated:
        raise ValueError(f"{file}, column {options.image_column!r}: {repeated[0]} is listed more than once; one row per image")
    c, y, info = _labels(table, file, options)
    return _split(ImageConceptDataset(paths, c, y, info), table, file, options.split_column, options.fractions, seed)
