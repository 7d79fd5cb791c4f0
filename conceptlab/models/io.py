"""Save a model with what is needed to rebuild it; load it back without knowing its class.

Loading never runs code stored in a file unless the caller says so: conceptlab model files hold
tensors and plain data only (``weights_only=True``); programs written by ``torch.export.save``
(``.pt2``) load with ``torch.export.load`` and are unflattened back into their module tree;
TorchScript archives load with ``torch.jit.load``; a whole pickled ``nn.Module`` needs
``trust_code=True``, because unpickling it runs whatever code the file carries.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import save_atomic, write_bytes_atomic
from ..checksum import verify_checksum, with_checksum
from ..info import ConceptInfo
from .base import ConceptModel
from .registry import list_models, rebuild


def save_model(model: ConceptModel, path: str | Path, info: ConceptInfo, **metadata: Any) -> Path:
    """Write ``model`` (built by a conceptlab builder), its ``info`` and ``metadata`` atomically.

    Args:
        model: A model made by a registered builder (``cbm``, ``cem``, ...; ``models.list_models()``),
            which records the call that rebuilds it.
        path: The ``.pt`` file to write (folders are created).
        info: The concept and class names the model predicts.
        metadata: Anything JSON-like to keep beside it; ``dataset=`` and ``seed=`` let
            ``training.runs.load_run`` rebuild its data.

    Returns:
        The path written.

    Raises:
        ValueError: ``model`` was not made by a registered builder.

    Examples:
        >>> import tempfile, pathlib
        >>> from conceptlab.datasets import ConceptInfo
        >>> from conceptlab.models import cem, save_model
        >>> save_model(cem(in_features=2, n_concepts=2, n_classes=2), pathlib.Path(tempfile.mkdtemp()) / "cem.pt",
        ...            ConceptInfo(("a", "b"), ("no", "yes"))).name
        'cem.pt'
    """
    if not model.build_spec:
        raise ValueError(
            f"only models made by a registered builder ({', '.join(list_models())}) can be saved with save_model; "
            "register your builder with conceptlab.models.register_model, or save the state_dict with torch.save"
        )
    payload = {
        "format": "conceptlab-model/1",
        "build_spec": model.build_spec,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "info": info.to_dict(),
        "metadata": metadata,
    }
    return save_atomic(with_checksum(payload), path)


def _read_payload(path: Path, map_location) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}; pass a checkpoint written by conceptlab (e.g. by `conceptlab bench`)")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: the file was not written completely; write the model again")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, text, foreign, or a pickle that carries code
        raise ValueError(f"{path} is not a readable conceptlab model file ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[ConceptModel, ConceptInfo, dict]:
    """Rebuild a model saved by ``save_model``; returns (model, info, metadata), the model in
    evaluation mode (batch norm reads its running statistics; call ``.train()`` to fine-tune).

    Reads tensors and plain data only; a truncated, empty, text or foreign file is a ValueError
    that names the file.

    Args:
        path: A file written by ``save_model``.
        map_location: The device to load the tensors onto.

    Returns:
        (model, info, metadata).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is empty, damaged, not a conceptlab model file, or fails its checksum.

    Examples:
        >>> import tempfile, pathlib
        >>> from conceptlab.datasets import ConceptInfo
        >>> from conceptlab.models import cbm, load_model, save_model
        >>> path = save_model(cbm(in_features=2, n_concepts=2, n_classes=2), pathlib.Path(tempfile.mkdtemp()) / "m.pt",
        ...                   ConceptInfo(("a", "b"), ("no", "yes")), seed=0)
        >>> model, info, metadata = load_model(path)
        >>> info.concept_names, metadata
        (('a', 'b'), {'seed': 0})
    """
    path = Path(path)
    payload = _read_payload(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != "conceptlab-model/1":
        raise ValueError(f"{path} is not a conceptlab model file (expected format 'conceptlab-model/1')")
    verify_checksum(payload, path, "conceptlab model file")
    try:
        model = rebuild(payload["build_spec"])  # image backbones start random; the state dict fills them
        model.load_state_dict(payload["state_dict"])
        info = ConceptInfo.from_dict(payload["info"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path} is a damaged conceptlab model file ({_reason(err)})") from None
    return model.to(map_location).eval(), info, dict(payload.get("metadata") or {})


def archive_kind(path: Path) -> str | None:
    """"export" for a ``torch.export.save`` program, "torchscript" for a ``torch.jit.save`` archive, else None."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.endswith("models/model.json") for name in names):
        return "export"
    if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
        return "torchscript"
    return None


