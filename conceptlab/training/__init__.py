"""Training with Lightning: losses, the concept learner, and the joint / sequential / independent / intcem recipes."""

from ..runtime import seeded
from .config import IntCEMConfig, TrainConfig
from .learner import ConceptLearner, Stage
from .losses import concept_loss, concept_pos_weight, task_loss
from .recipes import RECIPES, FitReport, fit, recipe_stages

__all__ = [
    "RECIPES",
    "ConceptLearner",
    "FitReport",
    "IntCEMConfig",
    "Stage",
    "TrainConfig",
    "concept_loss",
    "concept_pos_weight",
    "fit",
    "recipe_stages",
    "seeded",
    "task_loss",
]
