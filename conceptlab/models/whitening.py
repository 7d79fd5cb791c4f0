"""Concept whitening (Chen, Bei and Rudin, Nature Machine Intelligence 2020).

A concept whitening layer replaces a batch-normalisation layer anywhere in a network. It
whitens its input, z = W (x - mu) with W Sigma W^T = I (the mean and W from the batch in
training, running averages in evaluation), and rotates it by an orthogonal Q, so the output's
axes are decorrelated and of unit variance. Q is trained so that axis j lines up with concept j:
it maximises the mean activation along q_j of the examples that have concept j,

    max_Q  sum_j mean_{x : c_j(x) = 1} q_j^T z(x),   Q^T Q = I,

while the rest of the network trains on the task with Q held fixed. W is computed by IterNorm's
Newton iterations (Huang et al., CVPR 2019), as the authors' layer does: with Sigma_N = Sigma /
tr(Sigma), P_0 = I and P_{t+1} = (3 P_t - P_t^3 Sigma_N) / 2, W = P_T / sqrt(tr(Sigma)). For feature
maps (B, C, H, W) every pixel is a sample of the C channels and an axis's activation is its
spatial mean.

Evaluation whitens with W computed from a running average of the covariance; the authors keep a
running average of W itself, with 10 iterations and momentum 0.05. Those settings were tried first
on the unit tests' XOR fixture (1,500 samples, seed 0): the whitening of evaluation then scaled
near-empty directions of the MLP code by about a thousand and the axes lost the concepts (AUC 0.25 to
0.6), while IterNorm's own 5 iterations and momentum 0.1 kept them (AUC 0.99 and 1.0); so those are
the defaults here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal
from torch.utils.data import Dataset

from ..runtime import evaluating
from .base import ConceptModel, ConceptOutput, Intervention, check_sizes, encode_all
from .calibration import fit_platt
from .cbm import store_percentiles
from .encoders import encoder, mlp
from .heads import task_outputs
from .registry import register_model

EPSILON = 1e-5  # added to the covariance's diagonal


def alignment_loss(axes: Tensor, c: Tensor) -> Tensor:
    """Minus the mean, over concepts, of the mean activation of concept j's axis on the examples
    that have concept j; a concept with no such example in the batch adds nothing.

    Args:
        axes: (B, k) the concept axes' activations (``ConceptWhitening.rotate``).
        c: (B, k) concept labels (NaN where missing).

    Returns:
        The scalar objective (0 when no concept has an example).
    """
    present = (c == 1).to(axes.dtype)
    counts = present.sum(0)
    means = (axes * present).sum(0) / counts.clamp(min=1)
    return -(means * (counts > 0)).sum() / (counts > 0).sum().clamp(min=1)


class ConceptWhitening(nn.Module):
    """Whitening followed by a learned rotation; a drop-in for ``BatchNorm1d`` / ``BatchNorm2d``.

    ``forward`` returns the rotated, whitened input with the rotation held fixed, so the task's
    gradient reaches the layers below through the whitening and never Q. ``rotate`` also returns
    the concept axes' activations computed the other way round (the input held fixed, Q free);
    ``alignment_loss`` on them trains Q alone. The values are the same; only the gradients differ.

    Args:
        features: Channels (or vector width) d; the first ``n_concepts`` axes are the concepts'.
        n_concepts: Number of concept axes (at most ``features``).
        iterations: IterNorm's Newton iterations T (IterNorm's 5; the concept-whitening authors use
            10, see the module notes). A direction with a small share of the variance is only partly
            whitened after few iterations, which IterNorm intends.
        momentum: Weight of each batch in the running mean and covariance (the authors' 0.05 with 10
            iterations).

    Examples:
        >>> from conceptlab.models.whitening import ConceptWhitening
        >>> layer = ConceptWhitening(8, 3)
        >>> z = layer(3 * torch.randn(512, 8) + 5)
        >>> torch.allclose(torch.cov(z.T), torch.eye(8), atol=0.05)  # decorrelated, unit variance
        True
    """

    def __init__(self, features: int, n_concepts: int, *, iterations: int = 5, momentum: float = 0.1):
        super().__init__()
        check_sizes(features=features, n_concepts=n_concepts, iterations=iterations)
        if n_concepts > features:
            raise ValueError(f"n_concepts ({n_concepts}) cannot exceed the whitened width ({features}): give the layer "
                             "at least one axis per concept")
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must lie in (0, 1]; got {momentum}")
        self.features, self.n_concepts, self.iterations, self.momentum = features, n_concepts, iterations, momentum
        self.rotation = orthogonal(nn.Linear(features, features, bias=False))
        with torch.no_grad():
            self.rotation.weight = torch.eye(features)
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_covariance", torch.eye(features))

    def whiten(self, x: Tensor) -> Tensor:
        """Whitened samples (N, d) of (N, d) inputs: batch statistics in training (and the running
        ones updated), running statistics in evaluation."""
        if not self.training:
            return (x - self.running_mean) @ self.inverse_root(self.running_covariance).T
        mean = x.mean(0)
        centred = x - mean
        covariance = centred.T @ centred / len(x)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_covariance.lerp_(covariance.detach(), self.momentum)
        return centred @ self.inverse_root(covariance).T

    def inverse_root(self, covariance: Tensor) -> Tensor:
        """IterNorm's approximation W of Sigma^-1/2 (differentiable): T Newton iterations on the
        trace-normalised covariance (plus ``EPSILON`` on its diagonal)."""
        eye = torch.eye(self.features, device=covariance.device, dtype=covariance.dtype)
        covariance = covariance + EPSILON * eye
        trace = covariance.diagonal().sum()
        normalised = covariance / trace
        p = eye
        for _ in range(self.iterations):
            p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ normalised
        return p / trace.sqrt()

    def rotate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The layer's output (shaped as ``x``, Q fixed) and the concept axes' activations (B, k),
        the spatial mean for feature maps (only Q receives their gradient)."""
        if x.ndim == 2:
            samples, shape = x, None
        elif x.ndim == 4 and x.shape[1] == self.features:
            b, c, h, w = x.shape
            samples, shape = x.permute(0, 2, 3, 1).reshape(-1, c), (b, h, w)
        else:
            raise ValueError(f"concept whitening reads (B, {self.features}) vectors or (B, {self.features}, H, W) maps; "
                             f"got {tuple(x.shape)}")
        whitened = self.whiten(samples)
        rotation = self.rotation.weight
        out, aligned = whitened @ rotation.detach(), whitened.detach() @ rotation
        if shape is not None:
            b, h, w = shape
            out = out.reshape(b, h, w, -1).permute(0, 3, 1, 2)
            aligned = aligned.reshape(b, h * w, -1).mean(1)
        return out, aligned[:, : self.n_concepts]

    def forward(self, x: Tensor) -> Tensor:
        return self.rotate(x)[0]


