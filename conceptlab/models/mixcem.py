"""Mixture of Concept Embeddings Models (Espinosa Zarlenga et al., ICML 2025).

A CEM's embeddings carry whatever the encoder saw, including what the concepts do not say
("leakage"). In distribution that helps; on shifted inputs it poisons interventions: a corrected
concept still carries an embedding read from an input the model does not understand. MixCEM
splits each concept's embedding into a part that depends on the input and one that does not:

    positive_i = g_i+ + s_i * r_i+(x),    negative_i = g_i- + s_i * r_i-(x),
    embedding_i = p_i * positive_i + (1 - p_i) * negative_i,

where g_i+/- are learned global embeddings (one pair per concept), r_i(x) the residual a CEM
would compute, and s_i = 1 - H(p_i) (H the binary entropy in bits) scales the residual down the
less sure the model is of the concept, which is where inputs are unfamiliar. The concept
probability reads both parts, p_i = sigmoid(a_i * score(g_i + r_i(x)) + b_i), with Platt scale
a_i and bias b_i fitted after training on the validation split (``calibrate_concepts``), so that
p (and with it s) is calibrated.

In training each residual is dropped with probability ``dropout`` (per sample and concept), so
the head learns to predict from the global embeddings alone, and a prior term trains the head on
the true concepts' global embeddings, CE(head(c g+ + (1 - c) g-), y). In evaluation the residual
is scaled by its keep probability 1 - ``dropout``: for the linear head this is the exact mean of
the task logits over dropout masks, which the authors estimate with 50 Monte Carlo draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..info import TaskKind
from .base import ConceptEffects, ConceptOutput, Intervention, check_sizes, encode_all
from .calibration import fit_platt
from .cem import ConceptEmbeddingModel
from .encoders import encoder
from .heads import task_loss
from .registry import register_model


def binary_entropy(probs: Tensor) -> Tensor:
    """The entropy of Bernoulli(p) in bits: 0 at p = 0 or 1, 1 at p = 1/2."""
    p = probs.clamp(1e-6, 1 - 1e-6)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


class MixtureConceptEmbeddingModel(ConceptEmbeddingModel):
    """A CEM whose embeddings are a global part plus a residual scaled by the concept's certainty.

    ``encode`` returns the residual contexts r(x) (B, k, 2m), as a CEM's; ``decode`` adds the
    global embeddings, scores and calibrates the concepts, scales the residuals and mixes.
    An intervention sets the mixing weight p_i to the label, as in a CEM; the residual's scale
    s_i stays the one the model's own prediction gave (the authors' rule). The head is linear,
    so concept effects have the CEM's closed form.

    Args:
        encoder: The network from inputs to the latent code.
        latent_dim: Width of the latent code.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        embedding_size: m, the size of each concept embedding.
        dropout: Probability of dropping a concept's residual in training (the authors' 0.5).
        prior_weight: Weight of the prior term, the task loss on the true concepts' global embeddings
            (the authors' 1).
        task: ``multiclass``, ``multilabel`` or ``regression`` (``models.heads``).

    Examples:
        >>> from conceptlab.models import MixtureConceptEmbeddingModel
        >>> model = MixtureConceptEmbeddingModel(torch.nn.Linear(4, 8), latent_dim=8, n_concepts=3, n_classes=2, embedding_size=5)
        >>> model.eval()(torch.randn(2, 4)).concept_embeddings.shape
        torch.Size([2, 3, 5])
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        latent_dim: int,
        n_concepts: int,
        n_classes: int,
        embedding_size: int = 16,
        dropout: float = 0.5,
        prior_weight: float = 1.0,
        task: TaskKind = "multiclass",
    ):
        super().__init__(encoder, latent_dim=latent_dim, n_concepts=n_concepts, n_classes=n_classes,
                         embedding_size=embedding_size, task=task)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
        if prior_weight < 0:
            raise ValueError(f"prior_weight must be >= 0; got {prior_weight}")
        self.dropout = dropout
        self.prior_weight = prior_weight
        self.global_embeddings = nn.Parameter(torch.randn(n_concepts, 2 * embedding_size))  # (g+ | g-) per concept
        self.register_buffer("platt_scale", torch.ones(n_concepts))
        self.register_buffer("platt_bias", torch.zeros(n_concepts))

    def raw_concept_logits(self, context: Tensor) -> Tensor:
        """Concept scores (B, k) before Platt scaling, from the global and residual parts together."""
        return super().concept_logits(context + self.global_embeddings)

    def concept_logits(self, context: Tensor) -> Tensor:
        """Calibrated concept logits (B, k): a_i * score + b_i."""
        return self.platt_scale * self.raw_concept_logits(context) + self.platt_bias

    def residual_scale(self, probs: Tensor) -> Tensor:
        """s_i times the residual's keep mask (B, k): a Bernoulli(1 - dropout) draw per sample and
        concept in training, its mean 1 - dropout in evaluation."""
        scale = 1 - binary_entropy(probs)
        if not self.training:
            return scale * (1 - self.dropout)
        keep = torch.rand_like(scale) >= self.dropout
        return scale * keep

    def parts(self, context: Tensor, probs: Tensor) -> tuple[Tensor, Tensor]:
        """The positive and negative embeddings (B, k, m) each: global plus scaled residual."""
        mixed = self.global_embeddings + self.residual_scale(probs).unsqueeze(-1) * context
        return mixed.split(self.embedding_size, dim=-1)

    def decode(self, context: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        logits = self.concept_logits(context)
        probs = torch.sigmoid(logits)
        positive, negative = self.parts(context, probs)
        mix = self.mixture(probs, intervention, context).unsqueeze(-1)
        embeddings = mix * positive + (1 - mix) * negative
        bottleneck = rearrange(embeddings, "b k m -> b (k m)")
        return ConceptOutput(self.head(bottleneck), bottleneck, logits, probs, embeddings)

    def concept_effects(self, context: Tensor, intervention: Intervention | None = None) -> ConceptEffects:
        """Closed form: setting concept ``i`` to v moves the logits by (v - mix_i) * W_i (positive_i - negative_i)."""
        probs = torch.sigmoid(self.concept_logits(context))
        positive, negative = self.parts(context, probs)
        mix = self.mixture(probs, intervention, context)
        weight = rearrange(self.head.weight, "t (k m) -> k m t", k=self.n_concepts)
        direction = torch.einsum("bkm,kmt->bkt", positive - negative, weight)
        embeddings = mix.unsqueeze(-1) * positive + (1 - mix.unsqueeze(-1)) * negative
        logits = self.head(rearrange(embeddings, "b k m -> b (k m)"))
        return ConceptEffects(logits, -mix.unsqueeze(-1) * direction, (1 - mix).unsqueeze(-1) * direction)

    def concept_objective(self, output: ConceptOutput, c: Tensor, pos_weight: Tensor | None = None, *,
                          y: Tensor | None = None) -> dict[str, Tensor]:
        """``prior``: the weighted task loss of the head on the global embeddings of the true
        concepts (a missing label takes the model's probability); the concept loss is the standard one."""
        if not self.prior_weight or y is None:
            return {}
        truth = torch.where(torch.isnan(c), output.concept_probs, c.to(output.concept_probs.dtype)).unsqueeze(-1)
        positive, negative = self.global_embeddings.split(self.embedding_size, dim=-1)
        embeddings = truth * positive + (1 - truth) * negative
        logits = self.head(rearrange(embeddings, "b k m -> b (k m)"))
        return {"prior": self.prior_weight * task_loss(logits, y, task=self.task)}

    @torch.no_grad()
    def calibrate_concepts(self, inputs: Tensor | Dataset, c: Tensor) -> None:
        """Fit each concept's Platt scale and bias on held-out inputs and their concept labels (the
        validation split), the encoder and everything else fixed (``calibration.fit_platt``).

        Args:
            inputs: (N, ...) inputs, or a dataset of image items.
            c: (N, k) their concept labels (NaN where missing).
        """
        scale, bias = fit_platt(self.raw_concept_logits(encode_all(self, inputs)), c)
        self.platt_scale.copy_(scale)
        self.platt_bias.copy_(bias)


@register_model(not_saved=("backbone_weights",))
def mixcem(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    embedding_size: int = 16,
    latent_dim: int = 128,
    hidden: Sequence[int] = (128, 128),
    dropout: float = 0.5,
    prior_weight: float = 1.0,
    backbone: str | None = None,
    backbone_weights: str | None = None,
    task: TaskKind = "multiclass",
) -> MixtureConceptEmbeddingModel:
    """A MixCEM with the CEM's MLP encoder (optionally on an image backbone); binary concepts.

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``).
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        embedding_size: m, the size of each concept embedding.
        latent_dim: Width of the latent code the residual embeddings are computed from.
        hidden: Widths of the MLP encoder's hidden layers.
        dropout: Probability of dropping a concept's residual in training (the authors' 0.5).
        prior_weight: Weight of the task loss on the true concepts' global embeddings (the authors' 1).
        backbone: An image backbone name under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights.
        task: ``multiclass``, ``multilabel`` or ``regression``.

    Returns:
        The untrained model; ``build_spec`` records the call.

    Raises:
        ValueError: A size that is not a whole number >= 1, or a dropout outside [0, 1).

    Examples:
        >>> from conceptlab.models import mixcem
        >>> model = mixcem(in_features=4, n_concepts=3, n_classes=5, embedding_size=8, latent_dim=16, hidden=(16,))
        >>> model(torch.randn(2, 4)).task_logits.shape
        torch.Size([2, 5])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes, embedding_size=embedding_size)
    return MixtureConceptEmbeddingModel(
        encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim, n_concepts=n_concepts,
        n_classes=n_classes, embedding_size=embedding_size, dropout=dropout, prior_weight=prior_weight, task=task,
    )

