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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..concepts.cav import CAVBank
from ..concepts.cce import CCE, Counterfactuals, random_scores, univariate_scores
from ..info import ConceptInfo
from ..datasets.cub import load_cub
from ..datasets.features import extract_features
from ..datasets.images import ImageConceptDataset
from ..datasets.registry import CubSettings, default_cache_dir, features_by_path, hashed_settings
from ..datasets.visual_concepts import VISUAL_CONCEPTS, visual_concept
from ..settings import (
    Bool,
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SettingsError,
    Str,
    settings,
    validated,
)
from .store import RunStore

log = logging.getLogger(__name__)

# "cce": the configured solver (conceptlab's defaults unless the config says otherwise);
# "cce-reference": the same with the published objective (softmax, then cross-entropy), so the
# two objectives are measured side by side; "cce-published": the published solver as a whole
METHODS = ("cce", "cce-reference", "cce-published", "univariate", "random")
_CUB_ONLY = ("mode", "concepts", "min_classes", "val_fraction")  # the benchmark fixes these itself


@settings
class BankSettings:
    """The concept bank: visual edits, faint edits, CUB attributes, examples per concept, SVM alpha."""

    visual: Literal["all"] | tuple[Str, ...] = "all"
    faint: tuple[Str, ...] = ()
    attributes: Bool = True
    examples: PositiveInt = 50
    alpha: PositiveFloat = 1.0  # the CCE reference's C = 0.01 on 50 + 50 examples


@settings
class HarderScenario:
    """Plant ``plant`` (an edit, e.g. ``sepia@0.5``); ``concept`` names the bank concept that is the cause."""

    plant: Str
    concept: Str | None = None


@settings
class ScenarioSettings:
    count: NonNegativeInt = 14
    seed: Int = 0
    harder: tuple[HarderScenario, ...] = ()


@settings
class HeadSettings:
    weight_decay: NonNegativeFloat = 1e-3


@settings
class SolverSettings:
    """``CCE`` hyperparameters of the "cce" rows (the other CCE rows derive from them)."""

    alpha: NonNegativeFloat = 10.0
    beta: NonNegativeFloat = 0.01
    lr: PositiveFloat = 0.01
    momentum: Fraction = 0.9
    steps: PositiveInt = 100
    kappa: Literal["mean", "zero"] | None = "mean"
    objective: Literal["logits", "reference"] = "logits"
    l1_step: Literal["proximal", "subgradient"] = "proximal"
    margin_means: Literal["sign", "label"] = "sign"
    early_stop: Bool = False
    support_threshold: NonNegativeFloat = 1e-3


@settings
class CCEQuickSettings:
    scenarios: PositiveInt | None = None


@settings
class CCEFile:
    """The top level of a ``benchmark: counterfactuals`` config."""

    benchmark: Literal["counterfactuals"]
    name: Str | None = None
    dataset: dict[str, Any] | None = None
    bank: dict[str, Any] | None = None
    scenarios: dict[str, Any] | None = None
    head: dict[str, Any] | None = None
    solver: dict[str, Any] | None = None
    quick: dict[str, Any] | None = None


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
    dataset: CubSettings
    visual: tuple[str, ...]
    attributes: bool
    examples: int
    scenarios: int
    seed: int
    head_weight_decay: float
    solver: SolverSettings = field(default_factory=SolverSettings)
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

        if not self.dataset.root:
            raise ValueError(f"{self.name} needs CUB images: pass --root PATH (the directory holding CUB_200_2011/)")
        find_cub_root(self.dataset.root)

    def config_hash(self) -> str:
        settings_ = {k: v for k, v in asdict(self).items() if k not in ("name", "scenarios")}
        settings_["dataset"] = hashed_settings(self.dataset)
        return hashlib.sha256(json.dumps(settings_, sort_keys=True, default=str).encode()).hexdigest()[:12]


