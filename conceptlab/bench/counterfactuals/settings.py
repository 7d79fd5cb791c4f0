"""Settings of the planted-spurious-concept benchmark (``benchmark: counterfactuals`` configs), validated when read."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ...concepts.cce import CCE_DEFAULTS
from ...datasets.registry import CubSettings, hashed_settings
from ...datasets.visual_concepts import VISUAL_CONCEPTS, visual_concept
from ...settings import (
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

    alpha: NonNegativeFloat = CCE_DEFAULTS["alpha"]
    beta: NonNegativeFloat = CCE_DEFAULTS["beta"]
    lr: PositiveFloat = CCE_DEFAULTS["lr"]
    momentum: Fraction = CCE_DEFAULTS["momentum"]
    steps: PositiveInt = CCE_DEFAULTS["steps"]
    kappa: Literal["mean", "zero"] | None = CCE_DEFAULTS["kappa"]
    objective: Literal["logits", "reference"] = CCE_DEFAULTS["objective"]
    l1_step: Literal["proximal", "subgradient"] = CCE_DEFAULTS["l1_step"]
    margin_means: Literal["sign", "label"] = CCE_DEFAULTS["margin_means"]
    early_stop: Bool = CCE_DEFAULTS["early_stop"]
    support_threshold: NonNegativeFloat = CCE_DEFAULTS["support_threshold"]


@settings
class QuickSettings:
    scenarios: PositiveInt | None = None


@settings
class CounterfactualFile:
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
class CounterfactualSpec:
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
        from ...datasets.cub import find_cub_root
        from ...models.encoders import require_backbone

        if not self.dataset.root:
            raise ValueError(f"{self.name} needs CUB images: pass --root PATH (the directory holding CUB_200_2011/)")
        find_cub_root(self.dataset.root)
        require_backbone(self.dataset.backbone)

    def config_hash(self) -> str:
        settings_ = {k: v for k, v in asdict(self).items() if k not in ("name", "scenarios")}
        settings_["dataset"] = hashed_settings(self.dataset)
        return hashlib.sha256(json.dumps(settings_, sort_keys=True, default=str).encode()).hexdigest()[:12]


def parse_counterfactual_spec(raw: dict[str, Any], default_name: str = "cce", quick: bool = False, root: str | None = None) -> CounterfactualSpec:
    """A validated spec from a ``benchmark: counterfactuals`` config; every problem names its key."""
    top = validated(CounterfactualFile, {"benchmark": "counterfactuals", **raw}, "")
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
        count = validated(QuickSettings, top.quick, "quick").scenarios or min(count, 3)
        harder = []
    if count + len(harder) == 0:
        raise SettingsError("the benchmark has no scenarios: set scenarios.count or scenarios.harder")
    return CounterfactualSpec(top.name or default_name, dataset, visual, bank.attributes, bank.examples, count,
                        scenarios.seed, validated(HeadSettings, top.head, "head").weight_decay,
                        validated(SolverSettings, top.solver, "solver"), tuple(bank.faint), tuple(harder), bank.alpha)
