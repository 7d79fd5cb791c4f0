"""On-disk caches that never serve damaged bytes and never run code.

A cache file is a header line, the SHA-256 of the payload, and the payload written by
``torch.save``; it is read back with ``weights_only=True`` (tensors and plain containers only).
A file that is truncated, zeroed, tampered with or unreadable is reported with its path, removed
and recomputed; a cache directory that cannot be written is reported once per file and the work
runs uncached. Caches are an optimisation: no cache problem ever fails a run.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch

from .atomic import write_bytes_atomic

_MAGIC = b"conceptlab-cache/1 sha256="


class CacheWarning(UserWarning):
    """A cache file was damaged and is recomputed, or a cache could not be written."""


def load_cached(path: str | Path) -> Any | None:
    """The object cached at ``path``, or None when there is none or it is damaged (then removed)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        warnings.warn(f"cannot read cache file {path} ({err}); recomputing", CacheWarning, stacklevel=2)
        return None
    header, _, payload = blob.partition(b"\n")
    problem = None
    if not header.startswith(_MAGIC):
        problem = "not a conceptlab cache file"
    elif header[len(_MAGIC) :].decode("ascii", "replace") != hashlib.sha256(payload).hexdigest():
        problem = "checksum mismatch: truncated or overwritten"
    else:
        try:
            return torch.load(io.BytesIO(payload), weights_only=True)
        except Exception as err:  # a payload that matches its checksum but holds no tensors
            problem = f"unreadable payload ({type(err).__name__})"
    warnings.warn(f"cache file {path} is damaged ({problem}); recomputing it", CacheWarning, stacklevel=2)
    try:
        path.unlink()
    except OSError:
        pass
    return None


def store_cached(obj: Any, path: str | Path) -> bool:
    """Write ``obj`` (tensors and plain containers) to ``path`` with its checksum, atomically.

    Returns False, with a warning, when the cache cannot be written (e.g. a read-only directory).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    try:
        write_bytes_atomic(path, _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    except OSError as err:
        warnings.warn(f"cannot write cache file {path} ({err}); continuing without caching it "
                      "(point XDG_CACHE_HOME or the cache_dir setting at a writable directory)", CacheWarning, stacklevel=2)
        return False
    return True
