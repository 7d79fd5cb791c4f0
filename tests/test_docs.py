"""The documentation builds strictly: broken links, missing pages or API references fail the build."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_documentation_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    reference = "".join(page.read_text() for page in (tmp_path / "api").rglob("index.html"))
    unlisted = [f"{package}.{name}" for package in API_PACKAGES for name in importlib.import_module(package).__all__
                if f'id="{package}.{name}"' not in reference and not _listed_by_path(package, name, reference)]
    assert unlisted == [], "every name in a package's __all__ has its entry in the API reference"


API_PACKAGES = ["conceptlab.models", "conceptlab.datasets", "conceptlab.training", "conceptlab.interventions",
                "conceptlab.metrics", "conceptlab.concepts", "conceptlab.bench", "conceptlab.explorer"]


def _listed_by_path(package: str, name: str, reference: str) -> bool:
    """A builder named like its module (``models.cbm.cbm``) is listed under its full path."""
    obj = getattr(importlib.import_module(package), name)
    return f'id="{obj.__module__}.{name}"' in reference


def test_the_readme_links_to_pages_that_exist():
    import re

    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    assert targets and all((ROOT / t).exists() for t in targets if not t.startswith("http"))
