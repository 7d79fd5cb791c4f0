"""The static intervention criteria of Shin et al. (ICML 2023), at concept or group level.

Each scores every concept from the model's own, uncorrected predictions and a unit scores the
mean of its concepts. With p_i the predicted probability of concept i and f the task
distribution (f0 / f1: after setting concept i to 0 / 1):

- ``lcp``: |p_i - c_i|, the concept's prediction loss (reads the true concepts);
- ``cctp``: p_i times the summed absolute change of the task logits between c_i = 0 and 1
  (for a sigmoid CBM, p_i * sum_j |dF_j/dc_i|, the paper's contribution);
- ``ectp``: (1 - p_i) KL(f0 || f) + p_i KL(f1 || f), the expected change of the prediction;
- ``eudtp``: H(f) - [(1 - p_i) H(f0) + p_i H(f1)], the expected decrease of its entropy.

UCP, ``uncertainty``: 1 / |p_i - 0.5|, most uncertain first. A group scores the *max* over its
concepts (as the CEM authors' ``UncertaintyMaximizerPolicy``); ``uncertainty-mean`` takes the mean
(conceptlab's rule before 0.2). The other criteria score a group by the mean of its concepts.

``concept-uncertainty`` (Kim et al., ICML 2023, ProbCBM's ``uncertainty_avg``): the uncertainty the
model itself reports for each concept (``ConceptOutput.concept_uncertainty``: ProbCBM's embedding
variance, SCBM's logit variance), a group the mean of its concepts; only for models that report one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor

from .lookahead import entropy, outcomes
from .policies import BINARY_CONCEPTS, MULTICLASS, UNCERTAINTY, Policy, PolicyState

SOURCE = "Shin et al., ICML 2023"


def ucp(reduce: Literal["mean", "max"]) -> Callable[[PolicyState], Tensor]:
    """UCP with group scores aggregated by ``reduce``."""

    def score(state: PolicyState) -> Tensor:
        return state.per_unit(1.0 / ((state.probs.detach().float() - 0.5).abs() + 1e-6), reduce)

    return score


def lcp(state: PolicyState) -> Tensor:
    """Largest concept prediction loss |p - c| first."""
    return state.per_unit((state.probs.float() - state.c.float()).abs())


def cctp(state: PolicyState) -> Tensor:
    """Largest contribution of the concept to the task logits first."""
    effects = state.effects
    return state.per_unit(state.probs.float() * (effects.to_one - effects.to_zero).abs().sum(-1))


def ectp(state: PolicyState) -> Tensor:
    """Largest expected change (KL divergence) of the task distribution first."""
    now, to_zero, to_one, p = outcomes(state)
    now = now.unsqueeze(1)
    kl_zero = (to_zero.exp() * (to_zero - now)).sum(-1, keepdim=True)
    kl_one = (to_one.exp() * (to_one - now)).sum(-1, keepdim=True)
    return state.per_unit(((1 - p) * kl_zero + p * kl_one).squeeze(-1))


def eudtp(state: PolicyState) -> Tensor:
    """Largest expected decrease of the task distribution's entropy first."""
    now, to_zero, to_one, p = outcomes(state)
    expected = (1 - p.squeeze(-1)) * entropy(to_zero) + p.squeeze(-1) * entropy(to_one)
    return state.per_unit(entropy(now).unsqueeze(1) - expected)


def reported_uncertainty(state: PolicyState) -> Tensor:
    """Most uncertain first, by the uncertainty the model reports for each concept."""
    return state.per_unit(state.model.decode(state.codes, state.intervention).concept_uncertainty.float())


CRITERIA = [
    Policy("uncertainty", ucp("max"), source=SOURCE + "; group max as the CEM authors' code", needs=(BINARY_CONCEPTS,)),
    Policy("uncertainty-mean", ucp("mean"), source=SOURCE + "; group mean", needs=(BINARY_CONCEPTS,)),
    Policy("lcp", lcp, uses_labels=True, source=SOURCE, needs=(BINARY_CONCEPTS,)),
    Policy("cctp", cctp, source=SOURCE, needs=(BINARY_CONCEPTS,)),
    Policy("ectp", ectp, source=SOURCE, needs=(BINARY_CONCEPTS, MULTICLASS)),
    Policy("eudtp", eudtp, source=SOURCE, needs=(BINARY_CONCEPTS, MULTICLASS)),
    Policy("concept-uncertainty", reported_uncertainty, source="Kim et al., ICML 2023 (ProbCBM); group mean",
           needs=(UNCERTAINTY,)),
]
