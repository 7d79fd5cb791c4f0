"""Save a model with what is needed to rebuild it; load it back without knowing its class."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..atomic import save_atomic
from ..datasets.base import ConceptInfo
from .base import ConceptModel
from .blackbox import black_box
from .cbm import cbm
from .cem import cem

BUILDERS = {"cbm": cbm, "cem": cem, "black_box": black_box}


def save_model(model: ConceptModel, path: str | Path, info: ConceptInfo, **metadata: Any) -> Path:
    """Write ``model`` (built by a conceptlab builder), its ``info`` and ``metadata`` atomically."""
    if not model.build_spec:
        raise ValueError(
            "only models made by conceptlab's builder functions (cbm, cem, black_box) can be saved "
            "with save_model; save a custom module's state_dict with torch.save instead"
        )
    payload = {
        "format": "conceptlab-model/1",
        "build_spec": model.build_spec,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "info": info.to_dict(),
        "metadata": metadata,
    }
    return save_atomic(payload, path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[ConceptModel, ConceptInfo, dict]:
    """Rebuild a model saved by ``save_model``; returns (model, info, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}; pass a checkpoint written by conceptlab (e.g. by `conceptlab bench`)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # e.g. a whole pickled nn.Module
        raise ValueError(f"{path} is not a conceptlab model file: it holds objects other than tensors") from err
    if not isinstance(payload, dict) or payload.get("format") != "conceptlab-model/1":
        raise ValueError(f"{path} is not a conceptlab model file (expected format 'conceptlab-model/1')")
    spec = payload["build_spec"]
    model = BUILDERS[spec["builder"]](**spec["kwargs"])  # image backbones start random; the state dict fills them
    model.load_state_dict(payload["state_dict"])
    return model.to(map_location), ConceptInfo.from_dict(payload["info"]), payload["metadata"]
