"""Concept Bottleneck Models (Koh et al., ICML 2020) with sigmoid, logit or bool bottlenecks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..info import TaskKind
from .base import ConceptEffects, ConceptModel, ConceptOutput, Intervention, check_sizes
from .concept_types import check_categorical, check_continuous, concept_probabilities, continuous_mask, hard_concepts
from .encoders import encoder
from .heads import task_outputs
from .registry import register_model

Bottleneck = Literal["sigmoid", "logit", "bool"]
BOTTLENECKS: tuple[str, ...] = ("sigmoid", "logit", "bool")
"""How a CBM's concepts enter its head: probabilities, logits, or hard 0/1 values."""
LOGIT_PERCENTILES = (0.05, 0.95)  # intervention values of the logit bottleneck


def store_percentiles(values: Tensor, low: Tensor, high: Tensor) -> None:
    """Write each column's ``LOGIT_PERCENTILES`` of training ``values`` (N, k) into the buffers ``low``
    and ``high`` (k,): what an intervention writes for "absent" and "present" in models whose
    bottleneck carries unbounded values (logit CBM, PCBM, label-free CBM, concept whitening)."""
    quantiles = torch.quantile(values.detach().float().to(low.device), torch.tensor(LOGIT_PERCENTILES, device=low.device), dim=0)
    low.copy_(quantiles[0])
    high.copy_(quantiles[1])


