"""Intervention curves: task accuracy after intervening on 0, 1, ..., all units, with competence."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..datasets.base import ConceptDataset
from ..metrics import task_score
from ..models.base import ConceptModel, Intervention, decode_all, encode_all
from ..runtime import evaluating
from .policies import Policy, PolicyState, check_applies, unit_ranks, units_to_concepts


def with_competence(mask: Tensor, c: Tensor, competence: float, *, generator: torch.Generator) -> Tensor:
    """Intervention values where, per sample, round((1 - competence) * n_intervened) concepts are wrong.

    competence 1 writes the true labels, 0 writes the opposite label for every intervened concept.
    Which intervened concepts are wrong is drawn at random.

    Args:
        mask: (B, k) the intervened concepts.
        c: (B, k) the true labels.
        competence: Fraction of intervened concepts given their true value.
        generator: Draws which ones are wrong.

    Returns:
        (B, k) intervention values.

    Examples:
        >>> from conceptlab.interventions import with_competence
        >>> mask, c = torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 4)
        >>> with_competence(mask, c, 0.5, generator=torch.Generator().manual_seed(0)).sum().item()  # two of four flipped
        2.0
    """
    if not 0.0 <= competence <= 1.0:
        raise ValueError(f"competence must lie in [0, 1]; got {competence}")
    if competence == 1.0:
        return c
    keys = torch.rand(mask.shape, generator=generator).to(mask.device)
    keys = torch.where(mask, keys, torch.full_like(keys, 2.0))  # never pick a concept left alone
    rank = keys.argsort(dim=1).argsort(dim=1)
    n_wrong = torch.round((1.0 - competence) * mask.sum(1, keepdim=True).float())
    wrong = (rank < n_wrong) & mask
    return torch.where(wrong, 1.0 - c, c)


@dataclass(frozen=True)
class InterventionCurve:
    """Task accuracy after correcting 0, 1, ..., G units, over ``repeats`` drawn orders (the task's
    score, ``metrics.task_score``: label accuracy for a multilabel task, R^2 for a regression one).

    ``seconds_per_sample`` is what the policy itself cost (choosing every unit of one sample's
    order, averaged over samples and repeats), not the model's predictions; ``uses_labels``
    marks policies that read the true concepts or labels.

    Attributes:
        policy: The policy's name (``name`` adds ``@competence=...`` when below 1).
        competence: Fraction of correct values written.
        units: The unit names, in the data's order.
        accuracy_mean: Accuracy after 0, 1, ..., G units corrected, mean over repeats.
        accuracy_std: Its standard deviation over repeats.
        seconds_per_sample: What the policy itself cost per sample.
        uses_labels: Whether the policy read true concepts or labels.
    """

    policy: str
    competence: float
    units: tuple[str, ...]
    accuracy_mean: tuple[float, ...]
    accuracy_std: tuple[float, ...]
    seconds_per_sample: float = 0.0
    uses_labels: bool = False

    @property
    def name(self) -> str:
        return self.policy if self.competence == 1.0 else f"{self.policy}@competence={self.competence:g}"

    @property
    def auc(self) -> float:
        """Normalised area under accuracy against the fraction of units corrected (conceptlab's own
        summary: neither the CEM nor the IntCEM authors' code computes an area)."""
        return normalised_auc(self.accuracy_mean)

    @property
    def early_weighted_accuracy(self) -> float:
        """sum_n acc_n (1 - n/G) / sum_n (1 - n/G): accuracy weighted towards the first corrections,
        the summary the CEM authors' code ranks CooP's weights by (there over a few n only)."""
        values = torch.as_tensor(self.accuracy_mean, dtype=torch.float64)
        if values.numel() < 2:
            return float(values.mean())
        weights = 1 - torch.arange(values.numel(), dtype=torch.float64) / (values.numel() - 1)
        return float((values * weights).sum() / weights.sum())


def normalised_auc(accuracy: list[float] | tuple[float, ...]) -> float:
    """Trapezoidal area under accuracy at 0, 1/G, ..., 1 of the units corrected (x from 0 to 1).

    Args:
        accuracy: Accuracies after 0, 1, ..., G units corrected.

    Returns:
        The area, in the accuracy's units.

    Examples:
        >>> from conceptlab.interventions import normalised_auc
        >>> normalised_auc([0.5, 1.0, 1.0])
        0.875
    """
    values = torch.as_tensor(accuracy, dtype=torch.float64)
    if values.numel() < 2:
        return float(values.mean())
    return float(torch.trapezoid(values, dx=1.0 / (values.numel() - 1)))


def policy_curve(
    model: ConceptModel,
    data: ConceptDataset,
    rule: Policy,
    groups: bool = True,
    competence: float = 1.0,
    repeats: int = 5,
    seed: int = 0,
    binary_threshold: float = 0.0,
    codes: Tensor | None = None,
    chunk_size: int = 1024,
) -> InterventionCurve:
    """``intervention_curve`` for a ``Policy`` object (what ``intervention_curve`` runs once it has
    resolved a name); see there for the parameters."""
    if model.n_concepts == 0:
        raise ValueError(f"{type(model).__name__} has no concepts; intervention curves need a concept model")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}")
    if len(data) == 0:
        raise ValueError("the data has no samples: an intervention curve needs at least one (check the split sizes)")
    if data.info.categorical and not groups:
        raise ValueError(f"categorical concept(s) {list(data.info.categorical)} are corrected as a whole: use groups=True "
                         "(a single value of a categorical concept cannot be set on its own)")
    check_applies(rule, data.info, model)
    if data.info.continuous and competence < 1:
        raise ValueError(f"competence below 1 writes the opposite label, which a continuous concept "
                         f"({', '.join(data.info.continuous)}) does not have; measure it with competence=1")
    if torch.isnan(data.c).any():
        raise ValueError(f"{int(torch.isnan(data.c).sum())} concept label(s) of these data are missing (NaN); an "
                         "intervention curve corrects concepts with their true labels, so measure it on a split "
                         "with every label known (the bench keeps the test split complete)")
    info = data.info
    if groups:
        units, names = info.group_matrix(), info.group_names
    else:
        units, names = torch.eye(info.n_concepts, dtype=torch.bool), info.concept_names
    generator = torch.Generator().manual_seed(seed)
    if codes is None:
        codes = encode_all(model, data.inputs)  # interventions only change what comes after the encoding
    device = codes.device
    probs = decode_all(model, codes).concept_probs
    units = units.to(device)
    c, y = data.c.to(device), data.y.to(device)
    labels = (c, y) if rule.uses_labels else (None, None)
    accuracies = torch.zeros(repeats, units.shape[0] + 1)
    seconds, orderings = 0.0, 0  # policy time, and how many full orders it went into
    static_scores = None

    def accuracy(selected: Tensor) -> tuple[float, Intervention]:
        mask = units_to_concepts(selected, units)
        intervention = Intervention(mask, with_competence(mask, c, competence, generator=generator))
        logits = decode_all(model, codes, intervention).task_logits
        return task_score(logits, y, info.task, binary_threshold=binary_threshold), intervention

    def scores(done: Tensor, intervention: Intervention | None) -> Tensor:
        nonlocal seconds
        start = time.perf_counter()
        state = PolicyState(model, codes, probs, units, done, intervention, generator, *labels)
        with evaluating(model), torch.no_grad():
            result = torch.cat([rule(state.slice(slice(i, i + chunk_size))) for i in range(0, len(data), chunk_size)])
        seconds += time.perf_counter() - start
        if result.shape != done.shape:
            raise ValueError(f"policy {rule.name!r} returned priorities of shape {tuple(result.shape)}; "
                             f"expected {tuple(done.shape)}")
        if torch.isnan(result).any():
            raise ValueError(f"policy {rule.name!r} returned NaN priorities; check the model's outputs for NaN")
        return result

    nothing = torch.zeros(len(data), units.shape[0], dtype=torch.bool, device=device)
    for r in range(repeats):
        if not rule.sequential:
            if static_scores is None or rule.stochastic:
                static_scores = scores(nothing, None)
                orderings += 1
            ranks = unit_ranks(static_scores, generator)
            for n in range(units.shape[0] + 1):
                accuracies[r, n] = accuracy(ranks < n)[0]
            continue
        done = nothing.clone()
        orderings += 1
        for n in range(units.shape[0] + 1):
            accuracies[r, n], intervention = accuracy(done)
            if n < units.shape[0]:
                priorities = scores(done.clone(), intervention).masked_fill(done, float("-inf"))
                done[torch.arange(len(data), device=device), unit_ranks(priorities, generator).argmin(1)] = True
    std = accuracies.std(0) if repeats > 1 else torch.zeros(units.shape[0] + 1)
    return InterventionCurve(
        rule.name, competence, tuple(names), tuple(accuracies.mean(0).tolist()), tuple(std.tolist()),
        seconds / orderings / max(len(data), 1), rule.uses_labels,
    )
