"""Policies by name or object: ``intervention_curve`` draws one's curve, ``fit_policy`` readies one that learns from data."""

from __future__ import annotations

from torch import Tensor

from ..datasets.base import ConceptDataset
from ..datasets.supervision import labelled_rows
from ..models.base import ConceptModel
from .curves import InterventionCurve, policy_curve
from .policies import Policy, PolicyData, PriorityFunction, check_applies
from .registry import resolve_policy


def intervention_curve(
    model: ConceptModel,
    data: ConceptDataset,
    policy: str | Policy | PriorityFunction = "random",
    *,
    groups: bool = True,
    competence: float = 1.0,
    repeats: int = 5,
    seed: int = 0,
    binary_threshold: float = 0.0,
    codes: Tensor | None = None,
    chunk_size: int = 1024,
) -> InterventionCurve:
    """Correct the first n units of each sample's policy order, for n = 0..G, and measure accuracy.

    Units are the concept groups of ``data.info`` (``groups=True``) or single concepts. A static
    policy ranks the units once; a sequential one picks the next unit after every correction.
    Each repeat breaks ties and draws random orders (and wrong values when ``competence`` < 1)
    anew. ``codes`` (``encode_all(model, data.inputs)``) saves re-encoding the data when several
    curves are drawn; policies see ``chunk_size`` samples at a time. A policy that learns from
    data (``coop``, ``global-val-*``, ``behavioural-cloning``) is passed fitted: ``fit_policy``.

    Args:
        model: The trained model.
        data: The split to measure (the test split).
        policy: A name of ``POLICIES``, a ``Policy`` or a plain priority function.
        groups: Units are the concept groups of ``data.info`` (else single concepts).
        competence: Fraction of correct values written (1: the true labels; 0: all wrong).
        repeats: Random orders (and wrong-value draws) averaged.
        seed: Draws the orders, ties and wrong values.
        binary_threshold: The decision threshold of a single binary logit.
        codes: ``encode_all(model, data.inputs)``, when already computed.
        chunk_size: Samples a policy scores at once.

    Returns:
        An ``InterventionCurve``: accuracy mean and std at 0..G units corrected, and its AUC.

    Raises:
        ValueError: An unknown policy, a model without concepts, data that do not fit the model, or
            data with a missing concept label (NaN).

    Examples:
        >>> from conceptlab.datasets import xor
        >>> from conceptlab.interventions import intervention_curve
        >>> from conceptlab.models import cbm
        >>> curve = intervention_curve(cbm(in_features=2, n_concepts=2, n_classes=2), xor(size=100).test, "uncertainty", repeats=1)
        >>> len(curve.accuracy_mean)  # 0, 1 and 2 concepts corrected
        3
    """
    rule = resolve_policy(policy)
    if rule.fit is not None:
        raise ValueError(f"the {rule.name!r} policy learns from the model's training and validation splits first: "
                         f"pass fit_policy({rule.name!r}, model, train=..., val=...) as the policy")
    return policy_curve(model, data, rule, groups, competence, repeats, seed, binary_threshold, codes, chunk_size)


def fit_policy(
    policy: str | Policy | PriorityFunction,
    model: ConceptModel,
    *,
    train: ConceptDataset | None = None,
    val: ConceptDataset | None = None,
    groups: bool = True,
    seed: int = 0,
) -> Policy:
    """The policy ready to score: fitted on ``train`` / ``val`` if it learns from data, else itself.

    Args:
        policy: A name of ``POLICIES``, a ``Policy`` or a policy function.
        model: The trained model whose interventions the policy orders.
        train: The model's training split.
        val: The model's validation split (never the test split).
        groups: Units are the concept groups of the data (else single concepts), as in ``intervention_curve``.
        seed: Seeds what the fit draws.

    Returns:
        A ``Policy``; a learned one carries its fitted state.

    Raises:
        ValueError: The policy needs training or validation data that were not given.

    Examples:
        >>> from conceptlab.interventions import fit_policy
        >>> from conceptlab.models import cbm
        >>> fit_policy("uncertainty", cbm(in_features=2, n_concepts=2, n_classes=2)).name
        'uncertainty'
    """
    rule = resolve_policy(policy)
    if rule.fit is None:
        return rule
    if train is not None:
        check_applies(rule, train.info, model)
    if train is None or val is None:
        raise ValueError(f"the {rule.name!r} policy is fitted on the model's training and validation splits: "
                         "pass train= and val=")
    train, val = (part if (rows := labelled_rows(part)) is None else part.subset(rows) for part in (train, val))
    return rule.fit(PolicyData(model, train, val, groups, seed))
