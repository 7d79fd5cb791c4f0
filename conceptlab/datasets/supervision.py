"""How much concept supervision a model gets: labels missing at random, concepts or whole concept
groups hidden altogether.

Both act on the training and validation splits' labels only where that is what is studied:
missing labels leave the test split complete (so concept metrics and intervention curves are
measured on every label), while a hidden concept is gone from every split (the model never learns
it, and it cannot be corrected).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import KW_ONLY
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ..info import ConceptInfo
from ..settings import Float, Str, settings
from .base import ConceptData, ConceptSplits


@settings
class Supervision:
    """The concept supervision every dataset block can reduce (keyword-only, so each dataset's own
    required settings still come first): its subclasses document both keys among their attributes.

    Attributes:
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept, in (0, 1] (``keep_concept_groups``); the
            others are removed from every split.
    """

    _: KW_ONLY
    missing_concept_labels: Annotated[Float, Field(ge=0, lt=1)] = 0.0
    hidden_concepts: tuple[Str, ...] = ()
    kept_concept_groups: Annotated[Float, Field(gt=0, le=1)] = 1.0


def hide_labels(splits: ConceptSplits, fraction: float, seed: int) -> ConceptSplits:
    """Mark ``fraction`` of the training and validation concept labels missing (NaN).

    Exactly ``round(fraction * N * k)`` labels of each split are hidden, drawn uniformly with a
    generator of its own (seeded by ``seed`` and the split's name), so the data themselves and the
    test split are unchanged.

    Args:
        splits: The data.
        fraction: Share of labels to hide, in [0, 1).
        seed: Draws which labels.

    Returns:
        The splits with NaN where labels are hidden.

    Raises:
        ValueError: ``fraction`` outside [0, 1).

    Examples:
        >>> from conceptlab.datasets import hide_labels, xor
        >>> splits = hide_labels(xor(size=200), 0.5, seed=0)
        >>> torch.isnan(splits.train.c).float().mean().item(), torch.isnan(splits.test.c).any().item()
        (0.5, False)
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the fraction of missing concept labels must be in [0, 1); got {fraction}")
    if fraction == 0:
        return splits

    def hidden(part: ConceptData, name: str) -> ConceptData:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        c = part.c.clone()
        chosen = rng.choice(c.numel(), size=round(fraction * c.numel()), replace=False)
        c.view(-1)[torch.as_tensor(chosen, dtype=torch.long)] = float("nan")
        return part.with_concepts(c, part.info)

    return ConceptSplits(hidden(splits.train, "train"), hidden(splits.val, "val"), splits.test, splits.concept_source)


def drop_concepts(splits: ConceptSplits, names: Sequence[str]) -> ConceptSplits:
    """The splits without the concepts ``names``: an incomplete concept set, as when the concepts
    a person can name do not explain the task. Groups keep their remaining members.

    Args:
        splits: The data.
        names: Concept names to remove from every split.

    Returns:
        The splits with the remaining concepts, in their order.

    Raises:
        ValueError: A name is not a concept of the data, or every concept would go.

    Examples:
        >>> from conceptlab.datasets import drop_concepts, trig
        >>> drop_concepts(trig(size=100), ["z > 0"]).info.concept_names
        ('a > 0', 'b > 0')
    """
    info = splits.info
    unknown = [n for n in names if n not in info.concept_names]
    if unknown:
        raise ValueError(f"hidden concept(s) {unknown} are not concepts of these data; they are: "
                         f"{', '.join(info.concept_names)}")
    partial = [g for g, members in zip(info.categorical, info.categorical_indices())
               if 0 < sum(info.concept_names[i] in set(names) for i in members) < len(members)]
    if partial:
        raise ValueError(f"hidden concepts cover part of categorical concept(s) {partial}; hide all of its values or none")
    keep = [i for i, n in enumerate(info.concept_names) if n not in set(names)]
    if not keep:
        raise ValueError("hiding every concept leaves a model nothing to predict; keep at least one")
    position = {old: new for new, old in enumerate(keep)}
    groups = {group: tuple(position[i] for i in members if i in position) for group, members in info.concept_groups.items()}
    reduced = ConceptInfo(tuple(info.concept_names[i] for i in keep), info.task_names,
                          {group: members for group, members in groups.items() if members},
                          tuple(g for g in info.categorical if groups[g]), tuple(g for g in info.continuous if groups[g]),
                          info.task)
    columns = torch.as_tensor(keep, dtype=torch.long)
    return ConceptSplits(*(part.with_concepts(part.c[:, columns], reduced) for part in (splits.train, splits.val, splits.test)),
                         splits.concept_source)


GROUP_DRAW_SEED = 42  # the CEM authors' loader draws its concept-group subset after seeding with 42


def keep_concept_groups(splits: ConceptSplits, fraction: float, seed: int = GROUP_DRAW_SEED) -> ConceptSplits:
    """An incomplete concept set as the CEM / MixCEM authors build one: ceil(fraction x G) of the
    G concept groups drawn at random (numpy's legacy permutation under ``seed``, the same draw
    for every run), the other groups' concepts removed from every split.

    Args:
        splits: The data.
        fraction: Share of concept groups kept, in (0, 1].
        seed: Draws which groups (fixed by default, so every seed of a benchmark sees one concept set).

    Returns:
        The splits with the kept groups' concepts, in their order.

    Raises:
        ValueError: ``fraction`` outside (0, 1].

    Examples:
        >>> from conceptlab.datasets import keep_concept_groups, trig
        >>> keep_concept_groups(trig(size=100), 0.5).info.group_names  # ceil(0.5 x 3) = 2 of the 3 groups
        ('a > 0', 'b > 0')
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"the share of concept groups kept must be in (0, 1]; got {fraction}")
    groups = list(splits.info.concept_groups.items())
    kept = set(np.random.RandomState(seed).permutation(len(groups))[: int(np.ceil(len(groups) * fraction))].tolist())
    names = splits.info.concept_names
    dropped = [names[i] for g, (_, members) in enumerate(groups) if g not in kept for i in members]
    return drop_concepts(splits, dropped) if dropped else splits


def labelled_rows(data: ConceptData) -> Tensor | None:
    """The indices of the samples whose concept labels are all known, or None when every one is:
    what corrects concepts with true labels (intervention curves, fitted policies) reads.

    Args:
        data: A split that may hold missing labels (NaN).

    Returns:
        (n,) row indices, or None.
    """
    complete = ~torch.isnan(data.c).any(1)
    return None if bool(complete.all()) else torch.nonzero(complete).flatten()
