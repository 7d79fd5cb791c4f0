"""How a task head's logits read as classes: the one place for the single-logit binary convention.

A binary task has one logit ``z`` (class 1 when ``z`` > 0, probability ``sigmoid(z)``); a task
with ``C`` > 2 classes has one logit per class. Every part of conceptlab that turns task logits
into losses, predictions, probabilities or per-class scores goes through these functions.

Example:
    >>> import torch
    >>> from conceptlab.models.heads import class_log_probs, predicted_class
    >>> z = torch.tensor([[2.0], [-1.0]])          # a binary head: one logit per sample
    >>> predicted_class(z).tolist()
    [1, 0]
    >>> class_log_probs(z).exp().round(decimals=3).tolist()
    [[0.119, 0.881], [0.731, 0.269]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ConceptOutput


def task_outputs(n_classes: int) -> int:
    """Logits a head needs for ``n_classes`` classes: one for a binary task, else one per class.

    Args:
        n_classes: Classes of the task (at least 2).

    Raises:
        ValueError: With fewer than 2 classes.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2; got {n_classes}")
    return 1 if n_classes == 2 else n_classes


def n_classes(logits: Tensor) -> int:
    """Classes that (..., T) task logits distinguish: 2 for a single logit, else T."""
    return 2 if logits.shape[-1] == 1 else logits.shape[-1]


def output_logits(output: ConceptOutput | Tensor) -> Tensor:
    """The (B, T) task logits of any model's output: a conceptlab model's ``task_logits``, or a
    tensor (a (B,) one is one logit per sample; trailing axes are flattened).

    Args:
        output: What a model's forward pass returned.

    Raises:
        ValueError: An output that is neither a tensor nor a ``ConceptOutput``.
    """
    logits = output.task_logits if isinstance(output, ConceptOutput) else output
    if not isinstance(logits, Tensor):
        raise ValueError(f"the model returned {type(logits).__name__}; explaining it needs a tensor of logits "
                         "(or a ConceptOutput)")
    return logits[:, None] if logits.ndim == 1 else logits.flatten(1)


def task_loss(logits: Tensor, y: Tensor, reduction: str = "mean", class_weight: Tensor | None = None) -> Tensor:
    """The task's training loss: binary cross-entropy for one logit, cross-entropy otherwise.

    Args:
        logits: (B, T) task logits.
        y: (B,) true classes.
        reduction: ``"mean"`` over the batch, or ``"none"`` for one loss per sample.
        class_weight: (n_classes,) weight of each class's samples; the mean is then weighted
            (sum of w_y * loss over sum of w_y), for one logit as for several.
    """
    if class_weight is None:
        if logits.shape[-1] == 1:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.to(logits.dtype), reduction=reduction)
        return F.cross_entropy(logits, y, reduction=reduction)
    losses = task_loss(logits, y, reduction="none")
    weights = class_weight.to(losses)[y.long()]
    return weights * losses if reduction == "none" else (weights * losses).sum() / weights.sum()


def predicted_class(logits: Tensor, binary_threshold: float = 0.0) -> Tensor:
    """(..., T) task logits -> (...) predicted classes: the arg-max, or for a single logit 1 above
    ``binary_threshold`` (0, the logit's decision boundary, unless reproducing code that used another)."""
    if logits.shape[-1] == 1:
        return (logits.squeeze(-1) > binary_threshold).long()
    return logits.argmax(-1)


def class_log_probs(logits: Tensor) -> Tensor:
    """(..., T) task logits -> (..., n_classes) log-probabilities; one logit gives (1 - p, p)."""
    if logits.shape[-1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=-1)
    return logits.log_softmax(dim=-1)


def class_logits(logits: Tensor) -> Tensor:
    """(B, T) task logits -> (B, n_classes) logits whose softmax is the class distribution: a
    single logit ``z`` becomes ``[0, z]``."""
    return torch.cat([torch.zeros_like(logits), logits], 1) if logits.shape[1] == 1 else logits


def true_class_logit(logits: Tensor, y: Tensor) -> Tensor:
    """(B, ..., T) task logits -> (B, ...) the logit of each sample's true class ``y`` (B,); for
    a single logit, its log-odds: ``z`` for class 1 and ``-z`` for class 0."""
    if logits.shape[-1] == 1:
        sign = (2 * y.to(logits.dtype) - 1).view(-1, *([1] * (logits.ndim - 2)))
        return sign * logits.squeeze(-1)
    index = y.long().view(-1, *([1] * (logits.ndim - 1))).expand(*logits.shape[:-1], 1)
    return logits.gather(-1, index).squeeze(-1)


def gradient_safe_loss(logits: Tensor, target: int) -> Tensor:
    """(B, T) task logits -> (B,) the training loss of every row for class ``target``, in float64,
    written so that its gradient never cancels: ``softplus(-z)`` for class 1 of a single logit
    (``softplus(z)`` for class 0) and ``softplus(logsumexp_{j != k}(z_j - z_k))`` for class k.

    Equal to :func:`task_loss` in value. The textbook forms differentiate to ``sigmoid(z) - 1`` or
    ``p_k - 1``, which round to exactly 0 for confident inputs, so gradient-based explanations
    (TCAV's loss objective) would silently drop those inputs.
    """
    z = logits.double()
    if z.shape[1] == 1:
        return F.softplus(-z[:, 0] if target == 1 else z[:, 0])
    others = torch.cat([z[:, :target], z[:, target + 1 :]], 1) - z[:, target : target + 1]
    return F.softplus(torch.logsumexp(others, 1))


def weights_per_class(weight: Tensor) -> Tensor:
    """A linear head's (T, k) weight matrix as (n_classes, k) weights per class: a single binary
    row ``w`` becomes ``(-w, w)``, since class 0's logit is ``-z`` in the log-odds reading."""
    return torch.cat([-weight, weight]) if weight.shape[0] == 1 else weight.clone()
