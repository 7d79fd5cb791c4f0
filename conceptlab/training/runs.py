"""A trained run read back: its checkpoint, what the checkpoint records, and the data it was trained on.

``conceptlab bench`` saves every run's model with the settings that rebuild its data (dataset
settings and seed) and how it is evaluated (the binary threshold). ``load_run`` is the one place
that decodes those records and rebuilds the splits; the command line (``intervene``), the
explorer and any later tool read runs through it.

Example:
    >>> run = load_run("results/xor/checkpoints/xor-cem-seed0.pt")        # doctest: +SKIP
    >>> run.model, run.data.test, run.record.binary_threshold             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets.base import ConceptData
from ..info import ConceptInfo
from ..models.base import ConceptModel
from ..models.io import load_model
from .recipes import check_compatible


@dataclass(frozen=True)
class RunRecord:
    """What a checkpoint records about its run.

    Attributes:
        dataset: The dataset settings its data are rebuilt from (``name`` and the generator's or
            reader's settings, as in a benchmark config's ``dataset`` block).
        seed: The seed that drew its data split (and initialised it).
        binary_threshold: The decision threshold of a single binary logit its evaluation used.
        bench: The benchmark that trained it, when a bench did.
        model_key: The bench's model key (``cem``, ``cbm-fuzzy``, ...), when a bench trained it.
        extra: Everything else the checkpoint's metadata holds.
    """

    dataset: dict[str, Any]
    seed: int
    binary_threshold: float = 0.0
    bench: str | None = None
    model_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], path: str | Path) -> RunRecord:
        """The record in a checkpoint's ``metadata``; a checkpoint that does not say which data it was
        trained on (a model saved outside a bench without ``dataset=`` and ``seed=``) is an error.

        Args:
            metadata: The metadata ``load_model`` returned.
            path: The checkpoint, named in errors.
        """
        if not isinstance(metadata.get("dataset"), dict) or "seed" not in metadata:
            raise ValueError(f"{path} does not record the dataset it was trained on (save it with "
                             "save_model(..., dataset={...}, seed=N), as conceptlab bench does), or use the Python "
                             "API with your own data: conceptlab.interventions.intervention_curve(model, data)")
        known = {"dataset", "seed", "evaluation", "bench", "model_key"}
        return cls(
            dataset=dict(metadata["dataset"]), seed=int(metadata["seed"]),
            binary_threshold=float((metadata.get("evaluation") or {}).get("binary_threshold", 0.0)),
            bench=metadata.get("bench"), model_key=metadata.get("model_key"),
            extra={k: v for k, v in metadata.items() if k not in known},
        )


@dataclass(frozen=True)
class RunData:
    """The splits a run was trained and evaluated on, rebuilt from its record.

    Attributes:
        train: The training split (policies that learn from data are fitted on it).
        val: The validation split.
        test: The test split the run was evaluated on.
        dataset: The dataset settings used (the record's, with ``data_root`` applied).
        seed: The seed that drew them.
        image_paths: For image datasets, the test split's image files in order; else empty.
    """

    train: ConceptData
    val: ConceptData
    test: ConceptData
    dataset: dict[str, Any]
    seed: int
    image_paths: list[Path]

    @property
    def name(self) -> str:
        """The dataset's name."""
        return str(self.dataset.get("name", "data"))


@dataclass(frozen=True)
class Run:
    """A checkpoint read back: ``model`` (in evaluation mode), ``info``, ``record`` and ``data``."""

    path: Path
    model: ConceptModel
    info: ConceptInfo
    record: RunRecord
    data: RunData


def run_data(record: RunRecord, model: ConceptModel, info: ConceptInfo, path: str | Path,
             data_root: str | Path | None = None) -> RunData:
    """Rebuild the splits ``record`` names and check that ``model`` (with ``info``) reads them.

    Args:
        record: The checkpoint's record.
        model: The checkpoint's model.
        info: The checkpoint's concept and class names.
        path: The checkpoint, named in errors.
        data_root: Where a dataset read from disk (CUB) is now, for runs moved to another machine;
            the record's location otherwise.

    Raises:
        ValueError: ``data_root`` for a generated dataset, or data whose concepts and classes are not
            the model's.
        FileNotFoundError: A CUB archive that is neither at the recorded place nor at ``data_root``.
    """
    from ..datasets.registry import CubSettings, cub_image_splits, dataset_settings, load_cub_for_bench, load_dataset

    name = Path(path).name
    settings = dict(record.dataset)
    if data_root is not None:
        if settings.get("name") != "cub":
            raise ValueError(f"a data root says where a dataset's files are; {settings.get('name')!r} is generated, "
                             "not read, so leave it out")
        settings["root"] = str(data_root)
    options = dataset_settings(settings)
    if isinstance(options, CubSettings) and (not options.root or not Path(options.root).exists()):
        raise FileNotFoundError(f"{name} was trained on CUB at {options.root!r}, which is not here: give the directory "
                                "holding CUB_200_2011/ (conceptlab explore --data PATH, or load_run(..., data_root=PATH))")
    images = cub_image_splits(options, record.seed) if isinstance(options, CubSettings) else None  # read once
    splits = load_cub_for_bench(options, record.seed, images) if images is not None else load_dataset(options, seed=record.seed)
    found = splits.test.info
    if found.to_dict() != info.to_dict():
        raise ValueError(f"{name} predicts concepts {list(info.concept_names)[:4]} and classes {list(info.task_names)[:4]}, "
                         f"but the data it records give {list(found.concept_names)[:4]} and {list(found.task_names)[:4]}: "
                         "the data do not match the model")
    check_compatible(model, splits.test)
    return RunData(splits.train, splits.val, splits.test, settings, record.seed,
                   list(images.test.paths) if images is not None else [])


def load_run(checkpoint: str | Path, data_root: str | Path | None = None) -> Run:
    """Read a checkpoint saved by ``conceptlab bench`` (or ``save_model`` with ``dataset=`` and
    ``seed=``) and rebuild the data it was trained on.

    Args:
        checkpoint: The ``.pt`` file.
        data_root: See :func:`run_data`.

    Raises:
        ValueError: A file that is not a conceptlab model, a checkpoint that records no dataset, or
            data that do not match the model.
    """
    model, info, metadata = load_model(checkpoint)
    record = RunRecord.from_metadata(metadata, checkpoint)
    return Run(Path(checkpoint), model, info, record, run_data(record, model, info, checkpoint, data_root))
