"""Concept models: plain ``nn.Module``s with ``forward(x, intervention=None) -> ConceptOutput``."""

from .base import ConceptModel, ConceptOutput, predict
from .blackbox import BlackBoxModel, black_box
from .cbm import BOTTLENECKS, ConceptBottleneckModel, cbm
from .cem import ConceptEmbeddingModel, cem
from .encoders import mlp
from .interventions import Intervention
from .io import load_model, save_model

__all__ = [
    "BOTTLENECKS",
    "BlackBoxModel",
    "ConceptBottleneckModel",
    "ConceptEmbeddingModel",
    "ConceptModel",
    "ConceptOutput",
    "Intervention",
    "black_box",
    "cbm",
    "cem",
    "load_model",
    "mlp",
    "predict",
    "save_model",
]
