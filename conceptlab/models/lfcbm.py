"""Label-free Concept Bottleneck Models (Oikarinen, Das, Nguyen and Weng, ICLR 2023).

No concept labels: a frozen backbone's embedding ``z`` is projected onto one axis per concept,
``W_c z``, where ``W_c`` was learned to make each axis rise and fall over the training images as an
image-text model's similarity between the images and the concept's text does
(``training.labelfree.fit_label_free``). The axes are standardised with the training mean and
standard deviation, and a sparse linear head maps them to the task. An intervention writes a
concept's 5th / 95th percentile of training activations (as a logit CBM does), so "absent" and
"present" are values the head saw in training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import ConceptEffects, ConceptModel, ConceptOutput, Intervention, check_sizes
from .cbm import store_percentiles
from .heads import task_outputs
from .registry import register_model


class LabelFreeCBM(ConceptModel):
    """embedding -> standardised projection onto the concept axes -> sparse linear head.

    ``concept_logits`` are the standardised activations (0: the training mean), ``concept_probs``
    their sigmoid; the bottleneck carries the activations, corrected ones replaced by their
    training percentiles. The projection, standardisation and head are set by
    ``training.labelfree.fit_label_free``; the module only computes.

    Args:
        in_features: Width of the backbone embeddings it reads.
        n_concepts: Number of concept axes.
        n_classes: Number of task classes (2: one binary logit).

    Examples:
        >>> from conceptlab.models import LabelFreeCBM
        >>> LabelFreeCBM(in_features=6, n_concepts=3, n_classes=4)(torch.randn(2, 6)).concept_logits.shape
        torch.Size([2, 3])
    """

    additive_effects = True  # a linear head on the concept axes

    def __init__(self, *, in_features: int, n_concepts: int, n_classes: int):
        super().__init__()
        check_sizes(in_features=in_features, n_concepts=n_concepts, n_classes=n_classes)
        self.in_features = in_features
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.projection = nn.Linear(in_features, n_concepts, bias=False)
        self.register_buffer("activation_mean", torch.zeros(n_concepts))
        self.register_buffer("activation_std", torch.ones(n_concepts))
        self.register_buffer("intervention_low", torch.full((n_concepts,), -1.0))
        self.register_buffer("intervention_high", torch.full((n_concepts,), 1.0))
        self.head = nn.Linear(n_concepts, task_outputs(n_classes))

    def encode(self, x: Tensor) -> Tensor:
        """The embedding, flattened to (B, D); inputs are the backbone's embeddings."""
        z = x.flatten(1)
        if z.shape[1] != self.in_features:
            raise ValueError(f"this label-free CBM reads embeddings of {self.in_features} features; got inputs of shape "
                             f"{tuple(x.shape)}. Feed the backbone embeddings its projection was learned on")
        return z

    def activations(self, z: Tensor) -> Tensor:
        """Standardised concept activations (B, k)."""
        return (self.projection(z) - self.activation_mean) / self.activation_std

    def decode(self, z: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        logits = self.activations(z)
        concepts = logits
        if intervention is not None:
            intervention = self.check_intervention(intervention, logits)
            written = torch.where(intervention.values.to(logits.dtype) > 0.5, self.intervention_high, self.intervention_low)
            concepts = torch.where(intervention.mask, written, logits)
        return ConceptOutput(self.head(concepts), concepts, logits, torch.sigmoid(logits))

    def concept_effects(self, z: Tensor, intervention: Intervention | None = None) -> ConceptEffects:
        """Closed form: writing v into axis ``i`` moves the logits by (v - current_i) * W_head[:, i]."""
        output = self.decode(z, intervention)
        return ConceptEffects.of_linear_head(output.task_logits, output.bottleneck, self.intervention_low,
                                             self.intervention_high, self.head.weight.T)

    def concept_parameters(self) -> list[nn.Parameter]:
        return [self.projection.weight]

    def calibrate_interventions(self, train_concept_logits: Tensor) -> None:
        """Store the 5th / 95th percentiles of each axis's standardised training activations."""
        store_percentiles(train_concept_logits, self.intervention_low, self.intervention_high)


@register_model()
def lfcbm(*, in_features: int, n_concepts: int, n_classes: int) -> LabelFreeCBM:
    """An untrained label-free CBM on embeddings of width ``in_features``; fit it with
    ``conceptlab.training.fit_label_free`` (which also chooses ``n_concepts`` by filtering).

    Args:
        in_features: Width of the backbone embeddings.
        n_concepts: Number of concept axes.
        n_classes: Number of task classes (2: one binary logit).

    Returns:
        The model; ``build_spec`` records the call.

    Raises:
        ValueError: A size that is not a whole number >= 1.

    Examples:
        >>> from conceptlab.models import lfcbm
        >>> lfcbm(in_features=8, n_concepts=3, n_classes=2)(torch.randn(4, 8)).task_logits.shape
        torch.Size([4, 1])
    """
    return LabelFreeCBM(in_features=in_features, n_concepts=n_concepts, n_classes=n_classes)
