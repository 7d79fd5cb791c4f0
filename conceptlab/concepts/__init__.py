"""Post-hoc concepts on any torch model: activations, concept activation vectors, TCAV, CCE."""

from .activations import capture_activations, layer_inputs, resolve_layer
from .cav import CAVBank
from .cce import CCE, Counterfactuals, random_scores, univariate_scores
from .tcav import layer_gradients, run_tcav, significance, tcav_plot, tcav_scores, write_tcav_csv

__all__ = [
    "CCE",
    "CAVBank",
    "Counterfactuals",
    "capture_activations",
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
