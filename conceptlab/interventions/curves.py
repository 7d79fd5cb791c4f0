"""Intervention curves: task accuracy after intervening on 0, 1, ..., all units, with competence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..datasets.base import ConceptDataset
from ..metrics import task_accuracy
from ..models.base import ConceptModel, decode_all, encode_all
from ..models.interventions import Intervention
from .policies import Policy, resolve_policy, unit_ranks, units_to_concepts


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
