"""How concept logits become concept values, for binary and categorical concepts alike.

A binary concept's probability is the sigmoid of its logit. A categorical concept is a group of
members, one per value (``ConceptInfo.categorical``): its members' probabilities are the softmax
of their logits, they sum to 1, and a hard value is the one-hot arg-max. Every model and the
concept loss read concepts through these functions, so a concept type is handled in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Categorical = tuple[tuple[int, ...], ...]  # member indices of each categorical concept


def as_categorical(groups: Sequence[Sequence[int]] | None) -> Categorical:
    """Member indices as a tuple of int tuples (what models store and build specs record)."""
    return tuple(tuple(int(i) for i in members) for members in (groups or ()))


def concept_probabilities(logits: Tensor, categorical: Categorical = ()) -> Tensor:
    """(B, k) concept probabilities: sigmoid per binary concept, softmax within each categorical one.

    Args:
        logits: (B, k) concept logits.
        categorical: Member indices of each categorical concept.

    Returns:
        (B, k) probabilities.
    """
    probs = torch.sigmoid(logits)
    if not categorical:
        return probs
    probs = probs.clone()
    for members in categorical:
        index = list(members)
        probs[:, index] = torch.softmax(logits[:, index], dim=1)
    return probs


def hard_concepts(probs: Tensor, categorical: Categorical = ()) -> Tensor:
    """(B, k) hard 0/1 concepts: a binary concept above 0.5, a categorical concept's arg-max member."""
    hard = (probs > 0.5).to(probs.dtype)
    for members in categorical:
        index = list(members)
        hard[:, index] = F.one_hot(probs[:, index].argmax(1), len(index)).to(probs.dtype)
    return hard


def binary_mask(k: int, categorical: Categorical, device: torch.device | None = None) -> Tensor:
    """(k,) True for the concepts that are binary (members of no categorical concept)."""
    mask = torch.ones(k, dtype=torch.bool, device=device)
    for members in categorical:
        mask[list(members)] = False
    return mask


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
