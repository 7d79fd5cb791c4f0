"""One step at a time: the unit a policy would correct next, given what is corrected already.

``intervention_curve`` runs whole orders over a dataset; an interactive user (or a loop of your
own) asks instead "which unit next?" after each correction. ``next_units`` answers with the same
rules: a static policy ranks the units once from the model's uncorrected predictions and the next
unit is the best one not yet corrected; a sequential policy is asked anew with the intervention so
far. Seeding the generator the same way gives the same order every time it is asked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.base import ConceptModel, Intervention
from ..runtime import evaluating
from .policies import Policy, PolicyState, PriorityFunction, unit_ranks
from .registry import resolve_policy


@torch.no_grad()
def next_units(
    model: ConceptModel,
    codes: Tensor,
    units: Tensor,
    *,
    done: Tensor,
    intervention: Intervention | None,
    policy: str | Policy | PriorityFunction,
    c: Tensor | None = None,
    y: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """Index (B,) of the unit each sample's policy corrects next.

    ``codes`` are ``model.encode`` outputs, ``units`` the (G, k) unit membership, ``done`` (B, G)
    the units already corrected and ``intervention`` their values. Policies that read labels need
    the true concepts ``c`` and labels ``y``. A sample with every unit corrected is an error.

    Args:
        model: The trained model.
        codes: ``model.encode`` outputs of the samples.
        units: (G, k) unit membership.
        done: (B, G) the units already corrected.
        intervention: Their values (None when nothing is corrected yet).
        policy: A name, a ``Policy`` or a plain priority function.
        c: (B, k) true concepts, for policies that read labels.
        y: (B,) true classes, for policies that read labels.
        seed: Breaks ties and draws random orders.

    Returns:
        (B,) unit indices.

    Examples:
        >>> from conceptlab.interventions import next_units
        >>> from conceptlab.models import cbm
        >>> model = cbm(in_features=2, n_concepts=2, n_classes=2)
        >>> units = torch.eye(2, dtype=torch.bool)
        >>> done = torch.tensor([[True, False], [False, True]])
        >>> next_units(model, model.encode(torch.randn(2, 2)), units, done=done, intervention=None, policy="random").tolist()
        [1, 0]
    """
    rule = resolve_policy(policy)
    if rule.uses_labels and (c is None or y is None):
        raise ValueError(f"the {rule.name!r} policy reads the true concepts and labels: pass c and y")
    done = done.bool().to(codes.device)
    if done.shape != (codes.shape[0], units.shape[0]):
        raise ValueError(f"done has shape {tuple(done.shape)}; expected (batch, n_units) = {(codes.shape[0], units.shape[0])}")
    if done.all(1).any():
        raise ValueError("every unit of a sample is corrected already: there is no next unit")
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model):
        probs = model.decode(codes).concept_probs
        if rule.sequential:
            state = PolicyState(model, codes, probs, units.to(codes.device), done, intervention, generator, c, y)
        else:  # a static order is drawn once, from the uncorrected predictions, as in intervention_curve
            state = PolicyState(model, codes, probs, units.to(codes.device), torch.zeros_like(done), None, generator, c, y)
        scores = rule(state)
    return unit_ranks(scores.masked_fill(done, float("-inf")), generator).argmin(1)
