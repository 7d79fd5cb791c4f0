"""Typed settings: every settings block a config file or a caller gives is validated when it is read.

Settings classes are frozen pydantic dataclasses (``@settings``): unknown keys, wrong types and
out-of-range values fail at construction, with the key in the message, long before any run
starts. Values are strict: ``"3"`` is not an integer and ``"no"`` is not a boolean (YAML 1.1
reads ``no`` as a string when quoted and as False when not; either way nothing switches on by
accident). One leniency: a float may be written as a numeric string, because YAML 1.1 reads
``1e-3`` (no dot) as the string "1e-3".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic.dataclasses import dataclass

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def _float_from_yaml(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


Float = Annotated[StrictFloat, BeforeValidator(_float_from_yaml)]
Int = StrictInt
Bool = StrictBool
Str = StrictStr
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
Fraction = Annotated[Float, Field(ge=0, le=1)]

T = TypeVar("T")


def settings(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen, validated settings dataclass that rejects unknown keys."""
    return dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)


class SettingsError(ValueError):
    """A settings block that does not validate; the message names each offending key."""


def describe(error: ValidationError, where: str = "", known: Iterable[str] = ()) -> str:
    """One line per problem: ``where.key: what is wrong (got value)``; unknown keys list ``known``."""
    known = sorted(known)
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"] if part != "__root__")
        key = ".".join(part for part in (where, location) if part) or "settings"
        got = problem.get("input")
        shown = f" (got {got!r})" if problem["type"] not in ("unexpected_keyword_argument", "missing_argument") \
            and not isinstance(got, (dict, Mapping)) else ""
        message = problem["msg"]
        if problem["type"] == "unexpected_keyword_argument":
            message = "unknown key: no setting reads it" + (f" (known: {', '.join(known)})" if known else "")
        lines.append(f"{key}: {message}{shown}")
    return "; ".join(lines)


def validated(build: Callable[..., T], values: Any, where: str) -> T:
    """``build(**values)`` with errors that name ``where`` and the offending keys."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise SettingsError(f"{where} must be a mapping of settings (key: value); got {values!r}")
    try:
        return build(**values)
    except ValidationError as err:
        known = [f.name for f in dataclasses.fields(build)] if dataclasses.is_dataclass(build) else []
        raise SettingsError(describe(err, where, known)) from None
