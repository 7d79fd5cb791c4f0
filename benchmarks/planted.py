"""What the planted-concept benchmarks share: coloured digits, a small CNN, and the dev / held-out
split of the visual edits, fixed before any setting was tried on them.

``cce_transfer.py`` and ``tcav_causal.py`` plant edits from ``DEV_EDITS`` while choosing a default
and report on scenarios that plant only ``HELD_OUT_EDITS``.
"""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from conceptlab.bench.counterfactuals.runner import FeatureSource
from conceptlab.bench.counterfactuals.settings import CounterfactualSpec, parse_counterfactual_spec
from conceptlab.bench.spec import load_config
from conceptlab.datasets.cub import load_cub
from conceptlab.datasets.images import ImageConceptDataset
from conceptlab.datasets.registry import features_by_path
from conceptlab.datasets.visual_concepts import VISUAL_CONCEPTS
from conceptlab.info import ConceptInfo

FAINT = ("blur@0.4", "vignette@0.3")
BANK_EDITS = (*VISUAL_CONCEPTS, *FAINT)  # the 14 full edits and the 2 faint ones
DEV_EDITS = ("grayscale", "blur", "noise", "stripes", "dots", "red_tint", "blue_tint", "blur@0.4")
HELD_OUT_EDITS = ("sepia", "pixelate", "washed_out", "vignette", "grid", "border", "green_tint", "vignette@0.3")
assert set(DEV_EDITS).isdisjoint(HELD_OUT_EDITS) and set(DEV_EDITS) | set(HELD_OUT_EDITS) == set(BANK_EDITS)


def coloured_digits(seed: int) -> tuple[Tensor, Tensor]:
    """(N, 3, 24, 24) images in [0, 1] and their digit labels: scikit-learn's 8 x 8 digits upsampled
    to 16 x 16 at a random place, strokes in a random light colour on a random dark background;
    two copies of each digit."""
    digits = load_digits()
    generator = torch.Generator().manual_seed(seed)
    ink = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    ink = F.interpolate(ink, size=16, mode="bilinear", align_corners=False).repeat(2, 1, 1, 1)
    n = ink.shape[0]
    canvas = torch.zeros(n, 1, 24, 24)
    shifts = torch.randint(0, 9, (n, 2), generator=generator)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        canvas[i, :, dy : dy + 16, dx : dx + 16] = ink[i]
    background = 0.4 * torch.rand(n, 3, 1, 1, generator=generator)
    stroke = 0.6 + 0.4 * torch.rand(n, 3, 1, 1, generator=generator)
    images = (1 - canvas) * background + canvas * stroke
    return images.clamp(0, 1), torch.tensor(digits.target, dtype=torch.long).repeat(2)


def split_digits(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Coloured digits split 3 : 1 into (train images, train labels, test images, test labels)."""
    images, labels = coloured_digits(seed)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    train, test = order[: len(order) * 3 // 4], order[len(order) * 3 // 4 :]
    return images[train], labels[train], images[test], labels[test]


class SmallCNN(nn.Module):
    """Three conv blocks (named layers, for TCAV) and a linear head on the 32 pooled channels."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        blocks = OrderedDict()
        for i, (c_in, c_out) in enumerate(((3, 16), (16, 32), (32, 32)), start=1):
            blocks[f"conv{i}"] = nn.Conv2d(c_in, c_out, 3, padding=1)
            blocks[f"bn{i}"] = nn.BatchNorm2d(c_out)
            blocks[f"relu{i}"] = nn.ReLU()
            blocks[f"pool{i}"] = nn.MaxPool2d(2) if i < 3 else nn.AdaptiveAvgPool2d(1)
        blocks["flatten"] = nn.Flatten()
        self.features = nn.Sequential(blocks)
        self.head = nn.Linear(32, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def fit_classifier(model: nn.Module, x: Tensor, y: Tensor, epochs: int, lr: float, weight_decay: float = 0.0) -> nn.Module:
    """Cross-entropy, Adam, batch 128, ``epochs`` shuffled passes (global RNG); returned in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        for rows in torch.randperm(len(x)).split(128):
            optimizer.zero_grad()
            F.cross_entropy(model(x[rows]), y[rows]).backward()
            optimizer.step()
    return model.eval()


def train_cnn(x: Tensor, y: Tensor, seed: int, epochs: int = 8) -> SmallCNN:
    """A ``SmallCNN`` seeded with ``seed``, Adam lr 3e-3, ``epochs`` passes."""
    torch.manual_seed(seed)
    return fit_classifier(SmallCNN(int(y.max()) + 1), x, y, epochs, lr=3e-3)


@dataclass
class CubFeatures:
    """cub100 as the counterfactual bench sees it (its config, official split, class-level
    concepts), frozen features of the unedited images, and ``edited(paths, edit)`` for the rest."""

    spec: CounterfactualSpec
    train: ImageConceptDataset
    test: ImageConceptDataset
    info: ConceptInfo
    edited: FeatureSource
    train_x: Tensor
    test_x: Tensor


def cub_features(root: str) -> CubFeatures:
    """Load cub100 at ``root`` with the `conceptlab bench cce` settings, through the feature cache."""
    spec = parse_counterfactual_spec(load_config("cce")[0], root=root)
    splits = load_cub(root, seed=spec.seed, val_fraction=0.0, concepts="class-level", threshold=spec.dataset.threshold)
    base_of = features_by_path(splits, spec.dataset, True)
    return CubFeatures(spec, splits.train, splits.test, splits.info, FeatureSource(spec, splits.info, progress=True),
                       torch.stack([base_of[p] for p in splits.train.paths]),
                       torch.stack([base_of[p] for p in splits.test.paths]))


def benchmark_arguments(doc: str, out: str) -> argparse.ArgumentParser:
    """The options both planted benchmarks take: the CUB root, the split to run, a seed, a folder."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="directory holding CUB_200_2011/ (cub100)")
    parser.add_argument("--part", choices=("dev", "held-out"), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=out)
    return parser


class RecordFile:
    """``OUT/PART.jsonl``, started empty; ``add`` appends one record as it is measured."""

    def __init__(self, out: str, part: str):
        Path(out).mkdir(parents=True, exist_ok=True)
        self.path = Path(out) / f"{part}.jsonl"
        self.path.unlink(missing_ok=True)

    def add(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]


@torch.no_grad()
def embed(model: SmallCNN, x: Tensor) -> Tensor:
    """The CNN's penultimate activations (N, 32): its head's input."""
    return torch.cat([model.features(part) for part in x.split(512)])
