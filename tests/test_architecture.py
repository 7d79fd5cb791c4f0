"""The layers hold: the import-linter contract, no import cycles, no private names across packages."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "conceptlab"


def test_the_layer_contract_in_pyproject_is_kept():
    """Run in a subprocess: import-linter reconfigures logging in the process that runs it."""
    import subprocess
    import sys

    pytest.importorskip("importlinter")
    check = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(config_filename='pyproject.toml'))"
    result = subprocess.run([sys.executable, "-c", check], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_module_imports_itself_back():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("conceptlab")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert cycles == []


def _package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_private_names_are_imported_across_packages():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
            source = ".".join([*base, *(node.module.split(".") if node.module else [])]) if node.level else node.module
            if not source or not source.startswith("conceptlab") or _package_of(source) == _package_of(module):
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private:
                offenders.append(f"{module} imports {private} from {source}")
    assert offenders == []


def test_the_single_logit_convention_lives_in_models_heads_only():
    """How a binary task's one logit reads as two classes is decided in one module: no other
    module branches on a head having a single logit."""
    patterns = ("shape[-1] == 1", "shape[1] == 1", "shape[0] == 1 else")
    offenders = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
                 if path.name != "heads.py" and any(p in path.read_text() for p in patterns)]
    assert offenders == []


def test_datasets_are_told_apart_by_their_features_not_their_type():
    """Tensor and image datasets share one protocol (datasets.base.ConceptData): code asks
    ``features`` (None for image files), never ``hasattr(data, "x")`` or the class."""
    import re

    pattern = re.compile(r'(has|get)attr\([\w.]+, "(x|paths)"|isinstance\([\w.]+, (Image)?ConceptDataset\)')
    offenders = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py")) if pattern.search(path.read_text())]
    assert offenders == []
