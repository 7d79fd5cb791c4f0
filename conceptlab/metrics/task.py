"""Task and concept accuracy of concept models."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from ..datasets.base import ConceptDataset
from ..models.base import ConceptModel, ConceptOutput, Intervention, predict
from ..models.heads import predicted_class


def task_accuracy(task_logits: Tensor, y: Tensor, binary_threshold: float = 0.0) -> float:
    """Top-1 accuracy; a single binary logit counts as positive above ``binary_threshold``.

    The default 0 is the decision boundary of a logit. The CEM paper's code compared logits with
    0.5, which lowers some published numbers; pass ``binary_threshold=0.5`` only to reproduce that.

    Args:
        task_logits: (N, T) task logits.
        y: (N,) true classes.
        binary_threshold: The decision threshold of a single binary logit.
    """
    pred = predicted_class(task_logits, binary_threshold)
    return float((pred == y.to(pred.device)).float().mean())


def concept_accuracy(concept_probs: Tensor, c: Tensor) -> float:
    """Accuracy of thresholding probabilities at 0.5, averaged over concepts.

    Args:
        concept_probs: (N, k) predicted concept probabilities.
        c: (N, k) concept labels.
    """
    correct = (concept_probs > 0.5) == (c.to(concept_probs.device) > 0.5)
    return float(correct.float().mean())


def concept_auc(concept_probs: Tensor, c: Tensor) -> float:
    """ROC-AUC of each concept's probabilities, averaged over the concepts that have both labels.

    Args:
        concept_probs: (N, k) predicted concept probabilities.
        c: (N, k) concept labels.
    """
    probs = concept_probs.detach().cpu().numpy()
    labels = (c.detach().cpu().numpy() > 0.5).astype(int)
    scores = [
        roc_auc_score(labels[:, i], probs[:, i]) for i in range(labels.shape[1]) if 0 < labels[:, i].sum() < len(labels)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def summarize(output: ConceptOutput, data: ConceptDataset, binary_threshold: float = 0.0) -> dict[str, float | None]:
    """Task accuracy plus, for concept models, concept accuracy and AUC (``None`` otherwise).

    Args:
        output: A model's output on ``data``.
        data: The split it was computed on (its labels).
        binary_threshold: The decision threshold of a single binary logit.
    """
    has_concepts = output.concept_probs is not None
    return {
        "task_accuracy": task_accuracy(output.task_logits, data.y, binary_threshold),
        "concept_accuracy": concept_accuracy(output.concept_probs, data.c) if has_concepts else None,
        "concept_auc": concept_auc(output.concept_probs, data.c) if has_concepts else None,
    }


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
    """
    with torch.no_grad():
        return summarize(predict(model, data.inputs, intervention), data, binary_threshold)
