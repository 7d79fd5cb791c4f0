"""How a task head's logits read as classes: the one place for the single-logit binary convention.

A binary task has one logit ``z`` (class 1 when ``z`` > 0, probability ``sigmoid(z)``); a task
with ``C`` > 2 classes has one logit per class. A multi-label task has one logit per label (label
present when it is > 0), a regression task one output per target (the prediction itself); see
``ConceptInfo.task``. Every part of conceptlab that turns task outputs into losses, predictions,
probabilities or per-class scores goes through these functions.

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

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..info import TASK_KINDS, TaskKind
from .base import ConceptOutput


def task_outputs(n_classes: int, task: TaskKind = "multiclass") -> int:
    """Outputs a head needs: for a multiclass task one logit when binary, else one per class; for a
    multi-label or regression task one per label or target.

    Args:
        n_classes: Classes of a multiclass task (at least 2); labels or targets otherwise (at least 1).
        task: ``multiclass``, ``multilabel`` or ``regression``.

    Raises:
        ValueError: An unknown task, or fewer classes, labels or targets than it needs.
    """
    if task not in TASK_KINDS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_KINDS)}")
    if task != "multiclass":
        if n_classes < 1:
            raise ValueError(f"a {task} task needs at least one {'label' if task == 'multilabel' else 'target'}; got {n_classes}")
        return n_classes
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2; got {n_classes}")
    return 1 if n_classes == 2 else n_classes


def check_task(model_task: TaskKind, data_task: TaskKind) -> None:
    """Refuse a model built for one kind of task trained or evaluated on another.

    Raises:
        ValueError: When they differ (the message says which to build).
    """
    if model_task != data_task:
        raise ValueError(f"the model predicts a {model_task} task but the data's task is {data_task}; "
                         f"build the model with task={data_task!r} (its builder takes task=)")


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


def task_loss(logits: Tensor, y: Tensor, reduction: str = "mean", class_weight: Tensor | None = None,
              task: TaskKind = "multiclass") -> Tensor:
    """The task's training loss: binary cross-entropy for one logit, cross-entropy for several
    classes; for a multi-label task the mean binary cross-entropy over a sample's known labels, for
    a regression task the mean squared error over its known targets (NaN: unknown, no term).

    Args:
        logits: (B, T) task outputs.
        y: (B,) true classes; (B, T) labels or targets for a multi-label or regression task.
        reduction: ``"mean"`` over the batch, or ``"none"`` for one loss per sample.
        class_weight: (n_classes,) weight of each class's samples; the mean is then weighted
            (sum of w_y * loss over sum of w_y), for one logit as for several. For a multi-label
            task: (T,) weights of each label's positive term (``pos_weight``).
        task: ``multiclass``, ``multilabel`` or ``regression``.

    Raises:
        ValueError: Class weights for a regression task.
    """
    if task != "multiclass":
        return _per_output_loss(logits, y, reduction, class_weight, task)
    if class_weight is None:
        if logits.shape[-1] == 1:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.to(logits.dtype), reduction=reduction)
        return F.cross_entropy(logits, y, reduction=reduction)
    losses = task_loss(logits, y, reduction="none")
    weights = class_weight.to(losses)[y.long()]
    return weights * losses if reduction == "none" else (weights * losses).sum() / weights.sum()


def _per_output_loss(logits: Tensor, y: Tensor, reduction: str, class_weight: Tensor | None, task: TaskKind) -> Tensor:
    """Multi-label BCE or regression MSE, averaged over each sample's known outputs."""
    y = y.to(logits.dtype).reshape(logits.shape)
    known = ~torch.isnan(y)
    target = y.nan_to_num(0.0)
    if task == "regression":
        if class_weight is not None:
            raise ValueError("class weights apply to classification tasks; a regression task takes none")
        terms = (logits - target).pow(2)
    else:
        terms = F.binary_cross_entropy_with_logits(logits, target, pos_weight=class_weight, reduction="none")
    terms = terms * known
    if reduction == "none":
        return terms.sum(1) / known.sum(1).clamp(min=1)
    return terms.sum() / known.sum().clamp(min=1)


def mean_over_samples(logits: Tensor) -> Tensor:
    """(B, M, T) task logits of M Monte Carlo samples -> (B, T) logits of their mean class
    distribution: the logit of the mean probability for one binary logit, the log of the mean
    softmax otherwise (a stochastic model's prediction, e.g. SCBM's).

    Args:
        logits: (B, M, T) logits, one row per sample.

    Returns:
        (B, T) logits.

    Examples:
        >>> import torch
        >>> from conceptlab.models.heads import mean_over_samples
        >>> mean_over_samples(torch.tensor([[[2.0], [-2.0]]])).tolist()  # probabilities 0.88 and 0.12: mean 0.5
        [[0.0]]
    """
    if logits.shape[-1] == 1:
        return torch.logit(torch.sigmoid(logits).mean(1), eps=1e-6)
    return torch.logsumexp(logits.log_softmax(-1), dim=1) - math.log(logits.shape[1])


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
