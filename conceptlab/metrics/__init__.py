"""Metrics of concept models: task and concept accuracy, concept alignment (CAS), impurity (OIS, NIS)."""

from .alignment import concept_alignment_score, concept_representations
from .purity import niche_impurity_score, oracle_impurity_score, own_representations, purity_matrix
from .task import (
    balanced_accuracy,
    concept_accuracy,
    concept_auc,
    evaluate,
    regression_scores,
    subset_accuracy,
    summarize,
    task_accuracy,
    task_score,
    top_k_accuracy,
)

__all__ = [
    "balanced_accuracy",
    "concept_accuracy",
    "concept_alignment_score",
    "concept_auc",
    "concept_representations",
    "evaluate",
    "niche_impurity_score",
    "oracle_impurity_score",
    "own_representations",
    "purity_matrix",
    "regression_scores",
    "subset_accuracy",
    "summarize",
    "task_accuracy",
    "task_score",
    "top_k_accuracy",
]
