"""Intervention policies: the order in which a person corrects the concepts of each sample.

A ``Policy`` scores the intervention units (concept groups or single concepts) of a batch of
samples, ``(B, G)``, higher first, from a ``PolicyState``. A *static* policy scores once, from
the model's own predictions; a *sequential* one is asked again after every correction and sees
the intervention so far. A policy that ``uses_labels`` reads the true concepts and task labels:
an upper bound to compare with, not something a deployed system can run. Every policy works on
the whole batch at once; none loops over samples in Python.

The named policies are listed in ``registry``; the Shin et al. criteria are in ``criteria``,
the sequential ones (CooP, oracle, learned) in ``sequential``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch
from torch import Tensor

from ..datasets.base import ConceptDataset
from ..info import ConceptInfo
from ..models.base import ConceptEffects, ConceptModel, Intervention


@dataclass(frozen=True, eq=False)
class PolicyState:
    """What a policy sees: the model, the encoded batch, its concept probabilities (B, k), the
    units (G, k), which units are already corrected (B, G), the intervention so far, a random
    generator, and (only for policies that use labels) the true concepts and task labels.

    Attributes:
        model: The model.
        codes: The encoded batch (``model.encode``).
        probs: (B, k) concept probabilities.
        units: (G, k) unit membership.
        done: (B, G) the units already corrected.
        intervention: The corrections so far (None when none).
        generator: Random numbers for stochastic policies.
        c: (B, k) true concepts (only for policies that use labels).
        y: (B,) true classes (only for policies that use labels).
    """

    model: ConceptModel
    codes: Tensor
    probs: Tensor
    units: Tensor
    done: Tensor
    intervention: Intervention | None
    generator: torch.Generator
    c: Tensor | None = None
    y: Tensor | None = None

    @cached_property
    def effects(self) -> ConceptEffects:
        """Task logits now and the change from correcting each concept (computed once per state)."""
        return self.model.concept_effects(self.codes, self.intervention)

    def per_unit(self, concept_scores: Tensor, reduce: Literal["mean", "max"] = "mean") -> Tensor:
        """(B, k) concept scores -> (B, G): the mean (or the max) over each unit's concepts."""
        if reduce == "max":
            members = self.units.to(concept_scores.device).bool().unsqueeze(0)
            return concept_scores.unsqueeze(1).masked_fill(~members, float("-inf")).amax(-1)
        members = self.units.to(concept_scores.dtype)
        return concept_scores @ members.T / members.sum(1)

    def slice(self, rows: slice) -> PolicyState:
        """The same state for a block of samples."""
        return PolicyState(
            self.model, self.codes[rows], self.probs[rows], self.units, self.done[rows],
            self.intervention.slice(rows) if self.intervention is not None else None, self.generator,
            self.c[rows] if self.c is not None else None, self.y[rows] if self.y is not None else None,
        )


@dataclass(frozen=True)
class Policy:
    """A named scoring rule: ``score(state) -> (B, G)`` priorities, higher corrected first.

    ``sequential``: asked again after every correction. ``uses_labels``: reads the true concepts
    and labels (never deployable). ``stochastic``: draws random numbers, so its scores are
    recomputed for every repeat of a curve. ``source`` names the paper the rule comes from.
    ``fit``: set on policies that learn from data first (``fit_policy`` calls it and returns the
    ready policy, whose ``settings`` record what was chosen); such a policy cannot score unfitted.
    ``needs``: what the rule assumes of the data, from ``BINARY_CONCEPTS`` (it reads concept
    probabilities p against 1 - p, or sets a concept to 0 and 1) and ``MULTICLASS`` (it reads class
    probabilities), and ``UNCERTAINTY`` (it reads the uncertainty the model reports);
    ``check_applies`` refuses it elsewhere.

    Attributes:
        name: The policy's name.
        score: ``score(state) -> (B, G)`` priorities.
        sequential: Asked again after every correction.
        uses_labels: Reads the true concepts and labels (never deployable).
        stochastic: Draws random numbers (rescored every repeat).
        source: The paper the rule comes from.
        fit: For policies that learn from data: returns the ready policy.
        settings: What fitting chose.
        needs: What the rule assumes of the data and model (``BINARY_CONCEPTS``, ``MULTICLASS``, ``UNCERTAINTY``).
    """

    name: str
    score: Callable[[PolicyState], Tensor] = field(repr=False)
    sequential: bool = False
    uses_labels: bool = False
    stochastic: bool = False
    source: str = ""
    fit: Callable[[PolicyData], Policy] | None = field(default=None, repr=False)
    settings: dict[str, float] = field(default_factory=dict)
    needs: tuple[str, ...] = ()

    def unmet_needs(self, info: ConceptInfo, model: ConceptModel | None = None) -> list[str]:
        """The entries of ``needs`` that data described by ``info`` (and ``model``, where given) do
        not meet (empty: it applies)."""
        held = {BINARY_CONCEPTS: not info.continuous, MULTICLASS: info.task == "multiclass",
                UNCERTAINTY: model is None or model.reports_uncertainty}
        return [need for need in self.needs if not held.get(need, True)]

    def __call__(self, state: PolicyState) -> Tensor:
        if self.fit is not None:
            raise ValueError(f"the {self.name!r} policy is fitted on data before use ({self.source}): pass "
                             f"fit_policy({self.name!r}, model, train=..., val=...) from conceptlab.interventions instead")
        return self.score(state)


