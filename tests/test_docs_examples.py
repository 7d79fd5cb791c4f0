"""Every Python example in README.md and docs/ runs, and every `conceptlab` command in them parses,
so that none can rot.

The blocks of one file run in order in one namespace (later blocks use what earlier ones made),
in a temporary working directory. Where a guide's example takes something the reader brings
(their model, images, example sets), ``SETUP`` makes a small stand-in before that block; ``SMALL``
shrinks sizes so that the whole file runs in seconds. Nothing else in an example is changed.
"""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

SMALL = [("size=3000", "size=300"), ("max_epochs=100", "max_epochs=2"), ("repeats=5", "repeats=1"),
         ("max_epochs: 20}", "max_epochs: 2}"), ("max_epochs: 30}", "max_epochs: 2}"), ("max_epochs=20,", "max_epochs=2,"), ("max_epochs=60,", "max_epochs=2,"),
         ("progress=False)", "progress=False, workers=1)"),
         ("TrainConfig(intervention_prob=0.25))", "TrainConfig(intervention_prob=0.25, max_epochs=2))")]

_TRAINED_XOR = """
from conceptlab.datasets import xor
from conceptlab.models import cem
from conceptlab.training import TrainConfig, fit
data = xor(size=300, seed=0)
model = cem(in_features=2, n_concepts=2, n_classes=2, embedding_size=4)
fit(model, data, "joint", config=TrainConfig(max_epochs=2, device="cpu"))
d, k, n = 2, 2, 2  # the names the guide's IntCEM example uses
"""

_IMAGE_MODELS = """
from collections import OrderedDict
import torch
from torch import nn
torch.manual_seed(0)
def tiny_cnn(last):
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), layer3=nn.ReLU(), avgpool=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten(), fc=nn.Linear(4, last)))
"""

SETUP: dict[tuple[str, int], str] = {
    ("docs/guide/interventions.md", 0): _TRAINED_XOR,
    ("docs/guide/explorer.md", 0): _TRAINED_XOR + """
from conceptlab.models import save_model
path = Path("checkpoints") / "xor-cem-seed0.pt"
save_model(model, path, data.info, dataset={"name": "xor", "size": 300}, seed=0, evaluation={"binary_threshold": 0.0})
name = path.stem
""",
    ("docs/guide/benchmarks.md", 0): _TRAINED_XOR + """
from conceptlab.models import save_model
save_model(model, Path("results/xor/checkpoints/xor-cem-seed0.pt"), data.info, dataset={"name": "xor", "size": 300}, seed=0)
""",
    ("docs/guide/cce.md", 0): _IMAGE_MODELS + """
model = tiny_cnn(3)
images = torch.rand(6, 3, 32, 32)
concepts = ["grayscale", "striped"]
example_sets = {**{c: torch.randn(20, 4) + i for i, c in enumerate(concepts)},
                **{f"{c}:negatives": torch.randn(20, 4) - 1 for c in concepts}}
targets = torch.tensor([0, 1, 2, 0, 1, 2])
class_names = ["heron", "gull", "tern"]
""",
    ("docs/guide/tcav.md", 0): _IMAGE_MODELS + """
model = tiny_cnn(3)
example_sets = {"striped": torch.rand(12, 3, 32, 32), **{f"random{r}": torch.rand(12, 3, 32, 32) for r in range(20)}}
inputs, zebra = torch.rand(10, 3, 32, 32), 2
""",
    ("docs/guide/posthoc.md", 0): """
from conceptlab.datasets import xor
splits = xor(size=300, seed=0)
""",
    ("docs/guide/posthoc.md", 1): _IMAGE_MODELS + """
from PIL import Image
backbone = tiny_cnn(3)
for folder, count in (("concepts/striped", 4), ("concepts/dotted", 4), ("random_images", 6)):
    Path(folder).mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (24, 24), (40 * i, 20, 200 - 30 * i)).save(f"{folder}/{i}.png")
""",
    ("docs/guide/posthoc.md", 2): """
from conceptlab.datasets import ConceptDataset, split_dataset
from conceptlab.info import ConceptInfo
from conceptlab.models import cbm
from conceptlab.training import TrainConfig, fit
info = ConceptInfo(("stripes", "wing_color::blue", "bill_color::blue"), ("Red_winged_Blackbird", "Blue_Jay", "Cardinal"))
x = torch.randn(200, 6)
c = (x[:, :3] > 0).float()
dataset = ConceptDataset(x, c, (c[:, 1] + c[:, 2]).long(), info)
model = cbm(in_features=6, n_concepts=3, n_classes=3)
fit(model, split_dataset(dataset, (0.7, 0.1, 0.2), seed=0), "joint", config=TrainConfig(max_epochs=2, device="cpu"))
""",
}


def _blocks(name: str) -> list[str]:
    return BLOCK.findall((ROOT / name).read_text())


def _small(code: str) -> str:
    for old, new in SMALL:
        code = code.replace(old, new)
    return code


@pytest.mark.parametrize("name", [f for f in FILES if _blocks(f)])
def test_the_examples_of_a_page_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"Path": Path}
    for index, code in enumerate(_blocks(name)):
        if (name, index) in SETUP:
            exec(compile(SETUP[name, index], f"<setup of {name} block {index}>", "exec"), namespace)
        exec(compile(_small(code), f"<{name} block {index}>", "exec"), namespace)


def test_every_setup_belongs_to_an_example():
    """A setup for a block that no longer exists would hide that the example changed."""
    for name, index in SETUP:
        assert index < len(_blocks(name)), f"{name} has no Python block {index}"


def _commands() -> list[tuple[str, str]]:
    """Every `conceptlab ...` command line in the shell blocks of README.md and docs/."""
    found = []
    for name in FILES:
        for code in re.findall(r"```(?:bash|sh|console)\n(.*?)```", (ROOT / name).read_text(), re.S):
            for line in code.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|;", line.split(" #")[0]):
                    if part.strip().startswith("conceptlab "):
                        found.append((name, part.strip()))
    return found


def test_every_documented_command_parses():
    from conceptlab.cli import build_parser

    commands = _commands()
    assert len(commands) >= 10  # the extraction itself still finds the guides' commands
    parser = build_parser()
    for name, command in commands:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"{name}: `{command}` does not parse with the current command line")


def test_the_guide_lists_every_model_key():
    from conceptlab.bench.zoo import MODEL_KEYS

    guide = (ROOT / "docs" / "guide" / "benchmarks.md").read_text()
    table = guide[guide.index("| key | model |"):guide.index("A test keeps this table equal")]
    listed = set(re.findall(r"`([a-z-]+)`", table))
    assert listed == set(MODEL_KEYS)