EXPORT_METADATA = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id")


def check_export_payloads(path: Path) -> None:
    """Refuse a ``torch.export`` archive with a member that could run code when loaded.

    ``torch.export.load`` unpickles some members with ``weights_only=False`` (sample inputs, and
    weights or constants its configs mark ``use_pickle``), so a crafted archive runs code before
    any error. Here every member must be plain JSON, archive metadata, a raw tensor payload its
    config lists as unpickled, or a pickle that ``torch.load(weights_only=True)`` accepts.
    """
    import io
    import json

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}
    raw, pickled = set(), set()
    parsed = {}
    for name, data in members.items():
        if name.endswith(".json"):
            try:
                parsed[name] = json.loads(data)
            except ValueError:
                raise ValueError(f"{path} is a damaged export archive (member {name} is not JSON)") from None
    for name, config in parsed.items():
        if name.endswith("_config.json") and isinstance(config, dict) and isinstance(config.get("config"), dict):
            folder = name.rsplit("/", 1)[0]
            for entry in config["config"].values():
                if isinstance(entry, dict):
                    (raw if entry.get("use_pickle") is False else pickled).add(f"{folder}/{entry.get('path_name')}")
    raw -= pickled  # a file listed both ways is unpickled by one of them
    for name, data in members.items():
        if name in parsed or name in raw or name.split("/", 1)[-1] in EXPORT_METADATA:
            continue
        try:
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception:
            raise ValueError(f"{path}: export archive member {name} holds pickled objects that are not plain tensors "
                             "(loading them could run code stored in the file): refused") from None


def load_any_model(path: str | Path, trust_code: bool = False) -> tuple[nn.Module, list[str]]:
    """(model, class names) from a conceptlab model file, a ``torch.export`` program (``.pt2``), a
    TorchScript archive or, with ``trust_code=True`` only, a whole pickled ``nn.Module``.

    A pickled module is refused by default: unpickling it runs code stored in the file. Pass
    ``trust_code=True`` (CLI: ``--trust-model-file``) only for files from a source you trust.
    """
    path = Path(path)
    kind = archive_kind(path)
    if kind == "export":
        check_export_payloads(path)
    try:
        if kind == "export":
            return torch.export.unflatten(torch.export.load(str(path))), []
        if kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu"), []
    except Exception as err:
        raise ValueError(f"{path} is a damaged {kind} archive ({_reason(err)})") from None
    try:
        model, info, _ = load_model(path)
        return model, list(info.task_names)
    except ValueError:
        if not trust_code:
            raise ValueError(
                f"{path} is not a conceptlab model file, torch.export program or TorchScript archive. If it is a whole "
                "pickled nn.Module, loading it runs code stored in the file: pass --trust-model-file (API: "
                "trust_code=True) only if you trust its source, or save the model with torch.export.save (.pt2) or "
                "conceptlab.models.save_model instead"
            ) from None
    warnings.warn(f"loading {path} with pickle: this runs any code the file carries (trusted on request)", stacklevel=2)
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path} could not be unpickled ({_reason(err)})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{path} holds a {type(model).__name__}, not an nn.Module; for a state dict, build the model "
                         "and call load_state_dict")
    return model, []


def save_exported(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """``model`` as a ``torch.export`` program with a free batch size: a file that loads without pickle."""
    import io
    import warnings

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(model, (torch.cat([example, example]),), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return write_bytes_atomic(path, buffer.getvalue())
