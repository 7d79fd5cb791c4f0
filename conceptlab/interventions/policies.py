"""Intervention policies: per sample, an order in which to intervene on concept groups or concepts.

A policy maps (concept probabilities (B, k), unit membership (G, k) bool, generator) to
priorities (B, G); each sample intervenes on its units in decreasing priority.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Policy = Callable[[Tensor, Tensor, torch.Generator], Tensor]  # (probs (B, k), units (G, k), generator) -> (B, G)


def random_policy(probs: Tensor, units: Tensor, generator: torch.Generator) -> Tensor:
    """A uniformly random order of the units, drawn independently for every sample."""
    return torch.rand(probs.shape[0], units.shape[0], generator=generator)


def uncertainty_policy(probs: Tensor, units: Tensor, generator: torch.Generator) -> Tensor:
    """Most uncertain first: mean of 1 / |p - 0.5| over a unit's concepts (random tie-break)."""
    uncertainty = 1.0 / ((probs.detach().float().cpu() - 0.5).abs() + 1e-6)
    members = units.float()
    score = uncertainty @ members.T / members.sum(1)
    return score + 1e-6 * torch.rand(score.shape, generator=generator)


POLICIES: dict[str, Policy] = {"random": random_policy, "uncertainty": uncertainty_policy}


def resolve_policy(policy: str | Policy) -> Policy:
    """A policy by name ("random", "uncertainty") or the callable itself."""
    if callable(policy):
        return policy
    if policy not in POLICIES:
        raise ValueError(f"unknown intervention policy {policy!r}; choose one of {', '.join(POLICIES)} or pass a callable")
    return POLICIES[policy]


def unit_ranks(priorities: Tensor) -> Tensor:
    """Position of every unit in its sample's order (0 = intervened first)."""
    order = priorities.argsort(dim=1, descending=True)
    return order.argsort(dim=1)


def units_to_concepts(selected: Tensor, units: Tensor) -> Tensor:
    """(B, G) selected units -> (B, k) concept mask."""
    return (selected.float() @ units.float().to(selected.device)) > 0
