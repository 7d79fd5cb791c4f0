"""Concept banks for post-hoc CBMs: one linear SVM per concept, from example sets, labelled data or folders.

Every builder returns a fitted :class:`CAVBank` with one pair per concept, ``(name,
"name:negatives")``, in the order the concepts were given; ``models.pcbm(..., bank=bank)``
reads it. Defaults follow the PCBM authors' CUB bank: 100 training examples a side and an SVM
with C = 0.1 (``alpha = 1 / (C n)`` = 0.05 on 200 rows), another 100 a side held out.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .cav import CAVBank

NEGATIVES = ":negatives"  # suffix of a concept's negative example set in the bank's pairs
BANK_ALPHA = 0.05
BANK_EXAMPLES = 100
BANK_SUFFIX = ".bank.pt"  # a model's concept bank is saved beside its checkpoint: NAME.bank.pt next to NAME.pt


def concept_bank(
    sets: Mapping[str, tuple[Tensor, Tensor]],
    *,
    alpha: float = BANK_ALPHA,
    seed: int = 0,
    test_fraction: float = 0.5,
    cache_dir: str | Path | None = None,
) -> CAVBank:
    """One CAV per concept from its ``(positives, negatives)`` activations, in the order of ``sets``.

    Args:
        sets: Concept name -> (positive, negative) activations.
        alpha: The CAV solver's regularisation.
        seed: Seeds the held-out split.
        test_fraction: Share of each set held out to score the CAV.
        cache_dir: Keep fitted CAVs on disk.

    Returns:
        The fitted bank.

    Examples:
        >>> from conceptlab.concepts import concept_bank
        >>> bank = concept_bank({"bright": (torch.randn(40, 3) + 2.0, torch.randn(40, 3))})
        >>> bank.pairs_
        [('bright', 'bright:negatives')]
    """
    if not sets:
        raise ValueError("give at least one concept: {name: (positive activations, negative activations)}")
    bad = [name for name in sets if name.endswith(NEGATIVES)]
    if bad:
        raise ValueError(f"concept names may not end with {NEGATIVES!r}: {bad}")
    examples: dict[str, Tensor] = {}
    for name, (positives, negatives) in sets.items():
        examples[name] = positives
        examples[name + NEGATIVES] = negatives
    pairs = [(name, name + NEGATIVES) for name in sets]
    return CAVBank(alpha=alpha, seed=seed, test_fraction=test_fraction, cache_dir=cache_dir).fit(examples, pairs)


def bank_from_labels(
    features: Tensor,
    concepts: Tensor,
    names: Sequence[str],
    *,
    examples: int = BANK_EXAMPLES,
    alpha: float = BANK_ALPHA,
    seed: int = 0,
) -> CAVBank:
    """A bank from a labelled dataset: concept ``i``'s CAV separates rows with ``concepts[:, i] > 0.5``
    from rows without (for CUB's class-level attributes: images of classes with the attribute
    against images of classes without); see ``label_sets`` for the draw.

    Args:
        features: (N, D) embeddings.
        concepts: (N, k) concept labels (NaN: missing; those rows sit out that concept).
        names: One name per concept.
        examples: Rows drawn per side to train each CAV (as many again are held out).
        alpha: The CAV solver's regularisation.
        seed: Draws the rows (with each concept's name).

    Returns:
        The fitted bank, one CAV per concept.

    Raises:
        ValueError: A concept has too few rows with or without it.

    Examples:
        >>> from conceptlab.concepts import bank_from_labels
        >>> z, c = torch.randn(200, 6), (torch.rand(200, 2) > 0.5).float()
        >>> bank_from_labels(z, c, ["stripes", "dots"], examples=40).directions_.shape
        torch.Size([2, 6])
    """
    return concept_bank(label_sets(features, concepts, names, examples=examples, seed=seed), alpha=alpha, seed=seed)


def label_sets(
    features: Tensor, concepts: Tensor, names: Sequence[str], *, examples: int = BANK_EXAMPLES, seed: int = 0
) -> dict[str, tuple[Tensor, Tensor]]:
    """Each concept's (positive, negative) rows of ``features``: up to ``2 * examples`` a side (half
    to train the CAV, half held out), drawn with ``seed`` and the concept's name, so that one
    concept's examples do not move when another concept's labels change.

    Args:
        features: (N, D) embeddings.
        concepts: (N, k) concept labels (NaN: missing; those rows sit out that concept).
        names: One name per concept.
        examples: Rows per side for training (as many again held out).
        seed: Seeds the draw (with each concept's name).

    Returns:
        Per concept name, (positive rows, negative rows).

    Examples:
        >>> from conceptlab.concepts import label_sets
        >>> sets = label_sets(torch.randn(100, 4), (torch.rand(100, 1) > 0.5).float(), ["a"], examples=10)
        >>> [part.shape[0] for part in sets["a"]]
        [20, 20]
    """
    features = torch.as_tensor(features)
    concepts = torch.as_tensor(concepts)
    if features.ndim != 2 or concepts.ndim != 2 or features.shape[0] != concepts.shape[0]:
        raise ValueError(f"need features (N, D) and concepts (N, k) with the same N; got {tuple(features.shape)} "
                         f"and {tuple(concepts.shape)}")
    if len(names) != concepts.shape[1]:
        raise ValueError(f"{len(names)} names for {concepts.shape[1]} concepts")
    if not torch.isfinite(features).all() or torch.isinf(concepts.float()).any():
        raise ValueError("features must be finite and concepts labels or NaN (missing)")
    present = (concepts.float() > 0.5).cpu().numpy()
    known = ~torch.isnan(concepts.float()).cpu().numpy()
    sets = {}
    for i, name in enumerate(names):
        rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        has, lacks = np.flatnonzero(present[:, i] & known[:, i]), np.flatnonzero(~present[:, i] & known[:, i])
        if min(len(has), len(lacks)) < 4:
            raise ValueError(f"concept {name!r} has {len(has)} positive and {len(lacks)} negative rows; a CAV needs at "
                             "least 4 of each (2 to train, 2 to check): drop the concept or add data")
        sets[str(name)] = tuple(features[rng.choice(rows, min(2 * examples, len(rows)), replace=False)] for rows in (has, lacks))
    return sets


def bank_from_folders(
    model: nn.Module,
    layer: str,
    concepts_root: str | Path,
    *,
    negatives: str | Path,
    image_size: int = 224,
    alpha: float = BANK_ALPHA,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> CAVBank:
    """A bank on ``model``'s ``layer`` from example folders, as ``conceptlab tcav`` reads them: one
    sub-directory of ``concepts_root`` per concept (images or .pt tensors), all against the
    examples in the folder ``negatives`` (e.g. random images).

    Args:
        model: The model whose layer the CAVs live on.
        layer: Dotted name of that layer.
        concepts_root: One sub-folder of examples per concept.
        negatives: A folder of negative examples (e.g. random images).
        image_size: The side images are resized to.
        alpha: The CAV solver's regularisation.
        seed: Seeds the held-out split.
        cache_dir: Keep activations on disk.

    Returns:
        The fitted bank.

    Raises:
        ValueError: A folder has too few images, or ``layer`` is not in the model (the message lists the closest names).

    Examples:
        >>> bank = bank_from_folders(backbone, "avgpool", "concepts/", negatives="random_images/")  # doctest: +SKIP
    """
    from .activations import capture_activations
    from .examples import example_sets, load_examples

    positives = example_sets(concepts_root, image_size)
    pool = load_examples(negatives, image_size)
    activations = {name: capture_activations(model, [layer], x, cache_dir=cache_dir)[layer] for name, x in positives.items()}
    negative = capture_activations(model, [layer], pool, cache_dir=cache_dir)[layer]
    return concept_bank({name: (x, negative) for name, x in activations.items()}, alpha=alpha, seed=seed)


def bank_concepts(bank: CAVBank) -> list[str]:
    """The concept names of a bank made here, in order.

    Args:
        bank: A bank made by ``concept_bank`` (or its wrappers).

    Returns:
        The names.

    Examples:
        >>> from conceptlab.concepts import bank_concepts, bank_from_labels
        >>> bank_concepts(bank_from_labels(torch.randn(100, 4), (torch.rand(100, 2) > 0.5).float(), ["a", "b"], examples=20))
        ['a', 'b']
    """
    return [positive for positive, _ in bank.pairs_]
