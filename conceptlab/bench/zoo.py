"""The benchmark's model keys: which builder, bottleneck and recipe each one means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Literal

from ..concepts.bank import BANK_ALPHA, BANK_EXAMPLES
from ..info import ConceptInfo
from ..models import ConceptModel, black_box, cbm, cem, intcem, linear_probe, pcbm
from ..settings import Fraction, PositiveFloat, PositiveInt, Str, settings, validated
from ..training.config import TrainConfig


@settings
class ModelSettings:
    """Architecture settings shared by the models of one benchmark (CEM paper, App. A).

    Attributes:
        hidden: MLP encoder widths.
        latent_dim: CEM encoder output width.
        embedding_size: CEM m; the hybrid CBM and the black box use k * m bottleneck units.
        randint: CEM's training-intervention probability (RandInt).
        randint_per: ``sample`` (the paper) or ``batch`` (the official code).
        policy_hidden: IntCEM's policy network widths.
        backbone: Image backbone trained end to end (datasets in finetune mode).
        backbone_weights: A local weights file, ``bundled`` or null (random initialisation).
        bank_examples: PCBM concept bank: training examples a side (as many again held out).
        bank_alpha: PCBM concept bank: the SVM's alpha.
    """

    hidden: tuple[PositiveInt, ...] = (128, 128)
    latent_dim: PositiveInt = 128
    embedding_size: PositiveInt = 128
    randint: Fraction = 0.25
    randint_per: Literal["sample", "batch"] = "sample"
    policy_hidden: tuple[PositiveInt, ...] = (256, 128)
    backbone: Str | None = None
    backbone_weights: Str | None = None
    bank_examples: PositiveInt = BANK_EXAMPLES
    bank_alpha: PositiveFloat = BANK_ALPHA

    @classmethod
    def from_dict(cls, values: dict) -> ModelSettings:
        """Build from a config's ``model:`` block; unknown keys and bad values name the key."""
        return validated(cls, values, "model")

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden), "policy_hidden": list(self.policy_hidden)}

    @property
    def trunk(self) -> dict:
        """Builder keywords for the image backbone, if any."""
        return {"backbone": self.backbone, "backbone_weights": self.backbone_weights}


@dataclass(frozen=True)
class ModelEntry:
    """How one benchmark model is built and trained."""

    description: str
    build: Callable[[int, ConceptInfo, ModelSettings], ConceptModel]
    recipe: str = "joint"
    randint: bool = False
    bank: bool = False  # the run fits a concept bank on the training split's embeddings first (PCBMs)

    def train_config(self, base: TrainConfig, settings: ModelSettings) -> TrainConfig:
        if self.randint:
            return replace(base, intervention_prob=settings.randint, intervention_per=settings.randint_per)
        return base


def _bottleneck_units(info: ConceptInfo, s: ModelSettings) -> int:
    return info.n_concepts * s.embedding_size


MODEL_KEYS: dict[str, ModelEntry] = {
    "linear-probe": ModelEntry(
        "one Linear layer on the inputs (frozen features: the backbone's own linear classifier)",
        lambda d, info, s: linear_probe(d, info.n_classes),
    ),
    "pcbm": ModelEntry(
        "post-hoc CBM: elastic-net head on distances to a concept bank fitted on the embeddings",
        lambda d, info, s: pcbm(d, info.n_concepts, info.n_classes),
        recipe="posthoc",
        bank=True,
    ),
    "pcbm-h": ModelEntry(
        "hybrid post-hoc CBM: the PCBM head frozen, plus a linear residual on the embedding",
        lambda d, info, s: pcbm(d, info.n_concepts, info.n_classes, hybrid=True),
        recipe="posthoc",
        bank=True,
    ),
    "blackbox": ModelEntry(
        "no-concept baseline: hybrid-sized latent code, task loss only",
        lambda d, info, s: black_box(d, info.n_classes, _bottleneck_units(info, s), s.hidden, **s.trunk),
    ),
    "cbm-bool": ModelEntry(
        "joint CBM, hard 0/1 bottleneck",
        lambda d, info, s: cbm(d, info.n_concepts, info.n_classes, "bool", hidden=s.hidden, **s.trunk),
    ),
    "cbm-fuzzy": ModelEntry(
        "joint CBM, sigmoid bottleneck",
        lambda d, info, s: cbm(d, info.n_concepts, info.n_classes, "sigmoid", hidden=s.hidden, **s.trunk),
    ),
    "cbm-logit": ModelEntry(
        "joint CBM, logit bottleneck",
        lambda d, info, s: cbm(d, info.n_concepts, info.n_classes, "logit", hidden=s.hidden, **s.trunk),
    ),
    "cbm-hybrid": ModelEntry(
        "joint CBM, sigmoid concepts plus k(m-1) unsupervised units",
        lambda d, info, s: cbm(
            d, info.n_concepts, info.n_classes, "sigmoid",
            n_extra=_bottleneck_units(info, s) - info.n_concepts, hidden=s.hidden, **s.trunk,
        ),
    ),
    "cbm-seq": ModelEntry(
        "sequential CBM, sigmoid bottleneck",
        lambda d, info, s: cbm(d, info.n_concepts, info.n_classes, "sigmoid", hidden=s.hidden, **s.trunk),
        recipe="sequential",
    ),
    "cbm-ind": ModelEntry(
        "independent CBM, sigmoid bottleneck",
        lambda d, info, s: cbm(d, info.n_concepts, info.n_classes, "sigmoid", hidden=s.hidden, **s.trunk),
        recipe="independent",
    ),
    "cem": ModelEntry(
        "concept embedding model with RandInt",
        lambda d, info, s: cem(d, info.n_concepts, info.n_classes, s.embedding_size, s.latent_dim, s.hidden, **s.trunk),
        randint=True,
    ),
    "intcem": ModelEntry(
        "intervention-aware CEM: trained on sampled intervention trajectories, with a learned policy over concept groups",
        lambda d, info, s: intcem(d, info.n_concepts, info.n_classes, info.group_matrix(), s.embedding_size, s.latent_dim,
                                  s.hidden, s.policy_hidden, **s.trunk),
        recipe="intcem",
        randint=True,
    ),
}
