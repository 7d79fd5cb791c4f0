"""End-to-end baseline without concepts."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..info import TaskKind
from .base import ConceptModel, ConceptOutput, Intervention, check_sizes
from .encoders import encoder
from .heads import task_outputs
from .registry import register_model


class BlackBoxModel(ConceptModel):
    """x -> latent code (LeakyReLU) -> task; the same shape as a hybrid CBM trained without concepts.
    With ``activation=False`` the code is passed on as it is (``linear_probe``).

    Args:
        encoder: The network from inputs to its latent code (``mlp`` or an image backbone with an MLP).
        latent_dim: Width of the encoder's output, the code the head reads.
        n_classes: Number of task classes (2: one binary logit).
        activation: Apply LeakyReLU to the code (False: pass it on as it is, a linear probe).
        task: ``multiclass``, ``multilabel`` or ``regression`` (``models.heads``).

    Examples:
        >>> from conceptlab.models import BlackBoxModel
        >>> model = BlackBoxModel(torch.nn.Linear(4, 8), latent_dim=8, n_classes=3)
        >>> model(torch.randn(2, 4)).task_logits.shape
        torch.Size([2, 3])
    """

    n_concepts = 0

    def __init__(self, encoder: nn.Module, *, latent_dim: int, n_classes: int, activation: bool = True,
                 task: TaskKind = "multiclass"):
        super().__init__()
        self.encoder = encoder
        self.n_classes = n_classes
        self.activation = activation
        self.task = task
        self.head = nn.Linear(latent_dim, task_outputs(n_classes, task))

    def encode(self, x: Tensor) -> Tensor:
        code = self.encoder(x)
        return F.leaky_relu(code) if self.activation else code

    def decode(self, latent: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        if intervention is not None:
            self.check_intervention(intervention, latent)
        return ConceptOutput(self.head(latent), latent)


@register_model(not_saved=("backbone_weights",))
def black_box(
    *,
    in_features: int,
    n_classes: int,
    latent_dim: int,
    hidden: Sequence[int] = (128, 128),
    backbone: str | None = None,
    backbone_weights: str | None = None,
    task: TaskKind = "multiclass",
) -> BlackBoxModel:
    """The no-concept baseline: MLP encoder (optionally on an image backbone) to ``latent_dim`` units, Linear head.

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``).
        n_classes: Number of task classes (2: one binary logit).
        latent_dim: Width of the code the head reads (the bench gives it a hybrid CBM's bottleneck size).
        hidden: Widths of the MLP encoder's hidden layers.
        backbone: An image backbone name (e.g. ``"resnet18"``) under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights (nothing is downloaded).
        task: ``multiclass``, ``multilabel`` or ``regression`` (``ConceptInfo.task``); ``n_classes`` counts
            the labels or targets of the latter two.

    Returns:
        The untrained model.

    Examples:
        >>> from conceptlab.models import black_box
        >>> black_box(in_features=4, n_classes=3, latent_dim=8, hidden=(16,))(torch.randn(2, 4)).task_logits.shape
        torch.Size([2, 3])
    """
    check_sizes(n_classes=n_classes, latent_dim=latent_dim)  # in_features: checked by the encoder, unless a backbone sets it
    return BlackBoxModel(encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim, n_classes=n_classes,
                        task=task)


@register_model()
def linear_probe(*, in_features: int, n_classes: int, task: TaskKind = "multiclass") -> BlackBoxModel:
    """One Linear layer on the input (e.g. frozen backbone features): the accuracy a PCBM gives up.

    Args:
        in_features: Width of the input vectors.
        n_classes: Number of task classes (2: one binary logit); labels or targets of another task.
        task: ``multiclass``, ``multilabel`` or ``regression`` (``ConceptInfo.task``).

    Returns:
        The untrained model.

    Examples:
        >>> from conceptlab.models import linear_probe
        >>> linear_probe(in_features=6, n_classes=4)(torch.randn(3, 6)).task_logits.shape
        torch.Size([3, 4])
    """
    check_sizes(in_features=in_features, n_classes=n_classes)
    return BlackBoxModel(nn.Flatten(), latent_dim=in_features, n_classes=n_classes, activation=False, task=task)
