"""Concept interventions as data: which concepts to overwrite, and with which values."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Intervention:
    """Overwrite concept ``i`` of sample ``b`` with ``values[b, i]`` wherever ``mask[b, i]``.

    ``values`` are concept labels in {0, 1}; each model turns them into its own representation
    (a probability, a training-logit percentile, an embedding mixture).
    """

    mask: Tensor
    values: Tensor

    def __post_init__(self) -> None:
        if self.mask.shape != self.values.shape:
            raise ValueError(
                f"intervention mask {tuple(self.mask.shape)} and values {tuple(self.values.shape)} "
                "must have the same (batch, n_concepts) shape"
            )
        object.__setattr__(self, "mask", self.mask.bool())
        object.__setattr__(self, "values", self.values.float())

    @classmethod
    def all(cls, values: Tensor) -> Intervention:
        """Intervene on every concept with ``values``."""
        return cls(torch.ones_like(values, dtype=torch.bool), values)

    def slice(self, index: slice | Tensor) -> Intervention:
        return Intervention(self.mask[index], self.values[index])

    def to(self, device: torch.device | str) -> Intervention:
        return Intervention(self.mask.to(device), self.values.to(device))
