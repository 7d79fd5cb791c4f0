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

import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..concepts.cav import CAVBank
from ..concepts.cce import CCE, Counterfactuals, random_scores, univariate_scores
from ..datasets.base import ConceptInfo
from ..datasets.cub import CLASS_LEVEL_THRESHOLD, load_cub
from ..datasets.features import extract_features
from ..datasets.images import ImageConceptDataset
from ..datasets.registry import default_cache_dir, features_by_path
from ..datasets.visual_concepts import VISUAL_CONCEPTS, visual_concept
from ..settings import reject_unknown_keys
from .store import RunStore

log = logging.getLogger(__name__)

# "cce": the configured solver (conceptlab's defaults unless the config says otherwise);
# "cce-reference": the same with the published objective (softmax, then cross-entropy), so the
# two objectives are measured side by side; "cce-published": the published solver as a whole
METHODS = ("cce", "cce-reference", "cce-published", "univariate", "random")
DATASET_DEFAULTS = {"root": None, "backbone": "efficientnet_lite0", "weights": "bundled", "image_size": 224,
                    "threshold": CLASS_LEVEL_THRESHOLD, "cache_dir": None, "batch_size": 64}
SOLVER_DEFAULTS = {"alpha": 10.0, "beta": 0.01, "lr": 0.01, "momentum": 0.9, "steps": 100, "kappa": "mean",
                   "objective": "logits", "l1_step": "proximal", "margin_means": "sign", "early_stop": False,
                   "support_threshold": 1e-3}
_TOP_LEVEL_KEYS = {"name", "benchmark", "dataset", "bank", "scenarios", "head", "solver", "quick"}


@dataclass(frozen=True)
class Scenario:
    """Plant the edit ``plant`` on one class; the bank concept that names the cause is ``concept``."""

    plant: str
    concept: str
    kind: str  # "standard", "part strength" or "faint"


@dataclass(frozen=True)
class CCEBenchSpec:
    """What a `benchmark: counterfactuals` config says, validated."""

    name: str
    dataset: dict[str, Any]
    visual: tuple[str, ...]
    attributes: bool
    examples: int
    scenarios: int
    seed: int
    head_weight_decay: float
    solver: dict[str, Any] = field(default_factory=lambda: dict(SOLVER_DEFAULTS))
    faint: tuple[str, ...] = ()
    harder: tuple[Scenario, ...] = ()
    bank_alpha: float = 1.0

    def scenario_list(self) -> list[Scenario]:
        """The standard scenarios (visual concept i for scenario i), then the harder ones."""
        standard = [Scenario(self.visual[i % len(self.visual)], self.visual[i % len(self.visual)], "standard")
                    for i in range(self.scenarios)]
        return standard + list(self.harder)

    def check_ready(self) -> None:
        from ..datasets.cub import find_cub_root

        if not self.dataset.get("root"):
            raise ValueError(f"{self.name} needs CUB images: pass --root PATH (the directory holding CUB_200_2011/)")
        find_cub_root(self.dataset["root"])

    def config_hash(self) -> str:
        settings = {k: v for k, v in self.__dict__.items() if k not in ("name", "scenarios")}
        settings["dataset"] = {k: v for k, v in self.dataset.items() if k not in ("cache_dir", "batch_size")}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def parse_cce_spec(raw: dict[str, Any], default_name: str = "cce", quick: bool = False, root: str | None = None) -> CCEBenchSpec:
    reject_unknown_keys(raw, _TOP_LEVEL_KEYS, "config key(s)")
    dataset = {**DATASET_DEFAULTS, **dict(raw.get("dataset") or {})}
    reject_unknown_keys(dataset, DATASET_DEFAULTS, "dataset option(s)")
    if root is not None:
        dataset["root"] = str(root)
    bank = dict(raw.get("bank") or {})
    reject_unknown_keys(bank, {"visual", "faint", "attributes", "examples", "alpha"}, "bank option(s)")
    visual = bank.get("visual", "all")
    visual = tuple(VISUAL_CONCEPTS) if visual == "all" else tuple(visual)
    faint = tuple(bank.get("faint") or ())
    for name in (*visual, *faint):
        visual_concept(name)
    scenarios = dict(raw.get("scenarios") or {})
    reject_unknown_keys(scenarios, {"count", "seed", "harder"}, "scenarios option(s)")
    harder = []
    for item in scenarios.get("harder") or ():
        reject_unknown_keys(dict(item), {"plant", "concept"}, "harder scenario key(s)")
        plant, concept = str(item["plant"]), str(item.get("concept", item["plant"]))
        visual_concept(plant)
        if concept not in (*visual, *faint):
            raise ValueError(f"harder scenario concept {concept!r} is not in the bank; add it to bank.visual or bank.faint")
        harder.append(Scenario(plant, concept, "faint" if concept in faint else "part strength"))
    head = dict(raw.get("head") or {})
    reject_unknown_keys(head, {"weight_decay"}, "head option(s)")
    solver = {**SOLVER_DEFAULTS, **dict(raw.get("solver") or {})}
    reject_unknown_keys(solver, SOLVER_DEFAULTS, "solver option(s)")
    count = int(scenarios.get("count", 14))
    if quick:
        quick_cfg = dict(raw.get("quick") or {})
        reject_unknown_keys(quick_cfg, {"scenarios"}, "quick key(s)")
        count = int(quick_cfg.get("scenarios", min(count, 3)))
        harder = []
    if count < 0:
        raise ValueError(f"scenarios.count must be 0 or more; got {count}")
    if count + len(harder) == 0:
        raise ValueError("the benchmark has no scenarios: set scenarios.count or scenarios.harder")
    return CCEBenchSpec(str(raw.get("name", default_name)), dataset, visual, bool(bank.get("attributes", True)),
                        int(bank.get("examples", 50)), count, int(scenarios.get("seed", 0)),
                        float(head.get("weight_decay", 1e-3)), solver, faint, tuple(harder), float(bank.get("alpha", 1.0)))


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


