"""The benchmark's model keys: which builder, bottleneck and recipe each one means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Literal

from ..concepts.bank import BANK_ALPHA, BANK_EXAMPLES
from ..info import ConceptInfo
from ..models import ConceptModel, get_model
from ..models.registry import takes
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
    def encoder(self) -> dict:
        """Builder keywords for the input encoder: the MLP widths and the image backbone, if any."""
        return {"hidden": self.hidden, "backbone": self.backbone, "backbone_weights": self.backbone_weights}

    @property
    def embeddings(self) -> dict:
        """Builder keywords for CEM's shared code and concept embeddings."""
        return {"embedding_size": self.embedding_size, "latent_dim": self.latent_dim}


Options = Callable[[ConceptInfo, ModelSettings], dict]


@dataclass(frozen=True)
class ModelEntry:
    """How one benchmark model is built and trained.

    Attributes:
        description: One line for tables and ``--help``.
        builder: The registered model builder (``models.list_models()``).
        options: The builder's keywords beyond ``in_features`` and ``n_classes``, from the data and settings.
        recipe: The training recipe (``training.recipes``), or ``LABEL_FREE``.
        randint: Train with CEM's random training interventions (RandInt).
        bank: The run fits a concept bank on the training split's embeddings first (PCBMs).
    """

    description: str
    builder: str
    options: Options
    recipe: str = "joint"
    randint: bool = False
    bank: bool = False

    def build(self, in_features: int, info: ConceptInfo, settings: ModelSettings) -> ConceptModel:
        """The untrained model for data of width ``in_features`` described by ``info`` (its continuous
        concepts and its kind of task passed on where the data have them).

        Raises:
            ValueError: The builder handles no continuous concepts or no task of this kind.
        """
        typed = {**({"continuous": info.continuous_indices()} if info.continuous and takes(self.builder, "n_concepts") else {}),
                 **({"task": info.task} if info.task != "multiclass" else {})}
        refused = [key for key in typed if not takes(self.builder, key)]
        if refused:
            what = " or ".join({"continuous": "continuous concepts", "task": f"a {info.task} task"}[key] for key in refused)
            raise ValueError(f"the {self.builder} model does not handle {what}; leave its keys out of `models`")
        return get_model(self.builder, in_features=in_features, n_classes=info.n_classes, **self.options(info, settings), **typed)

    def train_config(self, base: TrainConfig, settings: ModelSettings) -> TrainConfig:
        """``base`` with this model's RandInt settings, if it trains with them."""
        if self.randint:
            return replace(base, intervention_prob=settings.randint, intervention_per=settings.randint_per)
        return base


def _bottleneck_units(info: ConceptInfo, s: ModelSettings) -> int:
    return info.n_concepts * s.embedding_size


def _cbm(bottleneck: str) -> Options:
    return lambda info, s: dict(n_concepts=info.n_concepts, bottleneck=bottleneck, categorical=info.categorical_indices(),
                                **s.encoder)


LABEL_FREE = "label-free"
"""The recipe of the label-free CBM: ``training.fit_label_free`` on a dataset with image-text embeddings,
which chooses the concepts itself (``bench.run.fit_label_free_run``), instead of ``training.fit``."""


