"""Discovered concepts as the rest of conceptlab reads them: a concept bank with example parts.

Every discovery method ends here. Each concept keeps its example parts (crops or segments), their
activations, and negatives (the parts that hold the concept least: the lowest coefficients for
CRAFT, parts of other clusters for ACE). ``bank()`` fits one CAV per concept from them
(``concept_bank``: the bank PCBM, CCE and TCAV read), and ``save()`` writes that bank with the layer,
the model's fingerprint, the importance and small thumbnails of the examples, so that
``tcav_from_bank`` can score new inputs and a person can see what each concept looks like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..activations import model_fingerprint
from ..bank import BANK_ALPHA, concept_bank
from ..cav import CAVBank
from .patches import Patches

THUMBNAIL = 64  # side of the example images saved beside a bank


@dataclass(frozen=True)
class DiscoveredConcepts:
    """Concepts found without labels, with their example parts.

    Attributes:
        method: ``craft``, ``ace`` (or another discovery method's name).
        layer: The layer the concepts live on.
        names: One name per concept.
        examples: Per concept, its example parts (most typical first).
        positives: Per concept, (n, D) activations of its example parts.
        negatives: Per concept, (n, D) activations of parts that hold it least.
        importance: (K,) how much each concept matters to the class (Sobol index, TCAV score), if measured.
    """

    method: str
    layer: str
    names: list[str]
    examples: list[Patches]
    positives: list[Tensor]
    negatives: list[Tensor]
    importance: Tensor | None = None

    @classmethod
    def from_parts(cls, method: str, layer: str, patches: Patches, activations: Tensor, top: list[Tensor],
                   scores: Tensor | None, importance: Tensor | None) -> DiscoveredConcepts:
        """Concepts from the rows ``top`` of ``patches`` each one holds; negatives are the parts with
        the lowest ``scores`` column (or, without scores, parts outside the concept drawn at random)."""
        negatives = []
        for k, rows in enumerate(top):
            if scores is not None:
                negatives.append(activations[scores[:, k].argsort()[: len(rows)]])
            else:
                outside = torch.ones(len(patches), dtype=torch.bool)
                outside[rows] = False
                pool = outside.nonzero().flatten()
                pick = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(k))[: len(rows)]]
                negatives.append(activations[pick])
        return cls(method, layer, [f"concept {k + 1}" for k in range(len(top))], [patches.subset(r) for r in top],
                   [activations[r] for r in top], negatives, importance)

    def ranked(self) -> list[int]:
        """Concept indices, most important first (discovery order without an importance)."""
        if self.importance is None:
            return list(range(len(self.names)))
        return self.importance.argsort(descending=True).tolist()

    def bank(self, *, alpha: float = BANK_ALPHA, seed: int = 0) -> CAVBank:
        """One CAV per concept, its example parts against its negatives (``concept_bank``).

        Args:
            alpha: The CAV solver's regularisation.
            seed: Seeds the held-out split.

        Returns:
            The fitted bank, pairs ``(name, name:negatives)`` in concept order.
        """
        return concept_bank({name: (pos, neg) for name, pos, neg in zip(self.names, self.positives, self.negatives)},
                            alpha=alpha, seed=seed)

    def save(self, path: str | Path, model: nn.Module, *, alpha: float = BANK_ALPHA, seed: int = 0) -> Path:
        """Fit the bank and write it with the layer, the model's fingerprint, the importance and thumbnails.

        Args:
            path: The bank file to write (``CAVBank.load`` reads it).
            model: The model the concepts were found on.
            alpha: The CAV solver's regularisation.
            seed: Seeds the held-out split.

        Returns:
            The path written.
        """
        thumbnails = {name: F.interpolate(parts.images.float(), size=(THUMBNAIL, THUMBNAIL), mode="bilinear",
                                          align_corners=False).half()
                      for name, parts in zip(self.names, self.examples)}
        return self.bank(alpha=alpha, seed=seed).save(
            path, layer=self.layer, reduce="mean", model=model_fingerprint(model), method=self.method, concepts=list(self.names),
            importance=None if self.importance is None else self.importance.tolist(), examples=thumbnails,
            example_sources={name: parts.source for name, parts in zip(self.names, self.examples)})
