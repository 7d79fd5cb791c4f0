"""Intervention-aware Concept Embedding Models (IntCEM; Espinosa Zarlenga et al., NeurIPS 2023).

An IntCEM is a CEM with one more part: a policy network that, given the concept embeddings so
far and which concepts have been corrected, scores the intervention units (concept groups or
single concepts) by how much correcting each next should help. It is trained with sampled
intervention trajectories (``conceptlab.training.intcem``) and serves at test time as the
``"learned"`` intervention policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from .base import Intervention, check_sizes
from .cem import ConceptEmbeddingModel
from .concept_types import concept_probabilities
from .encoders import encoder
from .registry import register_model


def policy_network(in_features: int, hidden: Sequence[int], n_units: int) -> nn.Sequential:
    """Batch-normalised MLP: BatchNorm1d before every Linear, LeakyReLU between them."""
    widths = [in_features, *hidden, n_units]
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.BatchNorm1d(width_in), nn.Linear(width_in, width_out)]
        if index < len(widths) - 2:
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


class InterventionAwareCEM(ConceptEmbeddingModel):
    """CEM (one scorer per concept) plus a policy network over intervention ``units`` (G, k).

    ``unit_scores(context, intervention)`` returns (B, G) logits: which unit to correct next. Its
    input is the flattened concept embeddings with the intervention applied and the 0/1 mask of
    the concepts corrected so far.

    Args:
        encoder: The network from inputs to its latent code (``mlp`` or an image backbone with an MLP).
        latent_dim: Width of the latent code h.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        units: (G, k) boolean membership of the units its learned policy ranks.
        embedding_size: m, the size of each concept embedding.
        policy_hidden: Widths of the policy MLP's hidden layers.
        categorical: Member indices of each categorical concept (a softmax over its members).
        continuous: Indices of the continuous concepts (regressed values).

    Examples:
        >>> from conceptlab.models import InterventionAwareCEM
        >>> model = InterventionAwareCEM(torch.nn.Linear(4, 8), latent_dim=8, n_concepts=3, n_classes=2,
        ...                              units=torch.eye(3, dtype=torch.bool), embedding_size=4, policy_hidden=(8,))
        >>> model(torch.randn(2, 4)).task_logits.shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        latent_dim: int,
        n_concepts: int,
        n_classes: int,
        units: Tensor,
        embedding_size: int = 16,
        policy_hidden: Sequence[int] = (256, 128),
        categorical: Sequence[Sequence[int]] = (),
        continuous: Sequence[int] = (),
    ):
        super().__init__(encoder, latent_dim=latent_dim, n_concepts=n_concepts, n_classes=n_classes,
                         embedding_size=embedding_size, shared_scorer=False, categorical=categorical,
                         continuous=continuous)
        units = torch.as_tensor(units).bool()
        if units.ndim != 2 or units.shape[1] != n_concepts or not units.any(1).all():
            raise ValueError(f"units must be a (n_units, n_concepts={n_concepts}) boolean matrix with at least one "
                             f"concept per unit; got shape {tuple(units.shape)}")
        self.register_buffer("units", units)
        self.policy = policy_network(n_concepts * (embedding_size + 1), policy_hidden, units.shape[0])

    def concept_parameters(self) -> list[nn.Parameter]:
        """The input-to-concept part, policy network excluded."""
        policy = {id(p) for p in self.policy.parameters()}
        return [p for p in super().concept_parameters() if id(p) not in policy]

    def unit_scores(self, context: Tensor, intervention: Intervention | None = None) -> Tensor:
        """Policy logits (B, G) for the next unit to correct, given the intervention so far."""
        probs = concept_probabilities(self.concept_logits(context), self.categorical, self.continuous)
        mask = intervention.mask.to(probs.dtype) if intervention is not None else torch.zeros_like(probs)
        return self.policy_logits(context, self.mixture(probs, intervention, context), mask)

    def policy_logits(self, context: Tensor, mix: Tensor, corrected: Tensor) -> Tensor:
        """Policy logits from mixing weights (B, k) and a 0/1 mask (B, k) of corrected concepts;
        differentiable in both (training propagates through sampled corrections)."""
        embeddings = rearrange(self.embed(context, mix), "b k m -> b (k m)")
        return self.policy(torch.cat([embeddings, corrected.to(embeddings.dtype)], dim=1))


@register_model(not_saved=("backbone_weights",))
def intcem(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    units: Tensor | None = None,
    embedding_size: int = 16,
    latent_dim: int = 128,
    hidden: Sequence[int] = (128, 128),
    policy_hidden: Sequence[int] = (256, 128),
    backbone: str | None = None,
    backbone_weights: str | None = None,
    categorical: Sequence[Sequence[int]] = (),
    continuous: Sequence[int] = (),
) -> InterventionAwareCEM:
    """IntCEM with the CEM encoder; ``units`` (G, k) are the intervention units its policy ranks
    (default: every concept on its own; pass ``info.group_matrix()`` for concept groups).

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``: the backbone decides).
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit, see ``models.heads``).
        units: (G, k) boolean membership of the intervention units the learned policy ranks.
        embedding_size: m, the size of each concept's embedding.
        latent_dim: Width of the shared latent code the concept embeddings are computed from.
        hidden: Widths of the MLP encoder's hidden layers.
        policy_hidden: Widths of the policy MLP's hidden layers.
        backbone: An image backbone name (e.g. ``"resnet18"``) under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights (nothing is downloaded).
        categorical: Member indices of each categorical concept (``ConceptInfo.categorical_indices()``):
            a softmax over its members instead of a sigmoid per member.
        continuous: Indices of the continuous concepts (``ConceptInfo.continuous_indices()``): regressed values.

    Returns:
        The untrained model; ``build_spec`` records the call.

    Raises:
        ValueError: A size is not a whole number >= 1, or ``units`` does not cover the k concepts.

    Examples:
        >>> from conceptlab.models import intcem
        >>> groups = torch.tensor([[1, 1, 0], [0, 0, 1]], dtype=torch.bool)  # two units: concepts {0, 1} and {2}
        >>> model = intcem(in_features=4, n_concepts=3, n_classes=2, units=groups, embedding_size=4, latent_dim=8, hidden=(8,))
        >>> model(torch.randn(2, 4)).concept_probs.shape
        torch.Size([2, 3])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes, embedding_size=embedding_size)  # in_features: by the encoder
    units = torch.eye(n_concepts, dtype=torch.bool) if units is None else torch.as_tensor(units).bool()
    return InterventionAwareCEM(
        encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim, n_concepts=n_concepts, n_classes=n_classes,
        units=units, embedding_size=embedding_size, policy_hidden=policy_hidden, categorical=categorical,
        continuous=continuous,
    )
