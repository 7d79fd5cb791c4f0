"""ConceptSHAP: each concept's Shapley share of a concept set's completeness (Yeh et al., NeurIPS 2020).

The value of a subset S of concepts is its completeness (``metrics.completeness_score`` with only
S's scores); a concept's Shapley value is its mean marginal gain over orders of the concepts. With
few concepts (2^K subsets, at most ``exact_limit``) every subset is evaluated and the values are
exact; otherwise ``permutations`` random orders are averaged (each subset evaluated once, cached).

Yeh et al. also *learn* concept vectors by maximising completeness; here the concept set is given
(discovered by CRAFT or ACE, or a labelled bank), and ConceptSHAP measures it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ...metrics.completeness import completeness_score


class ConceptSHAP:
    """Completeness of a concept set and each concept's Shapley share of it.

    Learned attributes: ``completeness_`` (all concepts together), ``empty_`` (no concept),
    ``shapley_`` (K,) (they sum to ``completeness_ - empty_``), ``values_`` (subset -> completeness).

    Args:
        exact_limit: Most subsets evaluated for exact values (64: up to 6 concepts).
        permutations: Random orders averaged beyond ``exact_limit``.
        hidden: Hidden width of the completeness network g.
        steps: Adam steps of g per subset.
        seed: Seeds the held-out rows, g and the orders.

    Examples:
        >>> from conceptlab.concepts.discovery import ConceptSHAP
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(600, 3, generator=g)
        >>> head = torch.nn.Linear(3, 2)
        >>> with torch.no_grad():
        ...     _ = head.weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
        >>> shap = ConceptSHAP(steps=200).fit(a, a, (a[:, 0] < 0).long(), head=head)
        >>> int(shap.shapley_.argmax())  # the coordinate the head reads
        0
    """

    def __init__(self, *, exact_limit: int = 64, permutations: int = 20, hidden: int = 128, steps: int = 400, seed: int = 0):
        self.exact_limit = exact_limit
        self.permutations = permutations
        self.hidden = hidden
        self.steps = steps
        self.seed = seed

    def fit(self, concept_scores: Tensor, activations: Tensor, y: Tensor, *, head: Callable[[Tensor], Tensor]) -> ConceptSHAP:
        """Evaluate the completeness of the concept subsets and the Shapley values.

        Args:
            concept_scores: (N, K) each sample's concept scores.
            activations: (N, D) the layer's activations the head reads.
            y: (N,) class labels.
            head: The rest of the model: activations -> task logits.

        Returns:
            The fitted estimator.
        """
        k = concept_scores.shape[1]
        values: dict[frozenset[int], float] = {}

        def value(subset: frozenset[int]) -> float:
            if subset not in values:
                columns = concept_scores[:, sorted(subset)]
                values[subset] = completeness_score(columns, activations, y, head=head, hidden=self.hidden, steps=self.steps,
                                                    seed=self.seed)
            return values[subset]

        shapley = np.zeros(k)
        if 2**k <= self.exact_limit:
            for i in range(k):
                others = [j for j in range(k) if j != i]
                for size in range(k):
                    weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
                    for subset in itertools.combinations(others, size):
                        base = frozenset(subset)
                        shapley[i] += weight * (value(base | {i}) - value(base))
        else:
            rng = np.random.default_rng(self.seed)
            for _ in range(self.permutations):
                chosen: frozenset[int] = frozenset()
                for i in rng.permutation(k):
                    gain = value(chosen | {int(i)}) - value(chosen)
                    shapley[i] += gain / self.permutations
                    chosen = chosen | {int(i)}
        self.values_ = values
        self.completeness_ = value(frozenset(range(k)))
        self.empty_ = value(frozenset())
        self.shapley_ = torch.tensor(shapley, dtype=torch.float32)
        return self
