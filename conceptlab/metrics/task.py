"""Task and concept accuracy of concept models."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from ..datasets.base import ConceptDataset
from ..info import TaskKind
from ..models.base import ConceptModel, ConceptOutput, Intervention, predict
from ..models.concept_types import Categorical, Continuous, binary_mask
from ..models.heads import class_logits, predicted_class


def task_accuracy(task_logits: Tensor, y: Tensor, binary_threshold: float = 0.0) -> float:
    """Top-1 accuracy; a single binary logit counts as positive above ``binary_threshold``. With
    (N, T) labels ``y`` (a multilabel task): the accuracy of every known label, each logit
    positive above ``binary_threshold`` (Hamming accuracy).

    The default 0 is the decision boundary of a logit. The CEM paper's code compared logits with
    0.5, which lowers some published numbers; pass ``binary_threshold=0.5`` only to reproduce that.

    Args:
        task_logits: (N, T) task logits.
        y: (N,) true classes; (N, T) 0 / 1 labels (NaN: unknown) for a multilabel task.
        binary_threshold: The decision threshold of a single binary logit.

    Returns:
        Accuracy in [0, 1].

    Examples:
        >>> from conceptlab.metrics import task_accuracy
        >>> task_accuracy(torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 1]))  # one binary logit
        0.5
    """
    if y.ndim == 2:
        y = y.to(task_logits.device)
        known = ~torch.isnan(y)
        return float(((task_logits > binary_threshold) == (y > 0.5))[known].float().mean())
    pred = predicted_class(task_logits, binary_threshold)
    return float((pred == y.to(pred.device)).float().mean())


def subset_accuracy(task_logits: Tensor, y: Tensor, binary_threshold: float = 0.0) -> float:
    """Share of samples whose labels are all right (a multilabel task's exact match), over the
    samples with every label known.

    Args:
        task_logits: (N, T) task logits.
        y: (N, T) 0 / 1 labels; NaN where unknown.
        binary_threshold: Each logit's decision threshold.

    Returns:
        Subset accuracy in [0, 1] (NaN when no sample has every label known).

    Examples:
        >>> from conceptlab.metrics import subset_accuracy
        >>> subset_accuracy(torch.tensor([[2.0, -1.0], [2.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        0.5
    """
    y = y.to(task_logits.device)
    rows = ~torch.isnan(y).any(1)
    return float(((task_logits[rows] > binary_threshold) == (y[rows] > 0.5)).all(1).float().mean())


def regression_scores(predictions: Tensor, y: Tensor) -> tuple[float, float]:
    """Mean squared error and R^2 (1 - SSE / SST per target, averaged over the targets) of the
    known targets (NaN: unknown, skipped).

    Args:
        predictions: (N, T) predicted targets.
        y: (N, T) true targets; NaN where unknown.

    Returns:
        ``(mse, r2)``.

    Examples:
        >>> from conceptlab.metrics import regression_scores
        >>> mse, r2 = regression_scores(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [2.0], [4.0]]))
        >>> round(mse, 3), round(r2, 3)
        (0.333, 0.786)
    """
    y = y.to(predictions.device).reshape(predictions.shape).float()
    known = ~torch.isnan(y)
    error = (predictions.float() - y.nan_to_num(0.0)).pow(2) * known
    mse = float(error.sum() / known.sum().clamp(min=1))
    count = known.sum(0).clamp(min=1)
    mean = y.nan_to_num(0.0).sum(0) / count
    total = ((y.nan_to_num(0.0) - mean).pow(2) * known).sum(0)
    r2 = 1 - error.sum(0) / total.clamp(min=1e-12)
    return mse, float(r2[total > 0].mean()) if bool((total > 0).any()) else float("nan")


def task_score(task_logits: Tensor, y: Tensor, task: TaskKind = "multiclass", *, binary_threshold: float = 0.0) -> float:
    """The one number an intervention curve follows: accuracy for a multiclass task, label
    accuracy for a multilabel one, R^2 for a regression one.

    Args:
        task_logits: (N, T) task outputs.
        y: The true classes, labels or targets.
        task: ``multiclass``, ``multilabel`` or ``regression``.
        binary_threshold: The decision threshold of a single binary logit.

    Returns:
        The score (higher is better).

    Examples:
        >>> from conceptlab.metrics import task_score
        >>> task_score(torch.tensor([[1.0], [3.0]]), torch.tensor([[1.0], [2.0]]), "regression")
        -1.0
    """
    if task == "regression":
        return regression_scores(task_logits, y)[1]
    return task_accuracy(task_logits, y, binary_threshold)


def balanced_accuracy(task_logits: Tensor, y: Tensor, binary_threshold: float = 0.0) -> float:
    """Mean recall over the classes present in ``y``: accuracy that a majority class cannot carry.

    Args:
        task_logits: (N, T) task logits.
        y: (N,) true classes.
        binary_threshold: The decision threshold of a single binary logit.

    Returns:
        Balanced accuracy in [0, 1].

    Examples:
        >>> from conceptlab.metrics import balanced_accuracy
        >>> logits = torch.tensor([[1.0], [1.0], [1.0], [1.0]])  # always class 1
        >>> balanced_accuracy(logits, torch.tensor([1, 1, 1, 0]))  # 75% accurate, half the classes recalled
        0.5
    """
    pred = predicted_class(task_logits, binary_threshold)
    y = y.to(pred.device)
    recalls = [float((pred[y == k] == k).float().mean()) for k in torch.unique(y).tolist()]
    return float(np.mean(recalls))


TOP_K = 5


def top_k_accuracy(task_logits: Tensor, y: Tensor, k: int = TOP_K) -> float | None:
    """Share of samples whose true class is among the ``k`` highest logits; None when the task has
    ``k`` classes or fewer (every sample would count).

    Args:
        task_logits: (N, T) task logits (one binary logit reads as two classes).
        y: (N,) true classes.
        k: How many of the top classes count.

    Returns:
        Top-k accuracy in [0, 1], or None.

    Examples:
        >>> from conceptlab.metrics import top_k_accuracy
        >>> logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0]])
        >>> top_k_accuracy(logits, torch.tensor([4])), top_k_accuracy(logits, torch.tensor([5]))
        (1.0, 0.0)
    """
    logits = class_logits(task_logits)
    if logits.shape[1] <= k:
        return None
    top = logits.topk(k, dim=1).indices
    return float((top == y.to(top.device).view(-1, 1)).any(1).float().mean())


def concept_accuracy(concept_probs: Tensor, c: Tensor, categorical: Categorical = (), *, continuous: Continuous = ()) -> float:
    """Accuracy of thresholding probabilities at 0.5 over the known labels (NaN: missing, skipped);
    a categorical concept counts once per sample, right when its most probable value is the true one;
    continuous concepts are left to ``regression_scores``.

    Args:
        concept_probs: (N, k) predicted concept probabilities.
        c: (N, k) concept labels; NaN where missing.
        categorical: Member indices of each categorical concept.
        continuous: Indices of the continuous concepts (not counted).

    Returns:
        Accuracy in [0, 1].

    Examples:
        >>> from conceptlab.metrics import concept_accuracy
        >>> concept_accuracy(torch.tensor([[0.9, 0.2], [0.4, 0.7]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        0.75
    """
    c = c.to(concept_probs.device)
    binary = binary_mask(c.shape[1], categorical, c.device, continuous)
    right = [((concept_probs[:, binary] > 0.5) == (c[:, binary] > 0.5))[~torch.isnan(c[:, binary])].float()]
    for members in categorical:
        index = list(members)
        known = ~torch.isnan(c[:, index]).any(1)
        right.append((concept_probs[known][:, index].argmax(1) == c[known][:, index].argmax(1)).float())
    return float(torch.cat(right).mean())


def concept_auc(concept_probs: Tensor, c: Tensor, continuous: Continuous = ()) -> float:
    """ROC-AUC of each concept's probabilities over its known labels, averaged over the concepts
    that have both labels (continuous concepts left out).

    Args:
        concept_probs: (N, k) predicted concept probabilities.
        c: (N, k) concept labels; NaN where missing.
        continuous: Indices of the continuous concepts (not counted).

    Returns:
        Mean ROC-AUC, or NaN when no concept has both labels.

    Examples:
        >>> from conceptlab.metrics import concept_auc
        >>> concept_auc(torch.tensor([[0.9], [0.1], [0.8]]), torch.tensor([[1.0], [0.0], [1.0]]))
        1.0
    """
    probs = concept_probs.detach().cpu().numpy()
    c = c.detach().cpu().numpy()
    scores = []
    for i in sorted(set(range(c.shape[1])) - set(continuous)):
        known = ~np.isnan(c[:, i])
        labels = (c[known, i] > 0.5).astype(int)
        if 0 < labels.sum() < len(labels):
            scores.append(roc_auc_score(labels, probs[known, i]))
    return float(np.mean(scores)) if scores else float("nan")


def summarize(output: ConceptOutput, data: ConceptDataset, binary_threshold: float = 0.0) -> dict[str, float | None]:
    """Task accuracy (plain, balanced, top-5) plus, for concept models, concept accuracy and AUC
    (``None`` otherwise). A multilabel task adds ``task_subset_accuracy`` (its accuracy is the
    labels'); a regression task reports ``task_mse`` and ``task_r2`` instead of accuracies;
    continuous concepts add ``concept_mse`` and ``concept_r2``.

    Args:
        output: A model's output on ``data``.
        data: The split it was computed on (its labels).
        binary_threshold: The decision threshold of a single binary logit.

    Returns:
        The same keys as ``evaluate``.

    Examples:
        >>> from conceptlab.datasets import xor
        >>> from conceptlab.metrics import summarize
        >>> from conceptlab.models import black_box, predict
        >>> test = xor(size=100).test
        >>> summarize(predict(black_box(in_features=2, n_classes=2, latent_dim=4), test.x), test)["concept_auc"] is None
        True
    """
    has_concepts = output.concept_probs is not None
    info, logits, y = data.info, output.task_logits, data.y
    if info.task == "regression":
        mse, r2 = regression_scores(logits, y)
        scores = {"task_accuracy": None, "task_balanced_accuracy": None, "task_top5_accuracy": None, "task_mse": mse, "task_r2": r2}
    elif info.task == "multilabel":
        balanced = [balanced_accuracy(logits[known][:, [t]], y[known][:, t], binary_threshold)
                    for t in range(y.shape[1]) if (known := ~torch.isnan(y[:, t])).any()]
        scores = {"task_accuracy": task_accuracy(logits, y, binary_threshold),
                  "task_balanced_accuracy": float(np.mean(balanced)) if balanced else None, "task_top5_accuracy": None,
                  "task_subset_accuracy": subset_accuracy(logits, y, binary_threshold)}
    else:
        scores = {"task_accuracy": task_accuracy(logits, y, binary_threshold),
                  "task_balanced_accuracy": balanced_accuracy(logits, y, binary_threshold),
                  "task_top5_accuracy": top_k_accuracy(logits, y)}
    continuous = info.continuous_indices()
    typed = len(continuous) < info.n_concepts  # some binary or categorical concepts
    scores["concept_accuracy"] = concept_accuracy(output.concept_probs, data.c, info.categorical_indices(), continuous=continuous) if has_concepts and typed else None
    scores["concept_auc"] = concept_auc(output.concept_probs, data.c, continuous) if has_concepts and typed else None
    if continuous:
        mse, r2 = regression_scores(output.concept_probs[:, list(continuous)], data.c[:, list(continuous)]) if has_concepts else (None, None)
        scores.update(concept_mse=mse, concept_r2=r2)
    return scores


def evaluate(
    model: ConceptModel, data: ConceptDataset, *, intervention: Intervention | None = None, binary_threshold: float = 0.0
) -> dict[str, float | None]:
    """Predict ``data`` with ``model`` and summarise it: task accuracy, concept accuracy and AUC
    (None for a model without concepts).

    Args:
        model: The trained model.
        data: The split to score (e.g. ``splits.test``).
        intervention: Concept corrections applied while predicting, one row per sample.
        binary_threshold: The decision threshold of a single binary logit (0: its decision boundary).

    Returns:
        ``task_accuracy``, ``task_balanced_accuracy``, ``task_top5_accuracy`` (None with 5 classes or
        fewer), ``concept_accuracy`` and ``concept_auc`` (None for models without concepts).

    Examples:
        >>> from conceptlab.datasets import xor
        >>> from conceptlab.metrics import evaluate
        >>> from conceptlab.models import cbm
        >>> sorted(evaluate(cbm(in_features=2, n_concepts=2, n_classes=2), xor(size=100).test))
        ['concept_accuracy', 'concept_auc', 'task_accuracy', 'task_balanced_accuracy', 'task_top5_accuracy']
    """
    with torch.no_grad():
        return summarize(predict(model, data.inputs, intervention), data, binary_threshold)