BINARY_CONCEPTS = "binary or categorical concepts"
"""A ``Policy.needs`` entry: the rule reads p against 1 - p, or sets a concept to 0 and 1."""
MULTICLASS = "a multiclass task"
"""A ``Policy.needs`` entry: the rule reads class probabilities."""
UNCERTAINTY = "a model that reports concept uncertainty"
"""A ``Policy.needs`` entry: the rule reads ``ConceptOutput.concept_uncertainty`` (ProbCBM, SCBM)."""


def check_applies(rule: Policy, info: ConceptInfo, model: ConceptModel | None = None) -> None:
    """Refuse ``rule`` on data (or a model) it was not made for, saying which policies do apply.

    Args:
        rule: The policy.
        info: The data's concept types and task.
        model: The model it would run on (None: check the data alone).

    Raises:
        ValueError: A rule that needs binary concepts on data with continuous ones, class
            probabilities on a multilabel or regression task, or concept uncertainty from a model
            that reports none.

    Examples:
        >>> from conceptlab.datasets import ConceptInfo
        >>> from conceptlab.interventions import POLICIES, check_applies
        >>> check_applies(POLICIES["uncertainty"], ConceptInfo(("a", "b"), ("no", "yes"), continuous=("b",)))
        Traceback (most recent call last):
        ValueError: the 'uncertainty' policy assumes binary or categorical concepts; ...
    """
    unmet = rule.unmet_needs(info, model)
    if UNCERTAINTY in unmet:
        raise ValueError(f"the {rule.name!r} policy reads the concept uncertainty a model reports; "
                         f"{type(model).__name__} reports none (ProbCBM and SCBM do): use 'uncertainty' for its probabilities")
    if unmet:
        have = f"continuous concepts {list(info.continuous)}" if BINARY_CONCEPTS in unmet else f"a {info.task} task"
        raise ValueError(f"the {rule.name!r} policy assumes {' and '.join(unmet)}; these data have {have}. "
                         "Policies that apply to any data: random, global-val-improvement (or a Policy of your own)")


@dataclass(frozen=True)
class PolicyData:
    """What a policy that learns from data is fitted on: the model, its training and validation
    splits, whether the units are concept groups (else single concepts), and a seed."""

    model: ConceptModel
    train: ConceptDataset
    val: ConceptDataset
    groups: bool = True
    seed: int = 0

    @property
    def units(self) -> Tensor:
        """(G, k) membership of the intervention units."""
        info = self.val.info
        return info.group_matrix() if self.groups else torch.eye(info.n_concepts, dtype=torch.bool)


#: A policy as a plain function: (probs (B, k), units (G, k), generator) -> (B, G) priorities;
#: ``resolve_policy`` wraps one as a static, stochastic :class:`Policy`.
PriorityFunction = Callable[[Tensor, Tensor, torch.Generator], Tensor]


def random_policy(probs: Tensor, units: Tensor, generator: torch.Generator) -> Tensor:
    """A uniformly random order of the units, drawn independently for every sample.

    Args:
        probs: (B, k) concept probabilities (unused: the order is random).
        units: (G, k) membership of the units.
        generator: Draws the orders.

    Returns:
        (B, G) priorities (higher is corrected first).

    Examples:
        >>> from conceptlab.interventions import random_policy
        >>> random_policy(torch.rand(3, 4), torch.eye(4, dtype=torch.bool), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 4])
    """
    return torch.rand(probs.shape[0], units.shape[0], generator=generator).to(probs.device)


def from_function(function: PriorityFunction) -> Callable[[PolicyState], Tensor]:
    return lambda state: function(state.probs, state.units, state.generator)


def unit_ranks(priorities: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Position of every unit in its sample's order (0 = corrected first).

    Exact ties are broken at random with ``generator`` (else by unit index).

    Args:
        priorities: (B, G) a policy's priorities (higher: corrected sooner).
        generator: Breaks exact ties at random (None: by unit index).

    Returns:
        (B, G) ranks.

    Examples:
        >>> from conceptlab.interventions import unit_ranks
        >>> unit_ranks(torch.tensor([[0.1, 0.9, 0.5]])).tolist()
        [[2, 0, 1]]
    """
    if generator is None:
        order = priorities.argsort(dim=1, descending=True, stable=True)
    else:
        shuffle = torch.rand(priorities.shape, generator=generator).argsort(dim=1).to(priorities.device)
        order = shuffle.gather(1, priorities.gather(1, shuffle).argsort(dim=1, descending=True, stable=True))
    return order.argsort(dim=1)


def units_to_concepts(selected: Tensor, units: Tensor) -> Tensor:
    """(B, G) selected units -> (B, k) concept mask.

    Args:
        selected: (B, G) booleans: the units selected per sample.
        units: (G, k) membership of the units.

    Returns:
        (B, k) boolean mask.

    Examples:
        >>> from conceptlab.interventions import units_to_concepts
        >>> units = torch.tensor([[1, 1, 0], [0, 0, 1]], dtype=torch.bool)
        >>> units_to_concepts(torch.tensor([[True, False]]), units).tolist()
        [[True, True, False]]
    """
    return (selected.float() @ units.float().to(selected.device)) > 0
