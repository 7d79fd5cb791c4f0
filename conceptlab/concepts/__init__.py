"""Post-hoc concepts on any torch model: activations, concept activation vectors, TCAV."""

from .activations import capture_activations, resolve_layer
from .cav import CAVBank
from .tcav import layer_gradients, significance, tcav_scores

__all__ = ["CAVBank", "capture_activations", "layer_gradients", "resolve_layer", "significance", "tcav_scores"]
