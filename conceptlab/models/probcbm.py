"""Probabilistic Concept Bottleneck Models (Kim et al., ICML 2023).

Each concept i of an input is a Gaussian in a D-dimensional embedding space, z_i ~ N(mu_i(x),
diag sigma_i^2(x)), with mu_i on the unit sphere. Every concept has two learned anchors on the
sphere, a_i+ ("present") and a_i- ("absent"); a sample z_i says "present" with probability

    p(c_i = 1 | z_i) = sigmoid(s (|z_i - a_i-| - |z_i - a_i+|)),

s a learned distance scale, and the concept probability is its mean over the samples. The task
head maps the k concatenated concept samples to a class embedding, W [z_1 ... z_k], and scores
class j by -t * rms(W z - g_j) against learned class anchors g_j (t a learned scale); the class
distribution is the softmax averaged over the samples. Training adds the variational information
bottleneck's KL(N(mu_i, sigma_i^2) || N(0, I)), weighted by ``kl_weight`` (the authors' 5e-5).
An intervention replaces a corrected concept's samples by its label's anchor and its variance by
zero. The per-concept uncertainty, exp(mean_d log sigma_id^2), orders the ``concept-uncertainty``
intervention policy.

Training draws ``samples`` embeddings per concept; evaluation uses the means (the authors' default),
so predictions and intervention curves are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .base import ConceptModel, ConceptOutput, Intervention, check_sizes
from .encoders import encoder, mlp
from .heads import mean_over_samples, task_loss
from .registry import register_model

LOG_VARIANCE_MAX = 10.0  # the authors' clip of the predicted log-variance
LOG_VARIANCE_MIN = -60.0  # a floor they do not have: a standard deviation of 1e-13 changes no prediction, and the
# KL read back from the standard deviation (ConceptOutput.concept_scale) would otherwise underflow to log(0)
INITIAL_SCALE = 5.0  # the authors' initial concept and class distance scales


class ProbabilisticConceptBottleneckModel(ConceptModel):
    """x -> latent code -> per concept a Gaussian embedding -> distances to anchors -> class anchors.

    ``encode`` returns the latent code; ``decode`` draws the concept embeddings (their means in
    evaluation), applies an intervention and scores concepts and classes. ``concept_logits`` are
    the logits of the sample-averaged concept probabilities, ``concept_samples`` the per-sample
    logits (B, k, S), ``concept_embeddings`` the concept means (B, k, D), ``concept_scale`` their
    standard deviations (B, k, D), ``concept_uncertainty`` exp(mean log-variance) per concept (0
    where corrected) and ``bottleneck`` the sample-averaged flattened embedding the head read.

    Args:
        encoder: The network from inputs to the latent code.
        latent_dim: Width of the latent code.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit, the difference of the two class scores).
        embedding_size: D, the size of each concept embedding (the authors' 16).
        class_embedding_size: Size of the class embedding space (the authors' 128).
        samples: Embeddings drawn per concept in training (the authors' 50).
        kl_weight: Weight of the KL term (the authors' 5e-5).
        head_hidden: Widths of hidden ReLU layers before the class embedding (none: the authors' linear
            map; a task like XOR of corrected concepts, whose embeddings are the anchors, needs one).
        anchor_weight: Weight of the task loss on the true concepts' anchors (``concept_objective``).

    Examples:
        >>> from conceptlab.models import ProbabilisticConceptBottleneckModel
        >>> model = ProbabilisticConceptBottleneckModel(torch.nn.Linear(4, 8), latent_dim=8, n_concepts=3, n_classes=5)
        >>> model.eval()(torch.randn(2, 4)).concept_uncertainty.shape
        torch.Size([2, 3])
    """

    reports_uncertainty = True

    def __init__(
        self,
        encoder: nn.Module,
        *,
        latent_dim: int,
        n_concepts: int,
        n_classes: int,
        embedding_size: int = 16,
        class_embedding_size: int = 128,
        samples: int = 50,
        kl_weight: float = 5e-5,
        head_hidden: Sequence[int] = (),
        anchor_weight: float = 1.0,
    ):
        super().__init__()
        check_sizes(n_concepts=n_concepts, embedding_size=embedding_size, class_embedding_size=class_embedding_size,
                    samples=samples)
        if kl_weight < 0 or anchor_weight < 0:
            raise ValueError(f"kl_weight and anchor_weight must be >= 0; got {kl_weight}, {anchor_weight}")
        self.anchor_weight = anchor_weight
        self.encoder = encoder
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.embedding_size = embedding_size
        self.samples = samples
        self.kl_weight = kl_weight
        self.mean = nn.Linear(latent_dim, n_concepts * embedding_size)
        self.log_variance = nn.Linear(latent_dim, n_concepts * embedding_size)
        self.anchors = nn.Parameter(nn.init.trunc_normal_(torch.empty(2, n_concepts, embedding_size),
                                                          std=1 / math.sqrt(embedding_size)))  # (absent, present)
        self.concept_scale = nn.Parameter(torch.tensor(INITIAL_SCALE))
        self.head = ClassAnchorHead(n_concepts * embedding_size, class_embedding_size, max(n_classes, 2), hidden=head_hidden)

    def encode(self, x: Tensor) -> Tensor:
        """The latent code (B, latent_dim)."""
        return self.encoder(x)

    def gaussian(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """The concept embeddings' means (B, k, D), unit length, and log-variances (B, k, D)."""
        mean = F.normalize(rearrange(self.mean(latent), "b (k d) -> b k d", k=self.n_concepts), dim=-1)
        log_variance = rearrange(self.log_variance(latent), "b (k d) -> b k d", k=self.n_concepts)
        return mean, log_variance.clamp(LOG_VARIANCE_MIN, LOG_VARIANCE_MAX)

    def decode(self, latent: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        mean, log_variance = self.gaussian(latent)
        anchors = F.normalize(self.anchors, dim=-1)
        if self.training:
            noise = torch.randn(*mean.shape[:2], self.samples, self.embedding_size, device=mean.device, dtype=mean.dtype)
            embeddings = mean.unsqueeze(2) + noise * (0.5 * log_variance).exp().unsqueeze(2)  # (B, k, S, D)
        else:
            embeddings = mean.unsqueeze(2)
        sample_logits = self.concept_scale * (_distance(embeddings, anchors[0]) - _distance(embeddings, anchors[1]))  # (B, k, S)
        # the logit of p = mean_s sigmoid(l_s): log p - log(1 - p), each a log-mean-exp (the 1/S cancels)
        logits = torch.logsumexp(F.logsigmoid(sample_logits), -1) - torch.logsumexp(F.logsigmoid(-sample_logits), -1)
        probs = torch.sigmoid(logits)
        uncertainty = log_variance.mean(-1).exp()
        if intervention is not None:
            intervention = self.check_intervention(intervention, latent)
            corrected = intervention.mask
            chosen = torch.where(intervention.values.unsqueeze(-1) > 0.5, anchors[1], anchors[0])  # (B, k, D)
            embeddings = torch.where(corrected[..., None, None], chosen.unsqueeze(2), embeddings)
            uncertainty = uncertainty.masked_fill(corrected, 0.0)
        flat = rearrange(embeddings, "b k s d -> b s (k d)")
        task_logits = self._task_logits(flat)
        return ConceptOutput(task_logits, flat.mean(1), logits, probs, mean, concept_samples=sample_logits,
                             concept_scale=(0.5 * log_variance).exp(), concept_uncertainty=uncertainty)

    def _task_logits(self, flat: Tensor) -> Tensor:
        """Task logits from (B, S, k * D) embedding samples: the class distribution averaged over
        the samples (one logit for a binary task: the difference of the two classes' log-probabilities)."""
        logits = mean_over_samples(self.head(flat))
        return logits[:, 1:] - logits[:, :1] if self.n_classes == 2 else logits

    def concept_objective(self, output: ConceptOutput, c: Tensor, pos_weight: Tensor | None = None, *,
                          y: Tensor | None = None) -> dict[str, Tensor]:
        """``kl``: the weighted KL divergence of each concept's Gaussian from N(0, I), summed over
        the embedding dimensions and averaged over samples and concepts; ``anchored``: the weighted
        task loss of the head on the anchors of the true concepts (a missing label takes the anchor
        of the predicted one), which the authors reach by replacing all of a sample's concept
        embeddings by those anchors in half of the training draws. The concept loss is the standard
        one on the sample-averaged probabilities."""
        terms: dict[str, Tensor] = {}
        if self.kl_weight:
            mean, log_variance = output.concept_embeddings, 2 * output.concept_scale.log()
            kl = -0.5 * (1 + log_variance - mean.square() - log_variance.exp()).sum(-1)
            terms["kl"] = self.kl_weight * kl.mean()
        if self.anchor_weight and y is not None:
            truth = torch.where(torch.isnan(c), output.concept_probs > 0.5, c > 0.5)
            anchors = F.normalize(self.anchors, dim=-1)
            embeddings = torch.where(truth.unsqueeze(-1), anchors[1], anchors[0])  # (B, k, D)
            terms["anchored"] = self.anchor_weight * task_loss(self._task_logits(rearrange(embeddings, "b k d -> b 1 (k d)")), y)
        return terms


def _distance(embeddings: Tensor, anchor: Tensor) -> Tensor:
    """Euclidean distances (B, k, S) of embedding samples (B, k, S, D) from one anchor per concept (k, D)."""
    return (embeddings - anchor.unsqueeze(1)).square().sum(-1).add(1e-6).sqrt()


class ClassAnchorHead(nn.Module):
    """Class scores from concept embeddings: -t * rms(W z - g_j) for each class anchor g_j.

    Args:
        in_features: Width of the concatenated concept embeddings (k * D).
        class_embedding_size: Width of the class embedding space.
        n_anchors: Number of class anchors (classes; 2 for a binary task).
        hidden: Widths of hidden ReLU layers before the linear map to the class embedding.
    """

    def __init__(self, in_features: int, class_embedding_size: int, n_anchors: int, *, hidden: Sequence[int] = ()):
        super().__init__()
        self.project = mlp(in_features, class_embedding_size, hidden, activation=nn.ReLU)
        self.class_anchors = nn.Parameter(torch.randn(n_anchors, class_embedding_size))
        self.scale = nn.Parameter(torch.tensor(INITIAL_SCALE))

    def forward(self, embeddings: Tensor) -> Tensor:
        """(..., k * D) concept embeddings -> (..., n_anchors) class scores."""
        projected = self.project(embeddings).unsqueeze(-2)
        return -self.scale * (projected - self.class_anchors).square().mean(-1).add(1e-10).sqrt()


@register_model(not_saved=("backbone_weights",))
def probcbm(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    embedding_size: int = 16,
    class_embedding_size: int = 128,
    latent_dim: int = 128,
    hidden: Sequence[int] = (128, 128),
    samples: int = 50,
    kl_weight: float = 5e-5,
    head_hidden: Sequence[int] = (),
    anchor_weight: float = 1.0,
    backbone: str | None = None,
    backbone_weights: str | None = None,
) -> ProbabilisticConceptBottleneckModel:
    """A ProbCBM with an MLP encoder (optionally on an image backbone); binary concepts, a multiclass task.

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``).
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        embedding_size: D, the size of each concept embedding.
        class_embedding_size: Size of the class embedding space.
        latent_dim: Width of the latent code the concept Gaussians are computed from.
        hidden: Widths of the MLP encoder's hidden layers.
        samples: Embeddings drawn per concept in training.
        kl_weight: Weight of the KL term of the variational information bottleneck.
        head_hidden: Widths of hidden ReLU layers before the class embedding (none: the authors' linear map).
        anchor_weight: Weight of the task loss on the true concepts' anchors.
        backbone: An image backbone name under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights.

    Returns:
        The untrained model; ``build_spec`` records the call.

    Raises:
        ValueError: A size that is not a whole number >= 1, or a negative ``kl_weight``.

    Examples:
        >>> from conceptlab.models import probcbm
        >>> model = probcbm(in_features=4, n_concepts=3, n_classes=2, latent_dim=8, hidden=(8,), samples=5)
        >>> model(torch.randn(6, 4)).task_logits.shape  # binary: one logit
        torch.Size([6, 1])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes, latent_dim=latent_dim)
    return ProbabilisticConceptBottleneckModel(
        encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim, n_concepts=n_concepts,
        n_classes=n_classes, embedding_size=embedding_size, class_embedding_size=class_embedding_size, samples=samples,
        kl_weight=kl_weight, head_hidden=head_hidden, anchor_weight=anchor_weight,
    )
