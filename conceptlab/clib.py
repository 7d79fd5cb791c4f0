"""The C library of this process, for the few calls Python has no wrapper for (prctl, mallopt)."""

from __future__ import annotations

import ctypes


def libc() -> ctypes.CDLL:
    """The C library, found among the process's own symbols: no library search, which
    ``ctypes.util.find_library`` does by running ``ldconfig`` in a subprocess."""
    return ctypes.CDLL(None, use_errno=True)
