"""Planted-spurious-concept benchmark for conceptual counterfactuals (`conceptlab bench cce`).

For each scenario (class ``c``, visual concept ``S``): a linear classifier on frozen backbone
features is trained where every training image of ``c`` carries ``S`` and no other image does.
The class's clean test images that it then gets wrong are explained towards ``c``; the planted
cause ``S`` should rank among the top concepts to add. CCE (with the published objective, and
with cross-entropy of logits) is compared with the univariate and random rankings over a bank of
visual-edit concepts plus CUB attribute concepts.

Besides one standard scenario per visual concept, ``scenarios.harder`` lists scenarios where CCE
is not expected to shine: an edit planted at part strength while the bank knows the full edit,
and faint edits (``bank.faint``) whose CAVs separate edited from unedited images poorly.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ...concepts.cav import CAVBank
from ...concepts.cce import CCE, Counterfactuals, random_scores, univariate_scores
from ...datasets.cub import load_cub
from ...datasets.registry import features_by_path, image_features
from ...info import ConceptInfo
from ...models.io import save_exported
from ..store import RunStore
from .settings import METHODS, CounterfactualSpec

log = logging.getLogger(__name__)


def fit_linear_head(x: Tensor, y: Tensor, n_classes: int, weight_decay: float, max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression (L2 penalty) by full-batch L-BFGS: a convex, seedless probe."""
    head = nn.Linear(x.shape[1], n_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay / 2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head.eval()


class FeatureSource:
    """Backbone features of image lists, edited or not, through the on-disk feature cache."""

    def __init__(self, spec: CounterfactualSpec, info: ConceptInfo, progress: bool):
        self.options = spec.dataset
        self.info = info
        self.progress = progress

    def __call__(self, paths: list[Path], edit: str | None = None) -> Tensor:
        return image_features(paths, self.info, self.options, edit, self.progress, num_workers=0)


def build_bank(spec: CounterfactualSpec, paths: list[Path], base: Tensor, concepts: Tensor, names: list[str],
               features: FeatureSource) -> CAVBank:
    """One CAV per concept: edited vs unedited images (visual), classes with vs without (attributes)."""
    rng = np.random.default_rng(spec.seed)
    n = spec.examples
    sets: dict[str, Tensor] = {}
    for name in (*spec.visual, *spec.faint):
        rows = rng.choice(len(paths), 2 * n, replace=False)
        sets[name] = features([paths[i] for i in rows[:n]], edit=name)
        sets[f"{name}:negatives"] = base[rows[n:]]
    if spec.attributes:
        for a, name in enumerate(names):
            has = np.flatnonzero(concepts[:, a].numpy() > 0.5)
            lacks = np.flatnonzero(concepts[:, a].numpy() <= 0.5)
            if min(len(has), len(lacks)) < 10:
                continue
            sets[name] = base[rng.choice(has, min(n, len(has)), replace=False)]
            sets[f"{name}:negatives"] = base[rng.choice(lacks, min(n, len(lacks)), replace=False)]
    pairs = [(name, f"{name}:negatives") for name in sets if not name.endswith(":negatives")]
    return CAVBank(alpha=spec.bank_alpha, seed=spec.seed).fit(sets, pairs)


def explain(method: str, bank: CAVBank, head: nn.Module, z: Tensor, target: int, solver: dict[str, Any],
            seed: int) -> Counterfactuals:
    """Concept scores of one of ``METHODS`` for embeddings ``z`` towards ``target``."""
    if method == "cce":
        return CCE(bank, head, **solver).explain(z, target)
    if method == "cce-reference":
        return CCE(bank, head, **{**solver, "objective": "reference"}).explain(z, target)
    if method == "cce-published":
        return CCE.published(bank, head, support_threshold=solver["support_threshold"]).explain(z, target)
    if method == "univariate":
        return univariate_scores(bank, head, z, targets=target, kappa=solver["kappa"], margin_means=solver["margin_means"])
    if method == "random":
        return random_scores(bank, head, z, targets=target, seed=seed)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def _evaluate(result: Counterfactuals, spurious: str, seconds: float) -> dict[str, Any]:
    ranks = result.ranks(spurious).float()
    return {
        "precision_at_3": float((ranks <= 3).float().mean()),
        "mean_rank": float(ranks.mean()),
        "success_rate": float(result.success.float().mean()),
        "successes": int(result.success.sum()),
        "supports": result.support.tolist(),  # concepts per explanation, image by image
        "seconds_per_sample": seconds / len(ranks),
    }


def scenario_key(record: dict[str, Any]) -> tuple[int, str, str]:
    """A counterfactual run: (scenario index, method, settings hash)."""
    return int(record["scenario"]), record["method"], record["config_hash"]


def run_counterfactual_bench(spec: CounterfactualSpec, out: Path, progress: bool = True) -> RunStore:
    """Run every scenario not finished in ``out/runs.jsonl``; writes the bank and a demo model too."""
    out = Path(out)
    splits = load_cub(spec.dataset.root, seed=spec.seed, val_fraction=0.0, concepts="class-level",
                      threshold=spec.dataset.threshold)
    info = splits.info
    train, test = splits.train, splits.test
    features = FeatureSource(spec, info, progress)
    base_of = features_by_path(splits, spec.dataset, progress)  # the same cache as `bench cub100`
    train_x = torch.stack([base_of[p] for p in train.paths])
    test_x = torch.stack([base_of[p] for p in test.paths])
    bank = build_bank(spec, train.paths, train_x, train.c, list(info.concept_names), features)
    bank.save(out / "bank.pt", head="head", classes=list(info.task_names), backbone=spec.dataset.backbone,
              weights=spec.dataset.weights, image_size=spec.dataset.image_size)
    log.info("concept bank: %d concepts, median held-out CAV accuracy %.2f", len(bank.pairs_), float(bank.accuracy_.median()))

    store = RunStore(out / "runs.jsonl", key=scenario_key)
    done = store.finished()
    config_hash = spec.config_hash()
    rng = np.random.default_rng(spec.seed)
    n_classes = len(info.task_names)
    classes = rng.choice(n_classes, spec.scenarios, replace=spec.scenarios > n_classes).tolist()
    classes += rng.choice(n_classes, len(spec.harder), replace=len(spec.harder) > n_classes).tolist()
    concept_accuracy = {name: float(a) for (name, _), a in zip(bank.pairs_, bank.accuracy_)}
    solver = asdict(spec.solver)
    for i, scenario in enumerate(tqdm(spec.scenario_list(), desc="cce scenarios", disable=not progress)):
        target = int(classes[i])
        key = f"{info.task_names[target]}+{scenario.plant}"
        if all((i, m, config_hash) in done for m in METHODS):
            continue
        in_class = (train.y == target).nonzero()[:, 0]
        x = train_x.clone()
        x[in_class] = features([train.paths[j] for j in in_class.tolist()], edit=scenario.plant)
        head = fit_linear_head(x, train.y, n_classes, spec.head_weight_decay)
        with torch.no_grad():
            predicted = head(test_x).argmax(1)
        of_class = test.y == target
        mistakes = (of_class & (predicted != target)).nonzero()[:, 0]
        z = test_x[mistakes]
        common = {"benchmark": "counterfactuals", "scenario": i, "config_hash": config_hash, "status": "ok",
                  "kind": scenario.kind, "class": info.task_names[target], "planted": scenario.plant,
                  "concept": scenario.concept, "concept_cav_accuracy": concept_accuracy[scenario.concept],
                  "concepts": len(bank.pairs_), "class_test_images": int(of_class.sum()), "mistakes": len(mistakes),
                  "head_accuracy": float((predicted == test.y).float().mean())}
        for method in METHODS:
            start = time.perf_counter()
            result = explain(method, bank, head, z, target, solver, seed=i) if len(z) else None
            seconds = time.perf_counter() - start
            metrics = _evaluate(result, scenario.concept, seconds) if result is not None else {}
            store.add({**common, "method": method, **metrics})
            if i == 0 and method == "cce" and result is not None:
                _write_demo(out, spec, head, result, [test.paths[j] for j in mistakes.tolist()], key)
    return store


def _write_demo(out: Path, spec: CounterfactualSpec, head: nn.Linear, result: Counterfactuals, paths: list[Path], key: str) -> None:
    """The first scenario's model (backbone + head) and the explanation figure of its first mistake."""
    from PIL import Image

    from ...concepts.cce_plot import explanation_plot
    from ...datasets.transforms import image_transform
    from ...models.encoders import image_backbone

    o = spec.dataset
    model = nn.Sequential(OrderedDict(backbone=image_backbone(o.backbone, o.weights), head=head)).eval()
    with Image.open(paths[0]) as image:
        picture = image_transform(o.image_size)(image.convert("RGB"))
    save_exported(model, picture[None], out / "model.pt2")
    explanation_plot(picture, result, 0, out / "explanation.png", f"{key}: {paths[0].name} explained towards its class")
    (out / "demo-images.txt").write_text("".join(f"{p}\n" for p in paths))
