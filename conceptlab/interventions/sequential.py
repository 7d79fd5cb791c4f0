"""Sequential policies, asked again after every correction: CooP, the oracle, IntCEM's learned policy."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .lookahead import after_each_unit, log_class_probabilities, outcomes, predicted_class
from .policies import Policy, PolicyState


def coop_policy(
    concept_weight: float = 1.0, label_weight: float = 1.0, costs: Tensor | None = None, cost_weight: float = 1.0
) -> Policy:
    """CooP (Chauhan et al., AAAI 2023): per concept, ``concept_weight`` * its uncertainty
    (binary entropy of p_i, in bits) + ``label_weight`` * |E_{c_i ~ p_i} P(y_hat | c_i) - P(y_hat)|
    (how much correcting it is expected to move the probability of the currently predicted class
    y_hat) - ``cost_weight`` * its acquisition cost ``costs[i]`` (default: all equal). A unit
    scores the mean of its concepts; recomputed after every correction."""
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

    return Policy("coop", score, sequential=True, source="Chauhan et al., AAAI 2023")


def oracle(state: PolicyState) -> Tensor:
    """Greedy upper bound: the unit whose correction (true values) most raises the true class's probability."""
    log_probs = log_class_probabilities(after_each_unit(state, state.c))  # (B, G, C)
    index = state.y.long().to(log_probs.device).view(-1, 1, 1).expand(-1, log_probs.shape[1], 1)
    return log_probs.gather(-1, index).squeeze(-1)


def learned(state: PolicyState) -> Tensor:
    """The policy a model learned (IntCEM): its scores for the next unit given the intervention so far."""
    model = state.model
    if not hasattr(model, "unit_scores"):
        raise ValueError(f"the 'learned' policy needs a model that learned one (intcem); {type(model).__name__} has none")
    if tuple(model.units.shape) != tuple(state.units.shape) or not torch.equal(model.units.cpu(), state.units.cpu()):
        kind = "concept groups" if model.units.shape[0] != model.n_concepts else "single concepts"
        raise ValueError(f"this model learned to rank {model.units.shape[0]} {kind}, not the {state.units.shape[0]} "
                         f"units asked for; intervene on {kind} (groups={kind == 'concept groups'})")
    return model.unit_scores(state.codes, state.intervention)


SEQUENTIAL = [
    coop_policy(),
    Policy("oracle", oracle, sequential=True, uses_labels=True, source="greedy on the true label (upper bound)"),
    Policy("learned", learned, sequential=True, source="IntCEM, Espinosa Zarlenga et al., NeurIPS 2023"),
]