def parse_cce_spec(raw: dict[str, Any], default_name: str = "cce", quick: bool = False, root: str | None = None) -> CCEBenchSpec:
    """A validated spec from a ``benchmark: counterfactuals`` config; every problem names its key."""
    top = validated(CCEFile, {"benchmark": "counterfactuals", **raw}, "")
    given = dict(top.dataset or {})
    misplaced = sorted(set(given) & set(_CUB_ONLY))
    if misplaced:
        raise SettingsError(f"dataset.{misplaced[0]}: does not apply to the counterfactual benchmark "
                            "(it uses class-level concepts and the official train/test split)")
    dataset = validated(CubSettings, {"name": "cub", **given}, "dataset")
    if root is not None:
        dataset = replace(dataset, root=str(root))
    bank = validated(BankSettings, top.bank, "bank")
    visual = tuple(VISUAL_CONCEPTS) if bank.visual == "all" else tuple(bank.visual)
    for name in (*visual, *bank.faint):
        visual_concept(name)
    scenarios = validated(ScenarioSettings, top.scenarios, "scenarios")
    harder = []
    for item in scenarios.harder:
        concept = item.concept or item.plant
        visual_concept(item.plant)
        if concept not in (*visual, *bank.faint):
            raise SettingsError(f"scenarios.harder: concept {concept!r} is not in the bank; add it to bank.visual or bank.faint")
        harder.append(Scenario(item.plant, concept, "faint" if concept in bank.faint else "part strength"))
    count = scenarios.count
    if quick:
        count = validated(CCEQuickSettings, top.quick, "quick").scenarios or min(count, 3)
        harder = []
    if count + len(harder) == 0:
        raise SettingsError("the benchmark has no scenarios: set scenarios.count or scenarios.harder")
    return CCEBenchSpec(top.name or default_name, dataset, visual, bank.attributes, bank.examples, count,
                        scenarios.seed, validated(HeadSettings, top.head, "head").weight_decay,
                        validated(SolverSettings, top.solver, "solver"), tuple(bank.faint), tuple(harder), bank.alpha)


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
        return extract_features(images, o.backbone, o.weights, o.image_size, o.batch_size,
                                o.cache_dir or default_cache_dir(), progress=self.progress, edit=edit)


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
    splits = load_cub(spec.dataset.root, seed=spec.seed, val_fraction=0.0, concepts="class-level",
                      threshold=spec.dataset.threshold)
    info = splits.info
    train, test = splits.train, splits.test
    features = _Features(spec, info, progress)
    base_of = features_by_path(splits, spec.dataset, progress)  # the same cache as `bench cub100`
    train_x = torch.stack([base_of[p] for p in train.paths])
    test_x = torch.stack([base_of[p] for p in test.paths])
    bank = build_bank(spec, train.paths, train_x, train.c, list(info.concept_names), features)
    bank.save(out / "bank.pt", head="head", classes=list(info.task_names), backbone=spec.dataset.backbone,
              weights=spec.dataset.weights, image_size=spec.dataset.image_size)
    log.info("concept bank: %d concepts, median held-out CAV accuracy %.2f", len(bank.pairs_), float(bank.accuracy_.median()))

    store = RunStore(out / "runs.jsonl")
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


def save_program(model: nn.Module, example: Tensor, path: Path) -> Path:
    """``model`` as a ``torch.export`` program with a free batch size: a file that loads without pickle."""
    import io
    import warnings

    from ..atomic import write_bytes_atomic

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(model, (torch.cat([example, example]),), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def _write_demo(out: Path, spec: CCEBenchSpec, head: nn.Linear, result: Counterfactuals, paths: list[Path], key: str) -> None:
    """The first scenario's model (backbone + head) and the explanation figure of its first mistake."""
    from PIL import Image

    from ..concepts.cce_plot import explanation_plot
    from ..datasets.transforms import image_transform
    from ..models.encoders import image_backbone

    o = spec.dataset
    model = nn.Sequential(OrderedDict(backbone=image_backbone(o.backbone, o.weights), head=head)).eval()
    with Image.open(paths[0]) as image:
        picture = image_transform(o.image_size)(image.convert("RGB"))
    save_program(model, picture[None], out / "model.pt2")
    explanation_plot(picture, result, 0, out / "explanation.png", f"{key}: {paths[0].name} explained towards its class")
    (out / "demo-images.txt").write_text("".join(f"{p}\n" for p in paths))
