"""Concept-annotated datasets: tensors or image files plus named concepts."""

from ..info import ConceptInfo
from .base import ConceptData, ConceptDataset, ConceptSplits, split_dataset
from .cub import load_cub, load_koh_pickles
from .fashion import FashionMNISTSettings
from .features import extract_features
from .files import ImageFolderSettings, TableSettings, TensorFileSettings
from .images import ImageConceptDataset
from .offline import (
    CorrelatedSettings,
    DigitsSettings,
    MixedSettings,
    ShapesSettings,
    correlated_concepts,
    digits_arithmetic,
    mixed_concepts,
    rendered_shapes,
)
from .planted import LabelFreeData, PlantedSettings, planted_embeddings
from .registry import CubSettings, SyntheticSettings, dataset_settings, load_dataset
from .supervision import drop_concepts, hide_labels, keep_concept_groups
from .synthetic import SYNTHETIC_DATASETS, dot, make_synthetic, trig, xor

__all__ = [
    "SYNTHETIC_DATASETS",
    "ShapesSettings",
    "ConceptData",
    "ConceptDataset",
    "ConceptInfo",
    "ConceptSplits",
    "CorrelatedSettings",
    "CubSettings",
    "DigitsSettings",
    "FashionMNISTSettings",
    "ImageConceptDataset",
    "ImageFolderSettings",
    "LabelFreeData",
    "MixedSettings",
    "PlantedSettings",
    "SyntheticSettings",
    "TableSettings",
    "TensorFileSettings",
    "correlated_concepts",
    "dataset_settings",
    "digits_arithmetic",
    "dot",
    "drop_concepts",
    "extract_features",
    "hide_labels",
    "keep_concept_groups",
    "load_cub",
    "load_dataset",
    "load_koh_pickles",
    "make_synthetic",
    "mixed_concepts",
    "planted_embeddings",
    "rendered_shapes",
    "split_dataset",
    "trig",
    "xor",
]
