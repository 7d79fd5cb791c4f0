"""Policies that look at the intervention so far: CooP, the greedy oracles, IntCEM's learned policy.

All are sequential (asked again after every correction) except ``learned-sample``, which, as the
IntCEM authors' evaluation does, draws a whole order at once from the uncorrected sample's scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.heads import class_log_probs, predicted_class
from .lookahead import after_each_unit, outcomes
from .policies import BINARY_CONCEPTS, MULTICLASS, Policy, PolicyState


def coop_policy(
    *,
    concept_weight: float = 1.0, label_weight: float = 1.0, costs: Tensor | None = None, cost_weight: float = 1.0
) -> Policy:
    """CooP (Chauhan et al., AAAI 2023): per concept, ``concept_weight`` * its uncertainty
    (binary entropy of p_i, in bits) + ``label_weight`` * |E_{c_i ~ p_i} P(y_hat | c_i) - P(y_hat)|
    (how much correcting it is expected to move the probability of the currently predicted class
    y_hat) - ``cost_weight`` * its acquisition cost ``costs[i]`` (default: all equal). A unit
    scores the mean of its concepts; recomputed after every correction.

    Args:
        concept_weight: Weight of a concept's uncertainty.
        label_weight: Weight of its expected effect on the predicted class.
        costs: (k,) acquisition cost of each concept (default: all equal).
        cost_weight: Weight of the cost.

    Returns:
        The sequential policy.

    Examples:
        >>> from conceptlab.interventions import coop_policy
        >>> coop_policy(label_weight=0.5).sequential
        True
    """
    if costs is not None:
        costs = torch.as_tensor(costs, dtype=torch.float32)
        if costs.ndim != 1 or not torch.isfinite(costs).all():
            raise ValueError("CooP costs must be a finite 1-D tensor with one cost per concept")

    def score(state: PolicyState) -> Tensor:
        p = state.probs.float().clamp(1e-6, 1 - 1e-6)
        uncertainty = -(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2)
        now, to_zero, to_one, _ = outcomes(state)
        chosen = predicted_class(state.effects.logits)
        def probability_of_chosen(log_probs: Tensor) -> Tensor:  # (B, k, C) -> (B, k)
            index = chosen.view(-1, 1, 1).expand(-1, log_probs.shape[1], 1)
            return log_probs.gather(-1, index).squeeze(-1).exp()
        expected = (1 - p) * probability_of_chosen(to_zero) + p * probability_of_chosen(to_one)
        current = now.gather(-1, chosen.unsqueeze(-1)).exp()
        concept_score = concept_weight * uncertainty + label_weight * (expected - current).abs()
        if costs is not None:
            if costs.shape[0] != p.shape[1]:
                raise ValueError(f"CooP was given {costs.shape[0]} costs for {p.shape[1]} concepts")
            concept_score = concept_score - cost_weight * costs.to(p.device)
        return state.per_unit(concept_score)

    return Policy("coop", score, sequential=True, source="Chauhan et al., AAAI 2023", needs=(BINARY_CONCEPTS, MULTICLASS))


def _true_class_probability(log_probs: Tensor, y: Tensor) -> Tensor:
    """(B, n, C) log-probabilities -> (B, n): those of each sample's true class."""
    index = y.long().to(log_probs.device).view(-1, 1, 1).expand(-1, log_probs.shape[1], 1)
    return log_probs.gather(-1, index).squeeze(-1)


def oracle(state: PolicyState) -> Tensor:
    """Greedy upper bound: the unit whose correction (all its concepts at once, true values) most
    raises the true class's probability."""
    return _true_class_probability(class_log_probs(after_each_unit(state, state.c)), state.y)


def oracle_mean(state: PolicyState) -> Tensor:
    """The CEM authors' greedy oracle (``GreedyOptimal``): each concept scores the probability of
    the true class after correcting it alone; a group scores the mean over its concepts, counting
    already corrected ones as 0."""
    effects = state.effects
    change = torch.where(state.c.bool().unsqueeze(-1), effects.to_one, effects.to_zero)  # (B, k, T)
    probability = _true_class_probability(class_log_probs(effects.logits.unsqueeze(1) + change), state.y).exp()
    if state.intervention is not None:
        probability = probability.masked_fill(state.intervention.mask, 0.0)
    return state.per_unit(probability)


def _learned_scores(state: PolicyState, intervention) -> Tensor:
    model = state.model
    if not hasattr(model, "unit_scores"):
        raise ValueError(f"the 'learned' policies need a model that learned one (intcem); {type(model).__name__} has none")
    if tuple(model.units.shape) != tuple(state.units.shape) or not torch.equal(model.units.cpu(), state.units.cpu()):
        kind = "concept groups" if model.units.shape[0] != model.n_concepts else "single concepts"
        raise ValueError(f"this model learned to rank {model.units.shape[0]} {kind}, not the {state.units.shape[0]} "
                         f"units asked for; intervene on {kind} (groups={kind == 'concept groups'})")
    return model.unit_scores(state.codes, intervention)


def learned(state: PolicyState) -> Tensor:
    """The policy a model learned (IntCEM), greedily: its best-scored unit next, asked again after
    every correction."""
    return _learned_scores(state, state.intervention)


def learned_sample(state: PolicyState) -> Tensor:
    """IntCEM's policy as the authors evaluate it: units drawn without replacement in proportion to
    the softmax of its scores for the uncorrected sample (Gumbel-top-k: log-softmax plus Gumbel noise)."""
    log_probs = _learned_scores(state, None).float().log_softmax(-1)
    uniform = torch.rand(log_probs.shape, generator=state.generator).to(log_probs.device).clamp(1e-12, 1 - 1e-12)
    return log_probs - (-uniform.log()).log()


SEQUENTIAL = [
    Policy("oracle", oracle, sequential=True, uses_labels=True, source="greedy on the true label (upper bound)",
           needs=(MULTICLASS,)),
    Policy("oracle-mean", oracle_mean, sequential=True, uses_labels=True,
           source="greedy on the true label, group = mean of single-concept effects (CEM authors' GreedyOptimal)",
           needs=(MULTICLASS,)),
    Policy("learned", learned, sequential=True, source="IntCEM, Espinosa Zarlenga et al., NeurIPS 2023; argmax",
           needs=(MULTICLASS,)),
    Policy("learned-sample", learned_sample, stochastic=True,
           source="IntCEM, Espinosa Zarlenga et al., NeurIPS 2023; sampled from its softmax as the authors' code",
           needs=(MULTICLASS,)),
]
