"""One registry of model builders, in the style of torchvision's ``register_model``.

A builder is a function of keyword-only arguments that returns a ``ConceptModel``. Registering it
with ``@register_model()`` puts it under its name and makes every model it builds carry the call
that made it (``model.build_spec``): ``save_model`` stores that call and ``load_model`` replays it
with ``rebuild``, so no builder writes its own spec and no second table of builders exists.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import Tensor

from .base import ConceptModel

Builder = TypeVar("Builder", bound=Callable[..., ConceptModel])

_BUILDERS: dict[str, Callable[..., ConceptModel]] = {}


def register_model(name: str | None = None, *, not_saved: tuple[str, ...] = ()) -> Callable[[Builder], Builder]:
    """Register a builder of keyword-only arguments; the models it builds record their call.

    Args:
        name: The builder's registered name (default: the function's name).
        not_saved: Arguments left out of the recorded call because the saved weights replace them
            (a pretrained weights file, a fitted concept bank).

    Returns:
        A decorator that registers the builder and returns it wrapped.

    Raises:
        TypeError: The builder takes positional arguments.
        ValueError: The name is already registered.

    Examples:
        >>> from conceptlab.models.registry import list_models
        >>> "cbm" in list_models()
        True
    """

    def register(builder: Builder) -> Builder:
        key = name or builder.__name__
        signature = inspect.signature(builder)
        positional = [p.name for p in signature.parameters.values() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        if positional:
            raise TypeError(f"model builder {key!r} must take keyword-only arguments (put `*,` first); "
                            f"positional: {positional}")
        if key in _BUILDERS:
            raise ValueError(f"a model builder named {key!r} is already registered")

        @functools.wraps(builder)
        def build(**kwargs: Any) -> ConceptModel:
            call = signature.bind(**kwargs)
            call.apply_defaults()
            model = builder(**kwargs)
            model.build_spec = {
                "builder": key,
                "kwargs": {arg: _plain(value) for arg, value in call.arguments.items() if arg not in not_saved},
            }
            return model

        _BUILDERS[key] = build
        return build  # type: ignore[return-value]

    return register


def _plain(value: Any) -> Any:
    """A builder argument as plain data (lists, numbers, strings), so a model file stays tensors-and-data."""
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def list_models() -> list[str]:
    """The registered builder names, sorted.

    Returns:
        Names accepted by ``get_model`` and recorded in saved model files.

    Examples:
        >>> from conceptlab.models import list_models
        >>> list_models()
        ['black_box', 'cbm', 'cem', 'dcr', 'intcem', 'lfcbm', 'linear_probe', 'mixcem', 'pcbm', 'probcbm', 'scbm', 'whitening']
    """
    return sorted(_BUILDERS)


def takes(name: str, keyword: str) -> bool:
    """Whether the builder registered as ``name`` has the parameter ``keyword``."""
    return keyword in inspect.signature(_BUILDERS[name]).parameters


def get_model(name: str, **kwargs: Any) -> ConceptModel:
    """Build a model by its registered name.

    Args:
        name: A name from ``list_models()`` (e.g. ``"cbm"``).
        kwargs: The builder's keyword arguments.

    Returns:
        The model, with ``build_spec`` recording the call.

    Raises:
        ValueError: ``name`` is not registered.

    Examples:
        >>> from conceptlab.models import get_model
        >>> model = get_model("cbm", in_features=4, n_concepts=3, n_classes=2)
        >>> model.build_spec["kwargs"]["bottleneck"]
        'sigmoid'
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model builder {name!r}; choose one of {', '.join(list_models())}")
    return _BUILDERS[name](**kwargs)


def rebuild(spec: Mapping[str, Any]) -> ConceptModel:
    """Replay a recorded ``build_spec`` (its weights still to be loaded).

    Args:
        spec: ``{"builder": name, "kwargs": {...}}`` as a registered builder recorded it.

    Returns:
        A freshly initialised model of the same architecture.
    """
    return get_model(spec["builder"], **spec["kwargs"])
