"""Every number in README.md and docs/ can be traced to what produced it.

The docs cite scripts (``benchmarks/NAME.py``), configs (``experiments/NAME.yaml``, bundled configs
by name) and commands (``conceptlab bench NAME``); a cited file that does not exist, or a table of
results whose section names nothing that produced it, fails here.
"""

import re
from pathlib import Path

import pytest

from conceptlab.bench.spec import bundled_configs

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CITED_FILE = re.compile(r"(?<![\w/.-])((?:benchmarks|experiments|conceptlab/configs|experiments/configs)/[\w./-]+\.(?:py|yaml))")
BENCH_TARGET = re.compile(r"conceptlab bench ((?:[\w./-]+ ?)+)")
PRODUCER = re.compile(r"`[^`]*conceptlab [a-z]+[^`]*`|benchmarks/\w+\.py|experiments/[\w./-]+\.(?:py|yaml)|"
                      r"\[[^\]]*\]\((?!http)[^)]+\)")


def _text(page: Path) -> str:
    return page.read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_script_and_config_exists(page):
    missing = sorted({path for path in CITED_FILE.findall(_text(page)) if not (ROOT / path.rstrip(".")).exists()})
    assert not missing, f"{page.name} cites files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_benchmark_a_page_runs_is_bundled_or_a_file(page):
    known = set(bundled_configs())
    for match in BENCH_TARGET.finditer(_text(page)):
        for word in match.group(1).split():
            if word.startswith("-") or word in {"...", "PATH.yaml"} or "|" in word:
                break
            if word.endswith(".yaml"):
                assert (ROOT / word).exists() or (ROOT / "experiments" / "configs" / word).exists(), f"{page.name}: {word}"
            else:
                assert word in known, f"{page.name}: `conceptlab bench {word}` names no bundled config ({sorted(known)})"


def _sections(text: str) -> list[str]:
    """Top-level sections (## headings) of a page, each with its subsections."""
    return re.split(r"\n(?=## )", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_results_table_names_what_produced_it(page):
    """A table with measured numbers (a row holding a decimal) sits in a section that names a
    command, a script, a config, or links to the page that does."""
    for section in _sections(_text(page)):
        rows = [line for line in section.splitlines() if line.startswith("|") and re.search(r"\d+\.\d", line)]
        if rows:
            title = section.splitlines()[0]
            assert PRODUCER.search(section), f"{page.name}, section {title!r}: a results table with no command or script"


def test_every_headline_result_names_its_command_or_page():
    readme = _text(ROOT / "README.md")
    headlines = readme.split("## Headline results", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n- ", headlines)[1:]
    assert len(bullets) >= 5
    for bullet in bullets:
        assert PRODUCER.search(bullet), f"a headline result names no command, script or page: {bullet[:80]!r}"
