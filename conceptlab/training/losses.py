"""Concept losses (the task loss is the head convention's: ``models.heads.task_loss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def concept_loss(concept_logits: Tensor, c: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    """Mean BCE between predicted concept probabilities and labels (computed from logits, stably).

    Args:
        concept_logits: (B, k) concept logits.
        c: (B, k) concept labels in [0, 1].
        pos_weight: (k,) weights of each concept's positive term, e.g. n_neg / n_pos.

    Returns:
        A scalar loss.

    Examples:
        >>> from conceptlab.training import concept_loss
        >>> round(float(concept_loss(torch.zeros(4, 2), torch.ones(4, 2))), 4)  # log 2
        0.6931
    """
    return F.binary_cross_entropy_with_logits(concept_logits, c.to(concept_logits.dtype), pos_weight=pos_weight)


def concept_pos_weight(c: Tensor) -> Tensor:
    """n_neg / n_pos per concept, for class-balanced concept losses (1 where a concept never occurs).

    Args:
        c: (N, k) concept labels of the training split.

    Returns:
        (k,) weights.

    Examples:
        >>> from conceptlab.training import concept_pos_weight
        >>> concept_pos_weight(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])).tolist()
        [3.0, 1.0]
    """
    positives = c.sum(0)
    negatives = c.shape[0] - positives
    return torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones_like(positives))
