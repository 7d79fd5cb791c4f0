"""Post-hoc concepts on any torch model: activations, concept activation vectors and banks, TCAV, CCE."""

from .activations import capture_activations, layer_inputs, resolve_layer
from .bank import bank_concepts, bank_from_folders, bank_from_labels, concept_bank, label_sets
from .cav import CAVBank
from .cce import CCE, Counterfactuals, random_scores, univariate_scores
from .tcav import layer_gradients, run_tcav, significance, tcav_plot, tcav_scores, write_tcav_csv

__all__ = [
    "CCE",
    "CAVBank",
    "Counterfactuals",
    "bank_concepts",
    "bank_from_folders",
    "bank_from_labels",
    "capture_activations",
    "concept_bank",
    "layer_gradients",
    "label_sets",
    "layer_inputs",
    "random_scores",
    "resolve_layer",
    "run_tcav",
    "significance",
    "tcav_plot",
    "tcav_scores",
    "univariate_scores",
    "write_tcav_csv",
]
