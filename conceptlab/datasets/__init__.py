"""Concept-annotated datasets: tensors plus named concepts."""

from .base import ConceptDataModule, ConceptDataset, ConceptInfo, ConceptSplits, TensorBatches, split_dataset
from .registry import load_dataset
from .synthetic import SYNTHETIC_DATASETS, dot, make_synthetic, trig, xor

__all__ = [
    "ConceptDataModule",
    "ConceptDataset",
    "ConceptInfo",
    "ConceptSplits",
    "SYNTHETIC_DATASETS",
    "TensorBatches",
    "dot",
    "load_dataset",
    "make_synthetic",
    "split_dataset",
    "trig",
    "xor",
]
