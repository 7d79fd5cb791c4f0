"""The intervention data type: a boolean mask plus the concept values to write.

Every model takes one in ``forward``. Policies, competence and intervention curves are
evaluation, not models: they live in :mod:`conceptlab.interventions`.
"""

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
        mask, values = _as_tensor(self.mask, "mask"), _as_tensor(self.values, "values")
        if values.device != mask.device:
            values = values.to(mask.device)
        if mask.shape != values.shape or mask.ndim != 2:
            raise ValueError(
                f"intervention mask {tuple(mask.shape)} and values {tuple(values.shape)} "
                "must have the same (batch, n_concepts) shape"
            )
        if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
            raise ValueError("the intervention mask must hold booleans (or 0 / 1): True where a concept is overwritten")
        values = values.float()
        if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise ValueError("intervention values must be concept labels in [0, 1] without NaN; "
                             "pass the true labels (e.g. data.c), not logits or probabilities outside that range")
        object.__setattr__(self, "mask", mask.bool())
        object.__setattr__(self, "values", values)

    @classmethod
    def all(cls, values: Tensor) -> Intervention:
        """Intervene on every concept with ``values``."""
        return cls(torch.ones_like(values, dtype=torch.bool), values)

    def slice(self, index: slice | Tensor) -> Intervention:
        return Intervention(self.mask[index], self.values[index])

    def to(self, device: torch.device | str) -> Intervention:
        return Intervention(self.mask.to(device), self.values.to(device))


def _as_tensor(value, what: str) -> Tensor:
    """Lists and numpy arrays become tensors; anything else is refused with a message."""
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"intervention {what} must be a tensor, numpy array or nested list of numbers; "
                         f"got {type(value).__name__}") from None

