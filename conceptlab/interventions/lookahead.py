"""What a correction would do: task distributions after correcting one more concept or unit.

Built on ``ConceptModel.concept_effects`` (closed form for CBMs and CEMs, one decode per concept
otherwise). A binary task's single logit is read as the two-class distribution (1 - p, p) (``models.heads``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.base import Intervention
from ..models.heads import class_log_probs
from .policies import PolicyState


def entropy(log_probs: Tensor) -> Tensor:
    """Shannon entropy (nats) of distributions given as log-probabilities over the last axis."""
    return -(log_probs.exp() * log_probs).sum(-1)


def outcomes(state: PolicyState) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Log task distributions now (B, C) and after setting each concept alone to 0 / 1 (B, k, C),
    and the concept probabilities as (B, k, 1)."""
    effects = state.effects
    now = class_log_probs(effects.logits)
    to_zero = class_log_probs(effects.logits.unsqueeze(1) + effects.to_zero)
    to_one = class_log_probs(effects.logits.unsqueeze(1) + effects.to_one)
    return now, to_zero, to_one, state.probs.float().unsqueeze(-1)


def after_each_unit(state: PolicyState, values: Tensor) -> Tensor:
    """Task logits (B, G, T) after also correcting each unit's not yet corrected concepts to ``values`` (B, k).

    Models whose corrections add up (``additive_effects``) sum their single-concept effects;
    any other model is decoded once per unit.
    """
    batch, k = state.probs.shape
    current = state.intervention or Intervention(torch.zeros(batch, k, dtype=torch.bool, device=state.probs.device),
                                                 torch.zeros(batch, k, device=state.probs.device))
    fresh = ~current.mask
    units = state.units.to(state.probs.device)
    if state.model.additive_effects:
        return state.effects.after_each_unit(units, values, fresh)
    n_units = units.shape[0]
    adds = units.repeat_interleave(batch, 0) & fresh.repeat(n_units, 1)  # (G*B, k), unit-major
    mask = current.mask.repeat(n_units, 1) | adds
    written = torch.where(adds, values.repeat(n_units, 1).float(), current.values.repeat(n_units, 1))
    codes = state.codes.repeat(n_units, *([1] * (state.codes.ndim - 1)))
    logits = state.model.decode(codes, Intervention(mask, written)).task_logits
    return logits.reshape(n_units, batch, -1).transpose(0, 1)
