"""Relative TCAV: a concept against the other concepts rather than against random examples (Kim et al., 2018).

Each concept's CAV separates its examples from those of every other concept given, so the score
asks whether the class's prediction grows with *this* concept more than with its alternatives
(striped against dotted and zigzagged, say). Significance follows ``run_tcav``: ``runs`` CAVs per
concept, each on a fresh draw of 80 % of the concept's examples against as many drawn from the
others; the null scores come from CAVs between two halves of the same pooled draw with their
labels shuffled. The paper's one-sample test (against 0.5) is Bonferroni-corrected for every
(concept, layer) tested.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..info import TaskKind
from .activations import capture_activations
from .cav import CAVBank, Solver
from .tcav import (
    TCAV_ESTIMATOR,
    Objective,
    check_objective,
    input_target,
    layer_gradients,
    sensitivity_scores,
    significance,
    tcav_record,
)

SHARE = 0.8  # of the smaller side drawn for each run's CAV


def _draws(sizes: dict[str, int], runs: int, seed: int) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per (concept, run): rows of the concept, rows of the others (indices into their concatenation), and a shuffle."""
    names = list(sizes)
    offsets = dict(zip(names, np.cumsum([0, *[sizes[n] for n in names]])[:-1]))
    total = sum(sizes.values())
    draws = {}
    for i, name in enumerate(names):
        own = np.arange(offsets[name], offsets[name] + sizes[name])
        others = np.setdiff1d(np.arange(total), own)
        count = max(2, int(SHARE * min(len(own), len(others))))
        for run in range(runs):
            rng = np.random.default_rng([seed, i, run])
            pos, neg = rng.choice(own, count, replace=False), rng.choice(others, count, replace=False)
            draws[name, run] = pos, neg, rng.permutation(np.concatenate([pos, neg]))
    return draws


def relative_tcav(
    model: nn.Module,
    layers: list[str],
    concepts: dict[str, Tensor],
    *,
    inputs: Tensor,
    target: int | str,
    runs: int = 10,
    objective: Objective = "logit",
    solver: Solver = TCAV_ESTIMATOR,
    batch_size: int = 64,
    alpha: float = 0.05,
    classes: Sequence[str] | None = None,
    task: TaskKind = "multiclass",
    seed: int = 0,
) -> list[dict]:
    """Relative TCAV of every concept against the others, on every layer, with significance.

    Args:
        model: Any torch model.
        layers: Dotted names of the layers to test.
        concepts: Concept name -> (n, ...) example inputs; at least 2 concepts.
        inputs: (N, ...) inputs of the class explained.
        target: The class: an index, or a name of ``classes``.
        runs: CAVs per concept (and null CAVs), at least 2.
        objective: ``logit`` or ``loss``.
        solver: The CAV estimator (``CAVBank``'s ``solver``).
        batch_size: Inputs per forward/backward pass.
        alpha: The significance level.
        classes: One name per class.
        task: ``multiclass``, ``multilabel`` or ``regression`` (what ``target`` indexes).
        seed: Draws the examples of each run.

    Returns:
        One record per (concept, layer), with the fields of ``run_tcav``'s records (``p_paper`` and
        ``significant`` Bonferroni-corrected; ``p_reference`` against the shuffled null).

    Raises:
        ValueError: Fewer than 2 concepts or runs, or what ``run_tcav`` refuses.

    Examples:
        >>> from conceptlab.concepts import relative_tcav
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> concepts = {"a": torch.randn(30, 4) + 1, "b": torch.randn(30, 4) - 1, "c": torch.randn(30, 4)}
        >>> records = relative_tcav(model, ["1"], concepts, inputs=torch.randn(20, 4), target=1, runs=3)
        >>> [r["concept"] for r in records]
        ['a', 'b', 'c']
    """
    if len(concepts) < 2:
        raise ValueError("relative TCAV compares concepts with each other: give at least 2 concepts")
    if runs < 2:
        raise ValueError(f"runs must be at least 2 for the significance tests; got {runs}")
    check_objective(objective, task)
    index = input_target(model, inputs, target, task, classes)
    names = list(concepts)
    pooled = torch.cat([concepts[n] for n in names])
    draws = _draws({n: concepts[n].shape[0] for n in names}, runs, seed)
    activations = capture_activations(model, layers, pooled, batch_size=batch_size)
    records = []
    for layer in layers:
        acts = activations[layer]
        sets, pairs, null_pairs = {}, [], []
        for (name, run), (pos, neg, shuffled) in draws.items():
            half = len(shuffled) // 2
            sets |= {f"{name}#{run}": acts[pos], f"others#{name}#{run}": acts[neg],
                     f"null-a#{name}#{run}": acts[shuffled[:half]], f"null-b#{name}#{run}": acts[shuffled[half:]]}
            pairs.append((f"{name}#{run}", f"others#{name}#{run}"))
            null_pairs.append((f"null-a#{name}#{run}", f"null-b#{name}#{run}"))
        bank = CAVBank(solver, seed=seed).fit(sets, pairs + null_pairs)
        derivative = layer_gradients(model, layer, inputs, target=index, objective=objective, batch_size=batch_size,
                                     directions={layer: bank.directions_}, task=task)
        scores, magnitude = sensitivity_scores(derivative, objective)
        for i, name in enumerate(names):
            part, null = slice(i * runs, (i + 1) * runs), slice(len(pairs) + i * runs, len(pairs) + (i + 1) * runs)
            test = significance(scores[part], scores[null], n_tests=len(names) * len(layers), alpha=alpha)
            records.append(tcav_record(name, layer, index, classes, scores[part], magnitude[part], test, bank.accuracy_[part],
                                       against=[n for n in names if n != name]))
    return records
