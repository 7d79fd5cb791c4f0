"""Concepts discovered without labels from a model's own activations: ACE (clustered superpixels,
scored with TCAV), CRAFT / ICE (factorised crop activations, Sobol importance, attribution maps) and
ConceptSHAP (completeness and each concept's Shapley share). Discovered concepts become concept banks
with their example parts (``DiscoveredConcepts.save``) that TCAV, CCE and post-hoc CBMs read."""

from .ace import ACE
from .concepts import DiscoveredConcepts
from .conceptshap import ConceptSHAP
from .craft import CRAFT
from .patches import Patches, grid_patches, slic_segments
from .split import SplitModel

__all__ = ["ACE", "CRAFT", "ConceptSHAP", "DiscoveredConcepts", "Patches", "SplitModel", "grid_patches", "slic_segments"]