class _Features:
    """Backbone features of image lists, edited or not, through the on-disk feature cache."""

    def __init__(self, spec: CCEBenchSpec, info: ConceptInfo, progress: bool):
        self.options = spec.dataset
        self.info = info
        self.progress = progress

    def __call__(self, paths: list[Path], edit: str | None = None) -> Tensor:
        o = self.options
        images = ImageConceptDataset(paths, torch.zeros(len(paths), self.info.n_concepts), torch.zeros(len(paths)), self.info)
        return extract_features(images, o["backbone"], o["weights"], o["image_size"], o["batch_size"],
                                o["cache_dir"] or default_cache_dir(), progress=self.progress, edit=edit)


def build_bank(spec: CCEBenchSpec, paths: list[Path], base: Tensor, concepts: Tensor, names: list[str],
               features: _Features) -> CAVBank:
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
        return univariate_scores(bank, head, z, target, kappa=solver["kappa"], margin_means=solver["margin_means"])
    if method == "random":
        return random_scores(bank, head, z, target, seed=seed)
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


def run_cce_bench(spec: CCEBenchSpec, out: Path, progress: bool = True) -> RunStore:
    """Run every scenario not finished in ``out/runs.jsonl``; writes the bank and a demo model too."""
    out = Path(out)
    splits = load_cub(spec.dataset["root"], seed=spec.seed, val_fraction=0.0, concepts="class-level",
                      threshold=spec.dataset["threshold"])
    info = splits.info
    train, test = splits.train, splits.test
    features = _Features(spec, info, progress)
    base_of = features_by_path(splits, spec.dataset, progress)  # the same cache as `bench cub100`
    train_x = torch.stack([base_of[p] for p in train.paths])
    test_x = torch.stack([base_of[p] for p in test.paths])
    bank = build_bank(spec, train.paths, train_x, train.c, list(info.concept_names), features)
    bank.save(out / "bank.pt", head="head", classes=list(info.task_names), backbone=spec.dataset["backbone"],
              weights=spec.dataset["weights"], image_size=spec.dataset["image_size"])
    log.info("concept bank: %d concepts, median held-out CAV accuracy %.2f", len(bank.pairs_), float(bank.accuracy_.median()))

    store = RunStore(out / "runs.jsonl")
    done = store.finished()
    config_hash = spec.config_hash()
    rng = np.random.default_rng(spec.seed)
    n_classes = len(info.task_names)
    classes = rng.choice(n_classes, spec.scenarios, replace=spec.scenarios > n_classes).tolist()
    classes += rng.choice(n_classes, len(spec.harder), replace=len(spec.harder) > n_classes).tolist()
    concept_accuracy = {name: float(a) for (name, _), a in zip(bank.pairs_, bank.accuracy_)}
    solver = dict(spec.solver)
    for i, scenario in enumerate(tqdm(spec.scenario_list(), desc="cce scenarios", disable=not progress)):
        target = int(classes[i])
        key = f"{info.task_names[target]}+{scenario.plant}"
        if all((key, m, i, config_hash) in done for m in METHODS):
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
        common = {"dataset": key, "seed": i, "config_hash": config_hash, "status": "ok", "scenario": i,
                  "kind": scenario.kind, "class": info.task_names[target], "planted": scenario.plant,
                  "spurious": scenario.concept, "concept_cav_accuracy": concept_accuracy[scenario.concept],
                  "concepts": len(bank.pairs_), "class_test_images": int(of_class.sum()), "mistakes": len(mistakes),
                  "head_accuracy": float((predicted == test.y).float().mean())}
        for method in METHODS:
            start = time.perf_counter()
            result = explain(method, bank, head, z, target, solver, seed=i) if len(z) else None
            seconds = time.perf_counter() - start
            metrics = _evaluate(result, scenario.concept, seconds) if result is not None else {}
            store.add({**common, "model": method, **metrics})
            if i == 0 and method == "cce" and result is not None:
                _write_demo(out, spec, head, result, [test.paths[j] for j in mistakes.tolist()], key)
    return store


def _write_demo(out: Path, spec: CCEBenchSpec, head: nn.Linear, result: Counterfactuals, paths: list[Path], key: str) -> None:
    """The first scenario's model (backbone + head) and the explanation figure of its first mistake."""
    from PIL import Image

    from ..concepts.cce_plot import explanation_plot
    from ..datasets.transforms import image_transform
    from ..models.encoders import image_backbone

    o = spec.dataset
    model = nn.Sequential(OrderedDict(backbone=image_backbone(o["backbone"], o["weights"]), head=head)).eval()
    torch.save(model, out / "model.pt")
    with Image.open(paths[0]) as image:
        picture = image_transform(o["image_size"])(image.convert("RGB"))
    explanation_plot(picture, result, 0, out / "explanation.png", f"{key}: {paths[0].name} explained towards its class")
    (out / "demo-images.txt").write_text("".join(f"{p}\n" for p in paths))
