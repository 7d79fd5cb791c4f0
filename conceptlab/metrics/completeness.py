"""Completeness of a concept set (Yeh et al., NeurIPS 2020): how much of a model's accuracy its
concept scores alone can recover.

A small network g (concept scores -> the layer's activations) is trained so that the model's own head
h reads the right class from g(scores); completeness is
(accuracy of h(g(scores)) - a_r) / (accuracy of h(activations) - a_r), with a_r the accuracy of always
predicting the training split's most frequent class; all accuracies on held-out rows. 1: the concepts
say everything the head uses; 0: no more than a constant guess.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..models import heads


def completeness_score(
    concept_scores: Tensor,
    activations: Tensor,
    y: Tensor,
    *,
    head: Callable[[Tensor], Tensor],
    hidden: int = 128,
    steps: int = 400,
    lr: float = 1e-2,
    test_fraction: float = 0.33,
    seed: int = 0,
) -> float:
    """Completeness of a concept set, in (-inf, 1] (near 1: complete).

    Args:
        concept_scores: (N, K) each sample's concept scores (projections on concept vectors, NMF
            coefficients, predicted concept probabilities); K may be 0 (the empty set).
        activations: (N, D) the layer's activations the head reads.
        y: (N,) class labels.
        head: The rest of the model: (B, D) activations -> task logits (differentiable, not trained here).
        hidden: Hidden width of g.
        steps: Adam steps (full batch) of g.
        lr: Adam's learning rate.
        test_fraction: Share of rows held out for the accuracies.
        seed: Draws the held-out rows and g's initial weights.

    Returns:
        The completeness score.

    Raises:
        ValueError: Mismatched rows, or a head no better than the constant guess (nothing to explain).

    Examples:
        >>> from conceptlab.metrics import completeness_score
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(600, 4, generator=g)
        >>> head = torch.nn.Linear(4, 2)
        >>> with torch.no_grad():
        ...     _ = head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
        >>> y = (a[:, 0] < 0).long()
        >>> completeness_score(a[:, :1], a, y, head=head) > 0.9  # the first coordinate is all the head reads
        True
    """
    activations, concept_scores, y = activations.detach(), concept_scores.detach(), y.detach()
    n = activations.shape[0]
    if concept_scores.ndim != 2 or concept_scores.shape[0] != n or y.shape[0] != n:
        raise ValueError(f"concept scores (N, K), activations (N, D) and labels (N,) must hold the same rows; got "
                         f"{tuple(concept_scores.shape)}, {tuple(activations.shape)}, {tuple(y.shape)}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_test = max(1, int(round(test_fraction * n)))
    test, train = order[:n_test], order[n_test:]
    y = y.long()
    majority = torch.bincount(y[train]).argmax()
    constant = float((y[test] == majority).float().mean())
    with torch.no_grad():
        full = float((heads.predicted_class(heads.output_logits(head(activations[test]))) == y[test]).float().mean())
    if full <= constant:
        raise ValueError(f"the head's held-out accuracy ({full:.3f}) is no better than always guessing the most frequent "
                         f"class ({constant:.3f}): there is nothing for concepts to explain")
    scores = concept_scores.float()
    if scores.shape[1] == 0:
        scores = torch.zeros(n, 1)  # the empty set: g sees a constant
    else:
        scores = (scores - scores[train].mean(0)) / scores[train].std(0).clamp_min(1e-6)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    g = nn.Sequential(nn.Linear(scores.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, activations.shape[1]))
    optimiser = torch.optim.Adam(g.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        logits = heads.output_logits(head(g(scores[train])))
        loss = -heads.class_log_probs(logits).gather(1, y[train, None]).mean()
        loss.backward()
        optimiser.step()
    if isinstance(head, nn.Module):
        head.zero_grad(set_to_none=True)  # the head was differentiated through, never trained: leave no gradients
    with torch.no_grad():
        rebuilt = float((heads.predicted_class(heads.output_logits(head(g(scores[test])))) == y[test]).float().mean())
    return (rebuilt - constant) / (full - constant)