class ConceptWhiteningModel(ConceptModel):
    """x -> encoder -> concept whitening -> head; the first k whitened axes are the concepts.

    ``concept_samples`` (B, k, 1) are the concept axes' activations (whitened: about unit variance;
    their gradient reaches only the rotation, the bottleneck's only the layers below),
    ``concept_logits`` those activations read through a per-axis Platt scaling fitted on the
    validation split after training (``calibrate_concepts``), the
    ``bottleneck`` all d axes, corrected concept axes replaced by their 5th / 95th percentile of
    training activations (``calibrate_interventions``), so the head reads values it saw in training.
    The other d - k axes are free (the paper's unaligned axes) and never corrected.

    Args:
        encoder: The network from inputs to the d features that are whitened.
        latent_dim: d, at least ``n_concepts``.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        head_hidden: Widths of the head's hidden ReLU layers (none: linear).
        iterations: IterNorm's Newton iterations.
        momentum: Weight of each batch in the running statistics.

    Examples:
        >>> from conceptlab.models import ConceptWhiteningModel
        >>> model = ConceptWhiteningModel(torch.nn.Linear(4, 8), latent_dim=8, n_concepts=3, n_classes=2)
        >>> model.eval()(torch.randn(5, 4)).concept_logits.shape
        torch.Size([5, 3])
    """

    def __init__(self, encoder: nn.Module, *, latent_dim: int, n_concepts: int, n_classes: int,
                 head_hidden: Sequence[int] = (), iterations: int = 5, momentum: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.whitening = ConceptWhitening(latent_dim, n_concepts, iterations=iterations, momentum=momentum)
        self.head = mlp(latent_dim, task_outputs(n_classes), head_hidden, activation=nn.ReLU)
        self.register_buffer("intervention_low", torch.full((n_concepts,), -1.0))
        self.register_buffer("intervention_high", torch.full((n_concepts,), 1.0))
        self.register_buffer("platt_scale", torch.ones(n_concepts))
        self.register_buffer("platt_bias", torch.zeros(n_concepts))

    def encode(self, x: Tensor) -> Tensor:
        """The encoder's features (B, d), before whitening (whitening uses batch statistics in training)."""
        return self.encoder(x)

    def decode(self, features: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        z, axes = self.whitening.rotate(features)
        if intervention is not None:
            intervention = self.check_intervention(intervention, z)
            written = torch.where(intervention.values.to(z.dtype) > 0.5, self.intervention_high, self.intervention_low)
            z = torch.cat([torch.where(intervention.mask, written, z[:, : self.n_concepts]), z[:, self.n_concepts :]], dim=1)
        logits = self.platt_scale * axes + self.platt_bias
        return ConceptOutput(self.head(z), z, logits, torch.sigmoid(logits), concept_samples=axes.unsqueeze(-1))

    @torch.no_grad()
    def calibrate_concepts(self, inputs: Tensor | Dataset, c: Tensor) -> None:
        """Read probabilities off the concept axes: a Platt scale and bias per axis fitted on held-out
        inputs and labels (the validation split; ``calibration.fit_platt``). The axes themselves,
        and what an intervention writes, do not change.

        Args:
            inputs: (N, ...) inputs, or a dataset of image items.
            c: (N, k) their concept labels (NaN where missing).
        """
        with evaluating(self):
            _, axes = self.whitening.rotate(encode_all(self, inputs))
        scale, bias = fit_platt(axes, c)
        self.platt_scale.copy_(scale)
        self.platt_bias.copy_(bias)

    def concept_objective(self, output: ConceptOutput, c: Tensor, pos_weight: Tensor | None = None, *,
                          y: Tensor | None = None) -> dict[str, Tensor]:
        """``concept``: the alignment objective (``alignment_loss``) on the batch's concept axes
        (``concept_samples``, before the read-out's calibration); only the rotation learns from it."""
        return {"concept": alignment_loss(output.concept_samples.squeeze(-1), c)}

    def calibrate_interventions(self, train_concept_logits: Tensor) -> None:
        """Store the 5th / 95th percentiles of each concept axis's training activations (the logits
        with the read-out's Platt scaling undone)."""
        axes = (train_concept_logits.detach().float().to(self.intervention_low.device) - self.platt_bias) / self.platt_scale
        store_percentiles(axes, self.intervention_low, self.intervention_high)


@register_model(not_saved=("backbone_weights",))
def whitening(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    latent_dim: int = 128,
    hidden: Sequence[int] = (128, 128),
    head_hidden: Sequence[int] = (),
    iterations: int = 5,
    momentum: float = 0.1,
    backbone: str | None = None,
    backbone_weights: str | None = None,
) -> ConceptWhiteningModel:
    """A concept whitening model: an MLP encoder (optionally on an image backbone), a concept
    whitening layer on its d = ``latent_dim`` outputs, and a head on the whitened axes.

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``).
        n_concepts: Number of concepts k (at most ``latent_dim``).
        n_classes: Number of task classes (2: one binary logit).
        latent_dim: d, the width of the whitened layer.
        hidden: Widths of the MLP encoder's hidden layers.
        head_hidden: Widths of the head's hidden ReLU layers (none: linear).
        iterations: IterNorm's Newton iterations (IterNorm's 5; the concept-whitening authors' 10).
        momentum: Weight of each batch in the running statistics.
        backbone: An image backbone name under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights.

    Returns:
        The untrained model; ``build_spec`` records the call.

    Raises:
        ValueError: A size that is not a whole number >= 1, or more concepts than whitened axes.

    Examples:
        >>> from conceptlab.models import whitening
        >>> whitening(in_features=4, n_concepts=3, n_classes=2, latent_dim=8, hidden=(8,))(torch.randn(6, 4)).bottleneck.shape
        torch.Size([6, 8])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes, latent_dim=latent_dim)
    return ConceptWhiteningModel(encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim,
                                 n_concepts=n_concepts, n_classes=n_classes, head_hidden=head_hidden, iterations=iterations,
                                 momentum=momentum)