class ConceptBottleneckModel(ConceptModel):
    """x -> concepts (+ optional unsupervised extra units) -> task.

    ``encoder`` maps inputs to ``n_concepts + n_extra`` units. The first ``n_concepts`` are concept
    logits; the bottleneck carries them as probabilities (``sigmoid``), raw logits (``logit``) or
    hard 0/1 values (``bool``, no straight-through gradient). Extra units (the hybrid CBM) pass
    through a LeakyReLU and are never intervened on. The task head is one Linear layer.

    Args:
        encoder: The network from inputs to the k concept logits plus ``n_extra`` units.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        bottleneck: ``sigmoid`` (fuzzy), ``logit`` or ``bool`` (hard 0/1): how concepts enter the head.
        n_extra: Unsupervised bottleneck units beside the concepts (a hybrid CBM).
        categorical: Member indices of each categorical concept (a softmax over its members).
        continuous: Indices of the continuous concepts (the unit is the regressed value, written as is).
        task: ``multiclass``, ``multilabel`` or ``regression`` (``models.heads``).

    Examples:
        >>> from conceptlab.models import ConceptBottleneckModel
        >>> model = ConceptBottleneckModel(torch.nn.Linear(4, 3), n_concepts=3, n_classes=2, bottleneck="logit")
        >>> model(torch.randn(2, 4)).concept_probs.shape
        torch.Size([2, 3])
    """

    additive_effects = True  # a linear head: corrections add up

    def __init__(
        self,
        encoder: nn.Module,
        *,
        n_concepts: int,
        n_classes: int,
        bottleneck: Bottleneck = "sigmoid",
        n_extra: int = 0,
        categorical: Sequence[Sequence[int]] = (),
        continuous: Sequence[int] = (),
        task: TaskKind = "multiclass",
    ):
        super().__init__()
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"unknown bottleneck {bottleneck!r}; choose one of {', '.join(BOTTLENECKS)}")
        if n_concepts < 1 or n_extra < 0:
            raise ValueError(f"need n_concepts >= 1 and n_extra >= 0; got {n_concepts}, {n_extra}")
        self.encoder = encoder
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.bottleneck_kind = bottleneck
        self.n_extra = n_extra
        self.categorical = check_categorical(categorical, n_concepts)
        self.continuous = check_continuous(continuous, n_concepts, self.categorical)
        self.task = task
        self.head = nn.Linear(n_concepts + n_extra, task_outputs(n_classes, task))
        # training-logit percentiles written by interventions on a logit bottleneck
        self.register_buffer("intervention_low", torch.full((n_concepts,), float("nan")))
        self.register_buffer("intervention_high", torch.full((n_concepts,), float("nan")))

    def encode(self, x: Tensor) -> Tensor:
        """Concept logits and extra units, (B, k + n_extra)."""
        return self.encoder(x)

    def decode(self, units: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        logits, extras = units[:, : self.n_concepts], units[:, self.n_concepts :]
        probs = concept_probabilities(logits, self.categorical, self.continuous)
        if self.bottleneck_kind == "sigmoid":
            concepts = probs
        elif self.bottleneck_kind == "bool":
            concepts = hard_concepts(probs, self.categorical, self.continuous)
        else:
            concepts = logits
        if intervention is not None:
            concepts = self._intervene(concepts, intervention)
        bottleneck = torch.cat([concepts, F.leaky_relu(extras)], dim=1) if self.n_extra else concepts
        return ConceptOutput(self.head(bottleneck), bottleneck, logits, probs)

    def _intervene(self, concepts: Tensor, intervention: Intervention) -> Tensor:
        intervention = self.check_intervention(intervention, concepts)
        values = intervention.values.to(concepts.dtype)
        if self.bottleneck_kind == "logit":
            low, high = self._logit_values()
            labels = torch.where(values > 0.5, high, low)
            values = torch.where(continuous_mask(self.n_concepts, self.continuous, values.device), values, labels) if self.continuous else labels
        return torch.where(intervention.mask, values, concepts)

    def _logit_values(self) -> tuple[Tensor, Tensor]:
        """What an intervention writes into a logit bottleneck for the labels 0 and 1 (a continuous
        concept's unit is its value: 0 and 1 themselves)."""
        binary = ~continuous_mask(self.n_concepts, self.continuous, self.intervention_low.device)
        if torch.isnan(self.intervention_low[binary]).any():
            raise ValueError(
                "a logit-bottleneck CBM needs its training-logit percentiles before intervening: "
                "train it with conceptlab.training.fit or call model.calibrate_interventions(train_concept_logits)"
            )
        if not self.continuous:
            return self.intervention_low, self.intervention_high
        return self.intervention_low.where(binary, 0.0), self.intervention_high.where(binary, 1.0)

    def concept_effects(self, units: Tensor, intervention: Intervention | None = None) -> ConceptEffects:
        """Closed form: setting concept ``i`` moves the logits by (new value - current value) * W[:, i]."""
        out = self.decode(units, intervention)
        current = out.bottleneck[:, : self.n_concepts]
        zero, one = self._logit_values() if self.bottleneck_kind == "logit" else (0.0, 1.0)
        return ConceptEffects.of_linear_head(out.task_logits, current, zero, one, self.head.weight[:, : self.n_concepts].T)

    def calibrate_interventions(self, train_concept_logits: Tensor) -> None:
        """Store the 5th / 95th percentiles of each concept's training logits."""
        store_percentiles(train_concept_logits, self.intervention_low, self.intervention_high)


@register_model(not_saved=("backbone_weights",))
def cbm(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    bottleneck: Bottleneck = "sigmoid",
    n_extra: int = 0,
    hidden: Sequence[int] = (128, 128),
    backbone: str | None = None,
    backbone_weights: str | None = None,
    categorical: Sequence[Sequence[int]] = (),
    continuous: Sequence[int] = (),
    task: TaskKind = "multiclass",
) -> ConceptBottleneckModel:
    """CBM with the MLP encoder of the CEM paper's synthetic experiments; ``n_extra > 0`` gives the hybrid CBM.

    With ``backbone`` (e.g. ``"resnet18"``) the MLP sits on an image backbone, for end-to-end
    training on images; ``in_features`` is then ignored.

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``: the backbone decides).
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit, see ``models.heads``).
        bottleneck: How concepts enter the head: ``"sigmoid"`` (fuzzy), ``"logit"`` or ``"bool"`` (hard 0/1).
        n_extra: Unsupervised bottleneck units beside the concepts (a hybrid CBM).
        hidden: Widths of the MLP encoder's hidden layers.
        backbone: An image backbone name (e.g. ``"resnet18"``) under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights (nothing is downloaded).
        categorical: Member indices of each categorical concept (``ConceptInfo.categorical_indices()``):
            a softmax over its members instead of a sigmoid per member.
        continuous: Indices of the continuous concepts (``ConceptInfo.continuous_indices()``): regressed values.
        task: ``multiclass``, ``multilabel`` or ``regression`` (``ConceptInfo.task``); ``n_classes`` counts
            the labels or targets of the latter two.

    Returns:
        The untrained model; ``build_spec`` records the call.

    Raises:
        ValueError: A size is not a whole number >= 1 (the message names it).

    Examples:
        >>> from conceptlab.models import cbm
        >>> model = cbm(in_features=4, n_concepts=3, n_classes=2, bottleneck="logit", hidden=(16,))
        >>> model(torch.randn(5, 4)).concept_logits.shape
        torch.Size([5, 3])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes)  # in_features: checked by the encoder, unless a backbone sets it
    return ConceptBottleneckModel(
        encoder(in_features, n_concepts + n_extra, hidden, backbone, backbone_weights),
        n_concepts=n_concepts, n_classes=n_classes, bottleneck=bottleneck, n_extra=n_extra, categorical=categorical,
        continuous=continuous, task=task,
    )
