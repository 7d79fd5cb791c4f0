"""How concept logits become concept values, for binary, categorical and continuous concepts alike.

A binary concept's probability is the sigmoid of its logit. A categorical concept is a group of
members, one per value (``ConceptInfo.categorical``): its members' probabilities are the softmax
of their logits, they sum to 1, and a hard value is the one-hot arg-max. A continuous concept
(``ConceptInfo.continuous``) is a regressed number: its "logit" is the predicted value itself, no
squashing, no threshold. Every model and the concept loss read concepts through these functions,
so a concept type is handled in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Categorical = tuple[tuple[int, ...], ...]  # member indices of each categorical concept
Continuous = tuple[int, ...]  # indices of the continuous concepts


def as_categorical(groups: Sequence[Sequence[int]] | None) -> Categorical:
    """Member indices as a tuple of int tuples (what models store and build specs record)."""
    return tuple(tuple(int(i) for i in members) for members in (groups or ()))


def concept_probabilities(logits: Tensor, categorical: Categorical = (), continuous: Continuous = ()) -> Tensor:
    """(B, k) concept values: sigmoid per binary concept, softmax within each categorical one, the
    logit itself for a continuous one.

    Args:
        logits: (B, k) concept logits.
        categorical: Member indices of each categorical concept.
        continuous: Indices of the continuous concepts.

    Returns:
        (B, k) probabilities (predicted values in the continuous columns).
    """
    probs = torch.sigmoid(logits)
    if not categorical and not continuous:
        return probs
    probs = probs.clone()
    for members in categorical:
        index = list(members)
        probs[:, index] = torch.softmax(logits[:, index], dim=1)
    if continuous:
        probs[:, list(continuous)] = logits[:, list(continuous)]
    return probs


def hard_concepts(probs: Tensor, categorical: Categorical = (), continuous: Continuous = ()) -> Tensor:
    """(B, k) hard concepts: a binary concept 1 above 0.5, a categorical concept's arg-max member,
    a continuous concept's value unchanged."""
    hard = (probs > 0.5).to(probs.dtype)
    for members in categorical:
        index = list(members)
        hard[:, index] = F.one_hot(probs[:, index].argmax(1), len(index)).to(probs.dtype)
    if continuous:
        hard[:, list(continuous)] = probs[:, list(continuous)]
    return hard


def binary_mask(k: int, categorical: Categorical, device: torch.device | None = None, continuous: Continuous = ()) -> Tensor:
    """(k,) True for the concepts that are binary (members of no categorical concept, not continuous)."""
    mask = torch.ones(k, dtype=torch.bool, device=device)
    for members in categorical:
        mask[list(members)] = False
    mask[list(continuous)] = False
    return mask


def continuous_mask(k: int, continuous: Continuous, device: torch.device | None = None) -> Tensor:
    """(k,) True for the continuous concepts."""
    mask = torch.zeros(k, dtype=torch.bool, device=device)
    mask[list(continuous)] = True
    return mask


def check_continuous(indices: Sequence[int] | None, n_concepts: int, categorical: Categorical = ()) -> Continuous:
    """Validated indices of the continuous concepts: distinct, in range, none a categorical member."""
    continuous = tuple(int(i) for i in (indices or ()))
    members = {i for group in categorical for i in group}
    if len(set(continuous)) != len(continuous) or any(not 0 <= i < n_concepts or i in members for i in continuous):
        raise ValueError(f"continuous concepts must be distinct concept indices in [0, {n_concepts}) that belong to no "
                         f"categorical concept; got {list(continuous)}")
    return continuous


def check_categorical(groups: Sequence[Sequence[int]] | None, n_concepts: int) -> Categorical:
    """Validated member indices: each categorical concept has two or more members, all in range,
    and no concept belongs to two of them."""
    categorical = as_categorical(groups)
    seen: set[int] = set()
    for members in categorical:
        if len(members) < 2 or any(not 0 <= i < n_concepts for i in members) or seen & set(members):
            raise ValueError(f"categorical concepts must list two or more distinct concept indices in [0, {n_concepts}), "
                             f"each concept in one of them; got {[list(m) for m in categorical]}")
        seen |= set(members)
    return categorical
