"""Validation shared by every settings block a config file or a caller can give."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def reject_unknown_keys(values: Mapping, known: Iterable[str], what: str) -> None:
    """Raise a ValueError naming the keys of ``values`` that no setting reads, and the known ones."""
    known = sorted(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {known}")
