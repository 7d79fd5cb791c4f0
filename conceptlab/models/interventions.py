"""Concept interventions: data that overwrites concepts, policies that pick them, curves of accuracy.

An ``Intervention`` is a boolean mask plus the values to write; every model takes one in
``forward``. A policy ranks the intervention *units* (concept groups, or single concepts) of
each sample; intervening on the first n units of that ranking for n = 0..G gives a curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..datasets.base import ConceptDataset
    from .base import ConceptModel


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


# A policy maps (concept probabilities (B, k), unit membership (G, k) bool, generator) to
# priorities (B, G): each sample intervenes on its units in decreasing priority.
Policy = Callable[[Tensor, Tensor, torch.Generator], Tensor]


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


def with_competence(mask: Tensor, c: Tensor, competence: float, generator: torch.Generator) -> Tensor:
    """Intervention values where, per sample, round((1 - competence) * n_intervened) concepts are wrong.

    competence 1 writes the true labels, 0 writes the opposite label for every intervened concept.
    Which intervened concepts are wrong is drawn at random.
    """
    if not 0.0 <= competence <= 1.0:
        raise ValueError(f"competence must lie in [0, 1]; got {competence}")
    if competence == 1.0:
        return c
    keys = torch.rand(mask.shape, generator=generator).to(mask.device)
    keys = torch.where(mask, keys, torch.full_like(keys, 2.0))  # never pick a concept left alone
    rank = keys.argsort(dim=1).argsort(dim=1)
    n_wrong = torch.round((1.0 - competence) * mask.sum(1, keepdim=True).float())
    wrong = (rank < n_wrong) & mask
    return torch.where(wrong, 1.0 - c, c)


@dataclass(frozen=True)
class InterventionCurve:
    """Task accuracy after intervening on 0, 1, ..., G units, over ``repeats`` drawn orders."""

    policy: str
    competence: float
    units: tuple[str, ...]
    accuracy_mean: tuple[float, ...]
    accuracy_std: tuple[float, ...]

    @property
    def name(self) -> str:
        return self.policy if self.competence == 1.0 else f"{self.policy}@competence={self.competence:g}"


def intervention_curve(
    model: ConceptModel,
    data: ConceptDataset,
    policy: str | Policy = "random",
    groups: bool = True,
    competence: float = 1.0,
    repeats: int = 5,
    seed: int = 0,
    binary_threshold: float = 0.0,
    codes: Tensor | None = None,
) -> InterventionCurve:
    """Intervene on the first n units of each sample's policy order, for n = 0..G.

    Units are the concept groups of ``data.info`` (``groups=True``) or single concepts. Each
    repeat draws new random orders (and new wrong values when ``competence`` < 1). ``codes``
    (``encode_all(model, data.inputs)``) saves re-encoding the data when several curves are drawn.
    """
    from ..metrics import task_accuracy
    from .base import decode_all, encode_all

    if model.n_concepts == 0:
        raise ValueError(f"{type(model).__name__} has no concepts; intervention curves need a concept model")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}")
    info = data.info
    if groups:
        units, names = info.group_matrix(), info.group_names
    else:
        units, names = torch.eye(info.n_concepts, dtype=torch.bool), info.concept_names
    rank_policy = resolve_policy(policy)
    generator = torch.Generator().manual_seed(seed)
    if codes is None:
        codes = encode_all(model, data.inputs)  # interventions only change what comes after the encoding
    probs = decode_all(model, codes).concept_probs
    accuracies = torch.zeros(repeats, units.shape[0] + 1)
    for r in range(repeats):
        priorities = rank_policy(probs, units, generator)
        if priorities.shape != (len(data), units.shape[0]):
            raise ValueError(f"policy returned priorities of shape {tuple(priorities.shape)}; expected {(len(data), units.shape[0])}")
        ranks = unit_ranks(priorities.cpu())
        for n in range(units.shape[0] + 1):
            mask = units_to_concepts(ranks < n, units)
            values = with_competence(mask, data.c, competence, generator)
            logits = decode_all(model, codes, Intervention(mask, values)).task_logits
            accuracies[r, n] = task_accuracy(logits, data.y, binary_threshold)
    std = accuracies.std(0) if repeats > 1 else torch.zeros(units.shape[0] + 1)
    policy_name = policy if isinstance(policy, str) else getattr(policy, "__name__", "custom")
    return InterventionCurve(
        policy_name, competence, tuple(names), tuple(accuracies.mean(0).tolist()), tuple(std.tolist())
    )
