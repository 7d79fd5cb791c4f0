"""Concept models: plain ``nn.Module``s with ``forward(x, intervention=None) -> ConceptOutput``."""

from .base import ConceptEffects, ConceptModel, ConceptOutput, predict
from .blackbox import BlackBoxModel, black_box
from .cbm import BOTTLENECKS, ConceptBottleneckModel, cbm
from .cem import ConceptEmbeddingModel, cem
from .encoders import mlp
from .intcem import InterventionAwareCEM, intcem
from .interventions import Intervention
from .io import load_model, save_model

__all__ = [
    "BOTTLENECKS",
    "BlackBoxModel",
    "ConceptBottleneckModel",
    "ConceptEffects",
    "ConceptEmbeddingModel",
    "ConceptModel",
    "ConceptOutput",
    "Intervention",
    "InterventionAwareCEM",
    "black_box",
    "cbm",
    "cem",
    "intcem",
    "load_model",
    "mlp",
    "predict",
    "save_model",
]
