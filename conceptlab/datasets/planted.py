"""Synthetic embeddings with planted concept directions, for label-free CBMs.

A label-free CBM reads three things a user supplies as tensors: a backbone's embeddings of the
images, an image-text model's embeddings of the same images, and that model's embeddings of each
candidate concept's text (and, optionally, of each class name). ``planted_embeddings`` makes all
three from hidden binary concepts, so that what the method should recover is known:

- backbone embeddings: a random linear image of the concepts plus noise;
- image-text space: concept ``k``'s text points along an axis ``t_k``; an image's embedding is
  the unit vector of ``sum_k (2 z_k - 1) t_k`` plus noise, so its similarity to ``t_k`` rises with ``z_k``;
- four candidate concepts that each filter of the method should remove: a near-copy of concept 1's
  text (too similar to another concept), a class name's text (too similar to a class), a direction
  no image reaches (never activates), and a direction only the image-text noise reaches, which the
  backbone cannot see (not interpretable).

The task is the class with the highest score of a random linear map of the concepts.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ..info import ConceptInfo
from ..settings import PositiveInt, Str, settings
from .base import ConceptDataset, ConceptSplits
from .supervision import Supervision
from .synthetic import block_splits

DECOYS = ("near-copy of c1", "class name", "never active", "not visible to the backbone")
"""The candidate concepts ``planted_embeddings`` adds for each filter to remove, in order."""


@dataclass(frozen=True)
class LabelFreeData:
    """Everything a label-free CBM is fitted on, plus the planted truth to check it against.

    Attributes:
        splits: Train / val / test with the backbone embeddings as ``x``, the task labels as ``y``
            and the planted concepts as ``c`` (for evaluation only: the method never reads them).
        image_embeddings: The image-text model's embeddings of each split's images, (N, E) each.
        text_embeddings: (K, E) the candidate concepts' text embeddings.
        concept_names: The K candidate concepts' names (the planted ones first, then ``DECOYS``).
        class_text_embeddings: (C, E) the class names' text embeddings.
    """

    splits: ConceptSplits
    image_embeddings: tuple[Tensor, Tensor, Tensor]
    text_embeddings: Tensor
    concept_names: tuple[str, ...]
    class_text_embeddings: Tensor

    def labelled_as(self, concepts: Sequence[str]) -> ConceptSplits:
        """The splits with ``c`` holding the planted labels of ``concepts`` (names of candidates,
        e.g. what a fit kept), in that order: the near-copy of c1 is labelled as c1; a decoy
        with no planted concept is refused.

        Raises:
            ValueError: A name that is not a candidate or has no planted concept.
        """
        planted = self.splits.info.concept_names
        columns = []
        for name in concepts:
            source = planted[0] if name == DECOYS[0] else name
            if source not in planted:
                raise ValueError(f"{name!r} has no planted concept; the planted ones are {list(planted)} (and {DECOYS[0]!r})")
            columns.append(planted.index(source))
        info = ConceptInfo(tuple(concepts), self.splits.info.task_names)
        return ConceptSplits(*(ConceptDataset(part.x, part.c[:, columns], part.y, info)
                               for part in (self.splits.train, self.splits.val, self.splits.test)))


def planted_embeddings(size: int = 3000, n_concepts: int = 6, n_classes: int = 4, *, features: int = 32,
                       seed: int = 0) -> LabelFreeData:
    """Backbone and image-text embeddings of images whose binary concepts are planted.

    Args:
        size: Images in all, split 70/10/20.
        n_concepts: Planted binary concepts (each present with probability 1/2).
        n_classes: Task classes.
        features: Width of the backbone embeddings.
        seed: Draws everything.

    Returns:
        The data; ``concept_names`` lists the ``n_concepts`` planted concepts and then the four decoys.

    Raises:
        ValueError: Fewer than 2 concepts or classes, or fewer than 10 images.

    Examples:
        >>> from conceptlab.datasets import planted_embeddings
        >>> data = planted_embeddings(size=200)
        >>> data.splits.train.x.shape, data.text_embeddings.shape, len(data.concept_names)
        (torch.Size([140, 32]), torch.Size([10, 13]), 10)
    """
    if n_concepts < 2 or n_classes < 2 or size < 10:
        raise ValueError(f"need n_concepts >= 2, n_classes >= 2 and size >= 10; got {n_concepts}, {n_classes}, {size}")
    rng = np.random.default_rng([seed, zlib.crc32(b"planted embeddings")])
    concepts = (rng.random((size, n_concepts)) < 0.5).astype(np.float32)
    scores = (2 * concepts - 1) @ rng.standard_normal((n_concepts, n_classes)) + 0.3 * rng.standard_normal((size, n_classes))
    y = scores.argmax(1)
    backbone = (2 * concepts - 1) @ rng.standard_normal((n_concepts, features)) + 0.5 * rng.standard_normal((size, features))
    # image-text space: the planted axes, two noise axes only the image-text model sees, a class axis per class,
    # and one axis no image reaches; a random rotation hides the layout
    width = n_concepts + 2 + n_classes + 1
    rotation, _ = np.linalg.qr(rng.standard_normal((width, width)))
    axes = np.eye(width)
    image = np.zeros((size, width))
    image[:, :n_concepts] = (2 * concepts - 1) + 0.3 * rng.standard_normal((size, n_concepts))
    image[:, n_concepts : n_concepts + 2] = rng.standard_normal((size, 2))  # invisible to the backbone
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    class_axis = n_concepts + 2
    never = width - 1
    text = [axes[k] for k in range(n_concepts)]
    near_copy = axes[0] + 0.05 * rng.standard_normal(width)
    text += [near_copy / np.linalg.norm(near_copy), axes[class_axis], axes[never], axes[n_concepts]]
    class_text = np.stack([axes[class_axis + j] for j in range(n_classes)])
    names = tuple(f"c{k + 1}" for k in range(n_concepts)) + DECOYS
    info = ConceptInfo(tuple(f"c{k + 1}" for k in range(n_concepts)), tuple(f"class {j}" for j in range(n_classes)))
    rows = torch.arange(size)
    splits = block_splits(ConceptDataset(torch.tensor(backbone, dtype=torch.float32), torch.tensor(concepts),
                                         torch.tensor(y).long(), info))
    cuts = np.cumsum([len(splits.train), len(splits.val)])
    image_t = torch.tensor(image @ rotation.T, dtype=torch.float32)
    parts = tuple(image_t[index] for index in torch.tensor_split(rows, cuts.tolist()))
    return LabelFreeData(splits, parts, torch.tensor(np.stack(text) @ rotation.T, dtype=torch.float32), names,
                         torch.tensor(class_text @ rotation.T, dtype=torch.float32))


@settings
class PlantedSettings(Supervision):
    """The backbone embeddings and planted labels of ``planted_embeddings``, as a dataset block: what a
    label-free CBM saved with ``dataset=`` records, so that ``load_run`` and the explorer rebuild its data.

    Attributes:
        name: ``planted``.
        size: Images in all (at least 10).
        n_concepts: Planted concepts.
        n_classes: Task classes.
        features: Width of the backbone embeddings.
        labelled_as: The candidate concepts the splits' labels follow, in order (what a fit kept;
            ``LabelFreeData.labelled_as``); empty: the planted concepts.
        missing_concept_labels: Share of training and validation concept labels hidden (NaN), in [0, 1).
        hidden_concepts: Concepts removed from every split (an incomplete concept set).
        kept_concept_groups: Share of concept groups kept (the rest removed from every split), in (0, 1].
    """

    name: Literal["planted"]
    size: Annotated[PositiveInt, Field(ge=10)] = 3000
    n_concepts: Annotated[PositiveInt, Field(ge=2)] = 6
    n_classes: Annotated[PositiveInt, Field(ge=2)] = 4
    features: PositiveInt = 32
    labelled_as: tuple[Str, ...] = ()


def planted_data(config: PlantedSettings, seed: int) -> LabelFreeData:
    """``planted_embeddings`` with the sizes ``config`` names."""
    return planted_embeddings(config.size, config.n_concepts, config.n_classes, features=config.features, seed=seed)


def load_planted(config: PlantedSettings, seed: int) -> ConceptSplits:
    """The splits ``config`` names: backbone embeddings, task labels and the planted concept labels
    (of ``labelled_as``, where given)."""
    data = planted_data(config, seed)
    return data.labelled_as(config.labelled_as) if config.labelled_as else data.splits
