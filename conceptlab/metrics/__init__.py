"""Metrics of concept models: task and concept accuracy, concept alignment (CAS), impurity (OIS, NIS),
leakage (concepts-task, inter-concept, linear probe), causal concept effects (CaCE), sparse heads (NEC),
and the k-nearest-neighbour mutual-information estimators behind the leakage scores."""

from .alignment import concept_alignment_score, concept_representations
from .completeness import completeness_score
from .information import (
    ConditionalInformation,
    conditional_mutual_information,
    gaussian_mutual_information,
    mutual_information,
)
from .leakage import (
    accuracy_at_effective_concepts,
    causal_concept_effect,
    concepts_task_leakage,
    interconcept_leakage,
    probe_leakage,
)
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
    "ConditionalInformation",
    "accuracy_at_effective_concepts",
    "causal_concept_effect",
    "concepts_task_leakage",
    "conditional_mutual_information",
    "gaussian_mutual_information",
    "interconcept_leakage",
    "mutual_information",
    "probe_leakage",
    "balanced_accuracy",
    "concept_accuracy",
    "completeness_score",
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
