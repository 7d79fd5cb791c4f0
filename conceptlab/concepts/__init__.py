"""Post-hoc concepts on any torch model: activations, concept activation vectors and banks, TCAV (relative,
integrated-gradient, from a saved bank), CCE, and concepts discovered without labels (``discovery``)."""

from .activations import capture_activations, layer_inputs, resolve_layer
from .bank import bank_concepts, bank_from_folders, bank_from_labels, concept_bank, label_sets
from .bank_scores import BankScores, tcav_from_bank
from .cav import CAVBank
from .cce import CCE, Counterfactuals, random_scores, univariate_scores
from .cce_images import ImageCounterfactuals, explain_images
from .relative import relative_tcav
from .tcav import layer_gradients, run_tcav, significance, tcav_plot, tcav_scores, write_tcav_csv

__all__ = [
    "BankScores",
    "relative_tcav",
    "tcav_from_bank",
    "CAVBank",
    "CCE",
    "Counterfactuals",
    "ImageCounterfactuals",
    "bank_concepts",
    "bank_from_folders",
    "bank_from_labels",
    "capture_activations",
    "concept_bank",
    "explain_images",
    "label_sets",
    "layer_gradients",
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
