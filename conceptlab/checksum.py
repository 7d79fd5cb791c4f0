"""Checksums of saved payloads (models, concept banks): a file whose bytes changed after it was
written is an error at load, not a model with silently different weights.

The digest is a SHA-256 over the payload's contents (every tensor's dtype, shape and bytes, every
key and plain value, in a fixed order), stored in the payload itself under ``"checksum"``.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch

CHECKSUM_KEY = "checksum"


def _feed(digest: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)}:".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())


def payload_checksum(payload: dict) -> str:
    """SHA-256 (hex) of everything in ``payload`` except its own checksum entry."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def with_checksum(payload: dict) -> dict:
    """``payload`` with its checksum added, ready to save."""
    return {**payload, CHECKSUM_KEY: payload_checksum(payload)}


def verify_checksum(payload: dict, path: str | Path, what: str) -> None:
    """Raise a ``ValueError`` naming ``path`` when ``payload`` does not match its checksum; warn
    when it has none (written by a conceptlab without checksums). ``what`` names the file kind."""
    stored = payload.get(CHECKSUM_KEY)
    if stored is None:
        warnings.warn(f"{path} has no checksum (written by an older conceptlab), so damage to it cannot be detected; "
                      f"save the {what} again to add one", UserWarning, stacklevel=3)
        return
    if stored != payload_checksum(payload):
        raise ValueError(f"{path} is a damaged {what}: its contents no longer match the checksum written with them (a "
                         "changed or overwritten byte); use another copy, or write it again")


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of a file's SHA-256: what names runs on a user's data file and the
    feature caches of a weights file. A file is read once per size and modification time, however
    often a grid asks for its digest."""
    path = Path(path).resolve()
    stat = path.stat()
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
