"""Concept losses (the task loss is the head convention's: ``models.heads.task_loss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..info import TaskKind
from ..models.concept_types import Categorical, Continuous, binary_mask


def concept_loss(concept_logits: Tensor, c: Tensor, pos_weight: Tensor | None = None, *,
                 categorical: Categorical = (), continuous: Continuous = ()) -> Tensor:
    """Mean BCE between predicted concept probabilities and labels (computed from logits, stably);
    a categorical concept adds one cross-entropy term over its members instead, a continuous one
    the squared error of its predicted value (so give continuous labels a unit scale).

    A missing label (NaN) adds no term and no gradient: the mean runs over the known labels (0
    when a batch has none); a categorical concept with any member missing counts as missing.

    Args:
        concept_logits: (B, k) concept logits.
        c: (B, k) concept labels in [0, 1]; NaN where missing; one-hot within a categorical concept.
        pos_weight: (k,) weights of each binary concept's positive term, e.g. n_neg / n_pos.
        categorical: Member indices of each categorical concept.
        continuous: Indices of the continuous concepts.

    Returns:
        A scalar loss.

    Examples:
        >>> from conceptlab.training import concept_loss
        >>> round(float(concept_loss(torch.zeros(4, 2), torch.ones(4, 2))), 4)  # log 2
        0.6931
    """
    c = c.to(concept_logits.dtype)
    if not categorical and not continuous and not bool(torch.isnan(c).any()):  # every label a known binary one: the plain mean
        return F.binary_cross_entropy_with_logits(concept_logits, c, pos_weight=pos_weight)
    binary = binary_mask(c.shape[1], categorical, c.device, continuous)
    known = ~torch.isnan(c[:, binary])
    total = F.binary_cross_entropy_with_logits(
        concept_logits[:, binary], c[:, binary].nan_to_num(0.0), weight=known.to(c.dtype),
        pos_weight=pos_weight[binary] if pos_weight is not None else None, reduction="sum")
    count = known.sum()
    for members in categorical:
        index = list(members)
        rows = ~torch.isnan(c[:, index]).any(1)
        total = total + F.cross_entropy(concept_logits[rows][:, index], c[rows][:, index].argmax(1), reduction="sum")
        count = count + rows.sum()
    if continuous:
        index = list(continuous)
        known = ~torch.isnan(c[:, index])
        total = total + ((concept_logits[:, index] - c[:, index].nan_to_num(0.0)).pow(2) * known).sum()
        count = count + known.sum()
    return total / count.clamp(min=1)


def concept_pos_weight(c: Tensor) -> Tensor:
    """n_neg / n_pos per concept, for class-balanced concept losses (1 where a concept never occurs);
    missing labels (NaN) are not counted.

    Args:
        c: (N, k) concept labels of the training split.

    Returns:
        (k,) weights.

    Examples:
        >>> from conceptlab.training import concept_pos_weight
        >>> concept_pos_weight(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])).tolist()
        [3.0, 1.0]
    """
    positives = c.nansum(0)
    negatives = (~torch.isnan(c)).sum(0) - positives
    return torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones_like(positives))


def task_class_weights(y: Tensor, n_classes: int, task: TaskKind = "multiclass") -> Tensor:
    """n / (n_classes * n_c) per class (scikit-learn's "balanced"), for class-weighted task losses;
    1 for a class the labels never show. For a multilabel task: n_neg / n_pos per label, the
    weight of its positive term (as ``concept_pos_weight``).

    Args:
        y: (N,) class indices of the training split; (N, T) labels for a multilabel task.
        n_classes: Number of classes (labels).
        task: ``multiclass`` or ``multilabel``.

    Returns:
        (n_classes,) weights.

    Raises:
        ValueError: For a regression task, which has no classes to weight.

    Examples:
        >>> from conceptlab.training import task_class_weights
        >>> task_class_weights(torch.tensor([0, 0, 0, 1]), 2).tolist()
        [0.6666666865348816, 2.0]
    """
    if task == "regression":
        raise ValueError("task class weighting balances classes; a regression task has none: set train.task_class_weighting: false")
    if task == "multilabel":
        return concept_pos_weight(y.float())
    counts = torch.bincount(y.long(), minlength=n_classes).float()
    return torch.where(counts > 0, y.numel() / (n_classes * counts.clamp(min=1)), torch.ones_like(counts))
