"""Post-hoc concepts on any torch model: activations, concept activation vectors, TCAV."""

from .activations import capture_activations, resolve_layer
from .cav import CAVBank
from .tcav import layer_gradients, run_tcav, significance, tcav_plot, tcav_scores, write_tcav_csv

__all__ = [
    "CAVBank",
    "capture_activations",
    "layer_gradients",
    "resolve_layer",
    "run_tcav",
    "significance",
    "tcav_plot",
    "tcav_scores",
    "write_tcav_csv",
]
