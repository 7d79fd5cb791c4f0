"""Concept models: plain ``nn.Module``s with ``forward(x, intervention=None) -> ConceptOutput``."""

from .base import ConceptEffects, ConceptModel, ConceptOutput, Intervention, predict
from .blackbox import BlackBoxModel, black_box, linear_probe
from .cbm import BOTTLENECKS, ConceptBottleneckModel, cbm
from .cem import ConceptEmbeddingModel, cem
from .dcr import DeepConceptReasoner, class_rules, dcr
from .editing import ConceptEdit, apply_edits, class_weights, matching_concepts, sparsity, top_concepts
from .encoders import mlp
from .intcem import InterventionAwareCEM, intcem
from .io import load_model, save_model
from .lfcbm import LabelFreeCBM, lfcbm
from .mixcem import MixtureConceptEmbeddingModel, mixcem
from .pcbm import PosthocCBM, pcbm
from .probcbm import ProbabilisticConceptBottleneckModel, probcbm
from .registry import get_model, list_models, register_model
from .scbm import StochasticConceptBottleneckModel, scbm
from .whitening import ConceptWhitening, ConceptWhiteningModel, whitening

__all__ = [
    "BOTTLENECKS",
    "BlackBoxModel",
    "ConceptBottleneckModel",
    "ConceptEdit",
    "ConceptEffects",
    "ConceptEmbeddingModel",
    "ConceptModel",
    "ConceptOutput",
    "ConceptWhitening",
    "ConceptWhiteningModel",
    "DeepConceptReasoner",
    "Intervention",
    "InterventionAwareCEM",
    "LabelFreeCBM",
    "MixtureConceptEmbeddingModel",
    "PosthocCBM",
    "ProbabilisticConceptBottleneckModel",
    "StochasticConceptBottleneckModel",
    "apply_edits",
    "black_box",
    "cbm",
    "cem",
    "dcr",
    "class_rules",
    "class_weights",
    "get_model",
    "intcem",
    "lfcbm",
    "linear_probe",
    "list_models",
    "load_model",
    "matching_concepts",
    "mixcem",
    "mlp",
    "pcbm",
    "predict",
    "probcbm",
    "register_model",
    "save_model",
    "scbm",
    "sparsity",
    "top_concepts",
    "whitening",
]
