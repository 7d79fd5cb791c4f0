"""Every public name shows how it is called: functions and classes carry an ``Examples:`` section
whose doctest runs here (with ``torch`` imported, in a scratch folder), and functions that return
something say what in ``Returns:``. Examples that need files a test cannot make (a CUB folder,
a bench result) are marked ``+SKIP`` and still show the call."""

import dataclasses
import doctest
import importlib
import inspect

import pytest
import torch

PACKAGES = ["conceptlab.models", "conceptlab.datasets", "conceptlab.training", "conceptlab.interventions",
            "conceptlab.metrics", "conceptlab.concepts", "conceptlab.concepts.discovery", "conceptlab.bench", "conceptlab.explorer"]


def _public() -> list[tuple[str, object]]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or (inspect.isclass(obj) and not dataclasses.is_dataclass(obj)):
                names.append((f"{package}.{name}", obj))
    return names


def test_every_public_function_and_class_has_an_example_and_says_what_it_returns():
    no_example = [label for label, obj in _public() if "Examples:" not in (inspect.getdoc(obj) or "")]
    no_returns = [label for label, obj in _public() if inspect.isfunction(obj)
                  and inspect.signature(obj).return_annotation not in (None, "None", inspect.Signature.empty)
                  and "Returns:" not in (inspect.getdoc(obj) or "")]
    assert (no_example, no_returns) == ([], [])


@pytest.mark.parametrize("label, obj", _public(), ids=[label for label, _ in _public()])
def test_the_example_runs(label, obj, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(obj, label, globs={"torch": torch})
    assert tests and any(t.examples for t in tests), f"{label} has no example"
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{label}: its example fails (run it with python -m doctest to see)"
