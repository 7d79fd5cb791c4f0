"""Training with Lightning: losses, the concept learner, and the joint / sequential / independent / intcem / posthoc recipes."""

from ..runtime import seeded
from .config import IntCEMConfig, PosthocConfig, TrainConfig
from .elastic_net import ElasticNetFit, fit_elastic_net
from .labelfree import LabelFreeConfig, LabelFreeReport, fit_label_free
from .learner import ConceptLearner, Stage
from .losses import concept_loss, concept_pos_weight, task_class_weights
from .recipes import RECIPES, FitReport, fit, recipe_stages

__all__ = [
    "RECIPES",
    "ConceptLearner",
    "FitReport",
    "ElasticNetFit",
    "IntCEMConfig",
    "LabelFreeConfig",
    "LabelFreeReport",
    "PosthocConfig",
    "Stage",
    "TrainConfig",
    "concept_loss",
    "concept_pos_weight",
    "fit",
    "fit_elastic_net",
    "fit_label_free",
    "recipe_stages",
    "seeded",
    "task_class_weights",
]
