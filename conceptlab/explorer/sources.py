"""What the explorer shows: checkpoints found under a path, and the test data each was trained on.

Everything here runs before the server starts, so a missing or damaged checkpoint, a dataset that
cannot be found or data that do not fit the model is a clear error at the command line, not a
broken page. Files are read with safe loading only (tensors and plain data, never code).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from ..concepts.bank import BANK_SUFFIX
from ..concepts.cav import CAVBank
from ..datasets.base import ConceptDataset
from ..info import ConceptInfo
from ..models import ConceptModel, load_model

log = logging.getLogger(__name__)


@dataclass
class ExplorerModel:
    """A loaded checkpoint: its display name, file, model, concept names, metadata and (optional) bank."""

    name: str
    path: Path
    model: ConceptModel
    info: ConceptInfo
    metadata: dict
    bank: CAVBank | None = None

    @property
    def data_key(self) -> str:
        """Models with equal keys were tested on the same samples (same dataset settings and seed)."""
        return json.dumps([self.metadata.get("dataset"), self.metadata.get("seed")], sort_keys=True)


@dataclass
class ExplorerData:
    """The test split a model was evaluated on, the image files behind its rows (CUB), if any, and
    the training and validation splits (policies that learn from data are fitted on them)."""

    test: ConceptDataset
    dataset: dict
    seed: int
    image_paths: list[Path] = field(default_factory=list)
    train: ConceptDataset | None = None
    val: ConceptDataset | None = None

    @property
    def name(self) -> str:
        return str(self.dataset.get("name", "data"))


def find_checkpoints(path: str | Path) -> list[Path]:
    """The model files PATH names: itself when it is a file, else those of a bench result folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass a model file (.pt) or a folder written by `conceptlab bench`")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = sorted(p for p in folder.glob("*.pt") if not p.name.endswith(BANK_SUFFIX))
    if not found:
        raise FileNotFoundError(f"{path} holds no model files (*.pt, or checkpoints/*.pt of a bench result folder); "
                                "run `conceptlab bench` first or pass a checkpoint")
    return found


def load_explorer_model(path: Path, bank: str | Path | None = None, skip_without_concepts: bool = False) -> ExplorerModel | None:
    """Load a checkpoint (safe loading) and the concept bank saved beside it or given as ``bank``.

    A model without concepts is an error, or ``None`` with ``skip_without_concepts`` (a bench
    folder also holds black boxes and linear probes).
    """
    model, info, metadata = load_model(path)
    if model.n_concepts == 0 and skip_without_concepts:
        log.info("skipping %s: a %s has no concepts to correct", path.name, type(model).__name__)
        return None
    if model.n_concepts == 0:
        raise ValueError(f"{path} holds a {type(model).__name__} without concepts: the explorer needs a concept model "
                         "(cbm, cem, intcem, pcbm)")
    if "dataset" not in metadata or "seed" not in metadata:
        raise ValueError(f"{path} does not record the dataset it was trained on (only checkpoints written by "
                         "`conceptlab bench` do); explore it from Python with conceptlab.explorer.Explorer")
    beside = path.with_name(path.name.removesuffix(".pt") + BANK_SUFFIX)
    bank_path = Path(bank) if bank else beside if beside.is_file() else None
    return ExplorerModel(path.stem, path, model, info, metadata, CAVBank.load(bank_path) if bank_path else None)


def load_explorer_data(model: ExplorerModel, data_root: str | Path | None = None) -> ExplorerData:
    """The test split ``model`` was evaluated on, rebuilt from its recorded dataset settings and seed.

    ``data_root`` replaces the recorded root of a dataset read from disk (CUB), for results moved
    to another machine.
    """
    from ..datasets.registry import CubSettings, cub_image_splits, dataset_settings, load_cub_for_bench, load_dataset
    from ..training.recipes import check_compatible

    settings = dict(model.metadata["dataset"])
    if data_root is not None:
        if settings.get("name") != "cub":
            raise ValueError(f"--data names where a dataset's files are; {settings.get('name')!r} is generated, not read")
        settings["root"] = str(data_root)
    options = dataset_settings(settings)
    if isinstance(options, CubSettings) and (not options.root or not Path(options.root).exists()):
        raise FileNotFoundError(f"{model.path.name} was trained on CUB at {options.root!r}, which is not here: "
                                "pass --data PATH (the directory holding CUB_200_2011/)")
    seed = int(model.metadata["seed"])
    images = cub_image_splits(options, seed) if isinstance(options, CubSettings) else None  # the archive, read once
    splits = load_cub_for_bench(options, seed, images) if images is not None else load_dataset(options, seed=seed)
    test = splits.test
    if test.info.to_dict() != model.info.to_dict():
        raise ValueError(f"{model.path.name} predicts concepts {list(model.info.concept_names)[:4]}... and classes "
                         f"{list(model.info.task_names)[:4]}..., but its data give {list(test.info.concept_names)[:4]}... "
                         f"and {list(test.info.task_names)[:4]}...: the data do not match the model")
    check_compatible(model.model, test)
    return ExplorerData(test, settings, seed, list(images.test.paths) if images is not None else [], splits.train, splits.val)


def check_bank(model: ExplorerModel, inputs: Tensor | None) -> None:
    """A bank explains a model only if it was fitted on the model's own inputs (the embedding);
    ``inputs`` is ``None`` for image data, whose inputs are no embedding."""
    if model.bank is None:
        return
    width = model.bank.directions_.shape[1]
    if inputs is None:
        raise ValueError(f"{model.name} reads images, not embeddings: a concept bank cannot explain it (drop --bank)")
    if inputs.ndim != 2 or inputs.shape[1] != width:
        raise ValueError(f"the concept bank of {model.name} was fitted on {width}-dimensional embeddings, but the model "
                         f"reads inputs of shape {tuple(inputs.shape[1:])}: pass the bank fitted on this model's inputs")
