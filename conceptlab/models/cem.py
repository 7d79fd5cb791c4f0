"""Concept Embedding Models (Espinosa Zarlenga et al., NeurIPS 2022)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..info import TaskKind
from .base import ConceptEffects, ConceptModel, ConceptOutput, Intervention, check_sizes
from .concept_types import check_categorical, check_continuous, concept_probabilities
from .encoders import encoder
from .heads import task_outputs
from .registry import register_model


class ConceptEmbeddingModel(ConceptModel):
    """x -> latent h -> per concept a positive and a negative embedding (m each) -> mixture -> task.

    Concept ``i`` gets a context ``LeakyReLU(W_i h + b_i)`` of size 2m (all concepts in one batched
    product), one scorer shared by all concepts turns the context into the probability ``p_i``,
    and the concept embedding is ``p_i * c_i+ + (1 - p_i) * c_i-``. An intervention sets ``p_i``
    before mixing. The task head is one Linear layer over the k*m concatenated embeddings.
    ``shared_scorer=False`` gives every concept its own scorer (IntCEM's choice).

    Args:
        encoder: The network from inputs to its latent code (``mlp`` or an image backbone with an MLP).
        latent_dim: Width of the latent code h.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        embedding_size: m, the size of each concept embedding.
        shared_scorer: One probability scorer for all concepts (False: one per concept).
        categorical: Member indices of each categorical concept (a softmax over its members).
        continuous: Indices of the continuous concepts: the scorer regresses the value v and the
            embedding is ``v * positive + (1 - v) * negative`` (affine in v).
        task: ``multiclass``, ``multilabel`` or ``regression`` (``models.heads``).

    Examples:
        >>> from conceptlab.models import ConceptEmbeddingModel
        >>> model = ConceptEmbeddingModel(torch.nn.Linear(4, 8), latent_dim=8, n_concepts=3, n_classes=2, embedding_size=5)
        >>> model(torch.randn(2, 4)).bottleneck.shape  # k * m
        torch.Size([2, 15])
    """

    additive_effects = True  # a linear head over per-concept embeddings: corrections add up

    def __init__(
        self,
        encoder: nn.Module,
        *,
        latent_dim: int,
        n_concepts: int,
        n_classes: int,
        embedding_size: int = 16,
        shared_scorer: bool = True,
        categorical: Sequence[Sequence[int]] = (),
        continuous: Sequence[int] = (),
        task: TaskKind = "multiclass",
    ):
        super().__init__()
        if n_concepts < 1 or embedding_size < 1:
            raise ValueError(f"need n_concepts >= 1 and embedding_size >= 1; got {n_concepts}, {embedding_size}")
        self.encoder = encoder
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.embedding_size = embedding_size
        self.categorical = check_categorical(categorical, n_concepts)
        self.continuous = check_continuous(continuous, n_concepts, self.categorical)
        self.task = task
        bound = 1 / math.sqrt(latent_dim)  # nn.Linear's default initialisation, per concept
        bound_m = 1 / math.sqrt(2 * embedding_size)
        self.context_weight = nn.Parameter(torch.empty(n_concepts, latent_dim, 2 * embedding_size).uniform_(-bound, bound))
        self.context_bias = nn.Parameter(torch.empty(n_concepts, 2 * embedding_size).uniform_(-bound, bound))
        if shared_scorer:
            self.scorer_weight = nn.Parameter(torch.empty(1, 2 * embedding_size).uniform_(-bound_m, bound_m))
            self.scorer_bias = nn.Parameter(torch.empty(1).uniform_(-bound_m, bound_m))
        else:
            self.scorer_weight = nn.Parameter(torch.empty(n_concepts, 2 * embedding_size).uniform_(-bound_m, bound_m))
            self.scorer_bias = nn.Parameter(torch.empty(n_concepts).uniform_(-bound_m, bound_m))
        self.head = nn.Linear(n_concepts * embedding_size, task_outputs(n_classes, task))

    def encode(self, x: Tensor) -> Tensor:
        """Per-concept contexts (B, k, 2m): positive and negative embedding halves."""
        latent = self.encoder(x)
        return F.leaky_relu(torch.einsum("bh,khe->bke", latent, self.context_weight) + self.context_bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before per-concept scorers existed kept one nn.Linear named ``scorer``
        for old, new in (("scorer.weight", "scorer_weight"), ("scorer.bias", "scorer_bias")):
            if prefix + old in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def concept_logits(self, context: Tensor) -> Tensor:
        """Concept logits (B, k) from the contexts."""
        if self.scorer_weight.shape[0] == 1:  # shared: the same kernel as an nn.Linear, so results stay bitwise equal
            return F.linear(context, self.scorer_weight, self.scorer_bias).squeeze(-1)
        return torch.einsum("bke,ke->bk", context, self.scorer_weight) + self.scorer_bias

    def mixture(self, probs: Tensor, intervention: Intervention | None, like: Tensor) -> Tensor:
        """The mixing weight of every embedding: the probability, or the intervened label."""
        if intervention is None:
            return probs
        intervention = self.check_intervention(intervention, like)
        return torch.where(intervention.mask, intervention.values.to(probs.dtype), probs)

    def embed(self, context: Tensor, mix: Tensor) -> Tensor:
        """Concept embeddings (B, k, m): ``mix * positive + (1 - mix) * negative``."""
        positive, negative = context.split(self.embedding_size, dim=-1)
        mix = mix.unsqueeze(-1)
        return mix * positive + (1 - mix) * negative

    def decode(self, context: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        logits = self.concept_logits(context)
        probs = concept_probabilities(logits, self.categorical, self.continuous)
        embeddings = self.embed(context, self.mixture(probs, intervention, context))
        bottleneck = rearrange(embeddings, "b k m -> b (k m)")
        return ConceptOutput(self.head(bottleneck), bottleneck, logits, probs, embeddings)

    def concept_effects(self, context: Tensor, intervention: Intervention | None = None) -> ConceptEffects:
        """Closed form: setting concept ``i`` to v moves the logits by (v - mix_i) * W_i (c_i+ - c_i-)."""
        probs = concept_probabilities(self.concept_logits(context), self.categorical, self.continuous)
        mix = self.mixture(probs, intervention, context)
        positive, negative = context.split(self.embedding_size, dim=-1)
        weight = rearrange(self.head.weight, "t (k m) -> k m t", k=self.n_concepts)
        direction = torch.einsum("bkm,kmt->bkt", positive - negative, weight)
        logits = self.head(rearrange(self.embed(context, mix), "b k m -> b (k m)"))
        return ConceptEffects(logits, -mix.unsqueeze(-1) * direction, (1 - mix).unsqueeze(-1) * direction)


@register_model(not_saved=("backbone_weights",))
def cem(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    embedding_size: int = 16,
    latent_dim: int = 128,
    hidden: Sequence[int] = (128, 128),
    backbone: str | None = None,
    backbone_weights: str | None = None,
    categorical: Sequence[Sequence[int]] = (),
    continuous: Sequence[int] = (),
    task: TaskKind = "multiclass",
) -> ConceptEmbeddingModel:
    """CEM with the MLP encoder of the CEM paper (m = 128 in its synthetic experiments, 16 on CUB).

    With ``backbone`` the MLP sits on an image backbone (``in_features`` is then ignored).

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``: the backbone decides).
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit, see ``models.heads``).
        embedding_size: m, the size of each concept's embedding.
        latent_dim: Width of the shared latent code the concept embeddings are computed from.
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
        >>> from conceptlab.models import cem
        >>> model = cem(in_features=4, n_concepts=3, n_classes=5, embedding_size=8, latent_dim=16, hidden=(16,))
        >>> model(torch.randn(2, 4)).task_logits.shape
        torch.Size([2, 5])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes, embedding_size=embedding_size)  # in_features: by the encoder
    return ConceptEmbeddingModel(
        encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim, n_concepts=n_concepts, n_classes=n_classes,
        embedding_size=embedding_size, categorical=categorical,
        continuous=continuous, task=task,
    )
