"""The public API is documented: every name a package exports in ``__all__`` has a docstring whose
``Args:`` (or ``Attributes:``, or numpydoc ``Parameters``) section names each parameter (a
dataclass's or settings class's fields), as mkdocstrings renders it and as the legal YAML keys of
a settings block are read.
"""

import dataclasses
import importlib
import inspect
import re

PACKAGES = ["conceptlab.models", "conceptlab.datasets", "conceptlab.training", "conceptlab.interventions",
            "conceptlab.metrics", "conceptlab.concepts", "conceptlab.bench", "conceptlab.explorer"]

def _documented(doc: str, name: str) -> bool:
    """``name`` opens a line of a parameter section: ``name: ...``, ``name (type): ...`` or, for
    parameters described together, ``a, name: ...``."""
    return re.search(rf"^\s*(\w+, )*{re.escape(name)}(, \w+)*( \(.*\))?\s?:", doc, re.M) is not None


def _missing() -> dict[str, list[str]]:
    found = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj) or ""
            if dataclasses.is_dataclass(obj):  # settings and records: their fields are the parameters
                parameters = [f.name for f in dataclasses.fields(obj) if f.init]
            else:
                target = obj.__init__ if inspect.isclass(obj) else obj
                try:
                    signature = inspect.signature(target)
                except (TypeError, ValueError):
                    continue
                if inspect.isclass(obj):
                    doc += "\n" + (inspect.getdoc(obj.__init__) or "")
                parameters = [p for p, v in signature.parameters.items()
                              if p not in ("self", "cls") and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
            missing = [p for p in parameters if not _documented(doc, p)]
            if not doc.strip() or missing:
                found[f"{package}.{name}"] = missing
    return found


def test_every_public_name_documents_its_parameters():
    assert _missing() == {}, "document these parameters in an Args: (or Attributes:) section"


def _public_callables():
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{package}.{name}", obj
            elif inspect.isclass(obj) and not dataclasses.is_dataclass(obj):
                if "__init__" in vars(obj):
                    yield f"{package}.{name}", obj.__init__
                for attr, member in vars(obj).items():
                    if inspect.isfunction(member) and not attr.startswith("_"):
                        yield f"{package}.{name}.{attr}", member


# a container's positional parameters are its fields, in the order of ConceptDataset(x, c, y, info)
DATA_FIELDS = {"conceptlab.datasets.ImageConceptDataset": 4}


def test_options_after_the_third_parameter_are_keyword_only():
    """A call reads what it passes: beyond the first three parameters (the objects a function works
    on), every option is keyword-only, so an option's position never carries its meaning."""
    crowded = {}
    for label, function in _public_callables():
        parameters = [p for p in inspect.signature(function).parameters.values() if p.name not in ("self", "cls")]
        positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) > DATA_FIELDS.get(label, 3):
            crowded[label] = positional
    assert crowded == {}, "put `*,` after the third parameter"
