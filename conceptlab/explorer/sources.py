"""What the explorer shows: checkpoints found under a path, and the test data each was trained on.

Everything here runs before the server starts, so a missing or damaged checkpoint, a dataset that
cannot be found or data that do not fit the model is a clear error at the command line, not a
broken page. Files are read with safe loading only (tensors and plain data, never code).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..concepts.bank import BANK_SUFFIX
from ..concepts.cav import CAVBank
from ..info import ConceptInfo
from ..models import ConceptModel, load_model
from ..training.runs import RunData, RunRecord, run_data

log = logging.getLogger(__name__)


@dataclass
class ExplorerModel:
    """A loaded checkpoint: its display name, file, model, concept names, metadata and (optional) bank.

    Attributes:
        name: Its display name (the file name without ``.pt``).
        path: The checkpoint.
        model: The model, in evaluation mode.
        info: Its concept and class names.
        metadata: What the checkpoint records.
        bank: A concept bank for counterfactuals, if one was saved beside it or given.
    """

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


def find_checkpoints(path: str | Path) -> list[Path]:
    """The model files PATH names: itself when it is a file, else those of a bench result folder.

    Args:
        path: A model file, or a folder written by ``conceptlab bench``.

    Returns:
        The model files, sorted.

    Raises:
        FileNotFoundError: Nothing at ``path``, or a folder without checkpoints.

    Examples:
        >>> paths = find_checkpoints("results/xor")  # doctest: +SKIP
    """
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

    A model without concepts, or one the explorer cannot show (a multilabel or regression task,
    continuous concepts), is an error, or ``None`` with ``skip_without_concepts`` (a bench folder
    also holds black boxes and linear probes).

    Args:
        path: The checkpoint.
        bank: A concept bank to use instead of the one saved beside it.
        skip_without_concepts: Return None for a model without concepts (or one it cannot show) instead of failing.

    Returns:
        The model with its info, metadata and bank; ``None`` when skipped.

    Raises:
        ValueError: A damaged file, or a checkpoint that does not record its data.

    Examples:
        >>> model = load_explorer_model(Path("results/xor/checkpoints/xor-cem-seed0.pt"))  # doctest: +SKIP
    """
    model, info, metadata = load_model(path)
    if model.n_concepts == 0 and skip_without_concepts:
        log.info("skipping %s: a %s has no concepts to correct", path.name, type(model).__name__)
        return None
    if model.n_concepts == 0:
        raise ValueError(f"{path} holds a {type(model).__name__} without concepts: the explorer needs a concept model "
                         "(cbm, cem, intcem, pcbm)")
    if model.task != "multiclass" or model.continuous:
        what = f"a {model.task} task" if model.task != "multiclass" else f"continuous concepts {list(info.continuous)}"
        reason = (f"{path.name} has {what}; the explorer shows one class prediction and 0/1 corrections (a multiclass "
                  "task with binary or categorical concepts): explore it from Python with conceptlab.models.predict")
        if skip_without_concepts:
            log.info("skipping %s", reason)
            return None
        raise ValueError(reason)
    if "dataset" not in metadata or "seed" not in metadata:
        raise ValueError(f"{path} does not record the dataset it was trained on (only checkpoints written by "
                         "`conceptlab bench` do); explore it from Python with conceptlab.explorer.Explorer")
    beside = path.with_name(path.name.removesuffix(".pt") + BANK_SUFFIX)
    bank_path = Path(bank) if bank else beside if beside.is_file() else None
    return ExplorerModel(path.stem, path, model, info, metadata, CAVBank.load(bank_path) if bank_path else None)


def load_explorer_data(model: ExplorerModel, data_root: str | Path | None = None) -> RunData:
    """The test split ``model`` was evaluated on, rebuilt from its recorded dataset settings and seed
    (``training.runs``, as every tool reads a run).

    ``data_root`` replaces the recorded root of a dataset read from disk (CUB), for results moved
    to another machine.
    """
    return run_data(RunRecord.from_metadata(model.metadata, model.path), model.model, model.info, model.path, data_root)


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
