"""TCAV: how often a class's prediction increases along a concept's activation vector (Kim et al., 2018).

Gradients of the class logit (or of the loss, as tensorflow/tcav does) with respect to a layer
are computed once per (layer, class) in mini-batches, then scored against every CAV of a
``CAVBank`` with one matrix product.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .activations import resolve_layer
from .cav import CAVBank

Objective = Literal["logit", "loss"]


def layer_gradients(
    model: nn.Module, layer: str, inputs: Tensor, target: int, objective: Objective = "logit", batch_size: int = 32
) -> Tensor:
    """(N, D) gradients of the ``target`` logit (or of the cross-entropy loss for ``target``) w.r.t. ``layer``."""
    if objective not in ("logit", "loss"):
        raise ValueError(f"objective must be 'logit' or 'loss'; got {objective!r}")
    module = resolve_layer(model, layer)
    device = next(model.parameters()).device
    captured: list[Tensor] = []

    def keep(module, args, output):
        captured.append(output)

    hook = module.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, inputs.shape[0], batch_size):
            captured.clear()
            x = inputs[start : start + batch_size].to(device)
            logits = model(x)
            if objective == "logit":
                value = logits[:, target].sum()
            else:
                value = nn.functional.cross_entropy(logits, torch.full((x.shape[0],), target, device=device), reduction="sum")
            (grad,) = torch.autograd.grad(value, captured[0])
            parts.append(grad.flatten(1).detach().cpu())
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(parts)


def tcav_scores(gradients: Tensor, bank: CAVBank, objective: Objective = "logit") -> tuple[Tensor, Tensor]:
    """TCAV score and magnitude per CAV of ``bank``.

    Score: the fraction of inputs whose directional derivative S = grad . v is positive (negative
    for the loss objective, whose gradient points the other way). Magnitude: the positive part of
    S's mass over its total absolute mass, in [0, 1].
    """
    sensitivity = gradients.float() @ bank.directions_.T  # (N, P)
    if objective == "loss":
        sensitivity = -sensitivity
    scores = (sensitivity > 0).float().mean(0)
    magnitude = sensitivity.clamp_min(0).sum(0) / sensitivity.abs().sum(0).clamp_min(1e-12)
    return scores, magnitude


def significance(
    concept_scores: Tensor | np.ndarray,
    random_scores: Tensor | np.ndarray | None = None,
    n_tests: int = 1,
    alpha: float = 0.05,
) -> dict[str, float | bool | None]:
    """Both published significance tests of TCAV scores over R random sets.

    ``p_paper``: two-sided one-sample t-test of the concept's R scores against 0.5, Bonferroni
    corrected for ``n_tests`` tests (Kim et al., 2018). ``p_reference``: two-sample t-test of the
    concept's scores against random-vs-random scores (tensorflow/tcav). ``significant`` uses the
    paper's test; ``significant_reference`` the reference code's.
    """
    from scipy import stats

    scores = np.asarray(concept_scores, dtype=float)
    if scores.size < 2:
        raise ValueError("significance needs the scores of at least 2 random sets")
    if np.all(scores == scores[0]):  # a t-test is undefined without spread
        p_paper = 0.0 if scores[0] != 0.5 else 1.0
    else:
        p_paper = float(stats.ttest_1samp(scores, 0.5).pvalue)
    p_paper = min(1.0, p_paper * n_tests)
    result: dict[str, float | bool | None] = {"p_paper": p_paper, "significant": p_paper <= alpha,
                                              "p_reference": None, "significant_reference": None}
    if random_scores is not None:
        p_ref = float(stats.ttest_ind(scores, np.asarray(random_scores, dtype=float)).pvalue)
        result["p_reference"] = p_ref
        result["significant_reference"] = bool(p_ref <= alpha)
    return result