MODEL_KEYS: dict[str, ModelEntry] = {
    "linear-probe": ModelEntry(
        "one Linear layer on the inputs (frozen features: the backbone's own linear classifier)",
        "linear_probe", lambda info, s: {},
    ),
    "pcbm": ModelEntry(
        "post-hoc CBM: elastic-net head on distances to a concept bank fitted on the embeddings",
        "pcbm", lambda info, s: dict(n_concepts=info.n_concepts), recipe="posthoc", bank=True,
    ),
    "pcbm-h": ModelEntry(
        "hybrid post-hoc CBM: the PCBM head frozen, plus a linear residual on the embedding",
        "pcbm", lambda info, s: dict(n_concepts=info.n_concepts, hybrid=True), recipe="posthoc", bank=True,
    ),
    "blackbox": ModelEntry(
        "no-concept baseline: hybrid-sized latent code, task loss only",
        "black_box", lambda info, s: dict(latent_dim=_bottleneck_units(info, s), **s.encoder),
    ),
    "cbm-bool": ModelEntry("joint CBM, hard 0/1 bottleneck", "cbm", _cbm("bool")),
    "cbm-fuzzy": ModelEntry("joint CBM, sigmoid bottleneck", "cbm", _cbm("sigmoid")),
    "cbm-logit": ModelEntry("joint CBM, logit bottleneck", "cbm", _cbm("logit")),
    "cbm-hybrid": ModelEntry(
        "joint CBM, sigmoid concepts plus k(m-1) unsupervised units",
        "cbm", lambda info, s: dict(n_concepts=info.n_concepts, bottleneck="sigmoid", categorical=info.categorical_indices(),
                                    n_extra=_bottleneck_units(info, s) - info.n_concepts, **s.encoder),
    ),
    "cbm-seq": ModelEntry("sequential CBM, sigmoid bottleneck", "cbm", _cbm("sigmoid"), recipe="sequential"),
    "cbm-ind": ModelEntry("independent CBM, sigmoid bottleneck", "cbm", _cbm("sigmoid"), recipe="independent"),
    "cem": ModelEntry(
        "concept embedding model with RandInt",
        "cem", lambda info, s: dict(n_concepts=info.n_concepts, categorical=info.categorical_indices(), **s.embeddings,
                                    **s.encoder), randint=True,
    ),
    "dcr": ModelEntry(
        "Deep Concept Reasoner: CEM concepts (RandInt) and a fuzzy logic rule per class as the task head",
        "dcr", lambda info, s: dict(n_concepts=info.n_concepts, **s.embeddings, **s.encoder), randint=True,
    ),
    "mixcem": ModelEntry(
        "mixture of concept embeddings: global embeddings plus residuals scaled by concept certainty, Platt-calibrated "
        "on the validation split (RandInt)",
        "mixcem", lambda info, s: dict(n_concepts=info.n_concepts, **s.embeddings, **s.encoder), randint=True,
    ),
    "probcbm": ModelEntry(
        "probabilistic CBM: a Gaussian embedding per concept scored against learned anchors, class anchors after a "
        "hidden layer as the head, trained also on the true concepts' anchors",
        "probcbm", lambda info, s: dict(n_concepts=info.n_concepts, latent_dim=s.latent_dim, head_hidden=(256,), **s.encoder),
    ),
    "scbm": ModelEntry(
        "stochastic CBM: concept logits with a learned covariance (amortized), the authors' nonlinear head; an "
        "intervention conditions the other concepts",
        "scbm", lambda info, s: dict(n_concepts=info.n_concepts, latent_dim=s.latent_dim, head_hidden=(256,), **s.encoder),
    ),
    "lfcbm": ModelEntry(
        "label-free CBM: concepts filtered and learned from image-text embeddings (planted data only), a sparse head",
        "lfcbm", lambda info, s: dict(n_concepts=info.n_concepts), recipe=LABEL_FREE,
    ),
    "whitening": ModelEntry(
        "concept whitening: the encoder's latent code whitened and rotated so its first k axes follow the concepts; "
        "a 256-unit head reads every axis",
        "whitening", lambda info, s: dict(n_concepts=info.n_concepts, latent_dim=s.latent_dim, head_hidden=(256,), **s.encoder),
    ),
    "intcem": ModelEntry(
        "intervention-aware CEM: trained on sampled intervention trajectories, with a learned policy over concept groups",
        "intcem", lambda info, s: dict(n_concepts=info.n_concepts, units=info.group_matrix(), policy_hidden=s.policy_hidden,
                                       categorical=info.categorical_indices(), **s.embeddings, **s.encoder),
        recipe="intcem", randint=True,
    ),
}
"""The benchmark's model keys (``conceptlab bench --models``), each a registered builder, options and a recipe."""
