"""Conceptual counterfactual explanations (CCE; Abid, Yuksekgonul and Zou, ICML 2022).

A model head ``g`` maps an embedding ``z`` to logits. CCE looks for sparse concept weights ``w``
such that the perturbed embedding ``z' = z + sum_i w_i M_i v_i`` (``v_i`` a unit CAV, ``M_i`` the
largest training margin of concept ``i``) is classified as a chosen target:

    min_w  CE(g(z'), target) + alpha ||w||_1 / K + beta ||w||_2 / K

with each concept's new margin kept inside its training range ``[m_i, M_i]`` (box) and, with
``kappa`` set, no adding of a concept already clearly present nor removing of one clearly absent
(validity). ``w_i > 0`` reads "add concept i", ``w_i < 0`` "remove concept i".

Every sample has its own ``w`` and loss, so a whole batch is solved at once: the summed loss has
per-row gradients equal to per-sample solving, and momentum SGD acts row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.base import evaluating
from .cav import CAVBank

Kappa = Literal["mean", "zero"]


@dataclass(frozen=True)
class ConceptBox:
    """Per-sample bounds (B, K) on concept weights, and the step each unit weight takes (K, D)."""

    lower: Tensor
    upper: Tensor
    steps: Tensor


def concept_names(bank: CAVBank) -> list[str]:
    """One name per CAV of a bank fitted as one (concept, negatives) pair per concept."""
    names = [positive for positive, _ in bank.pairs_]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"a CCE bank needs one CAV per concept; {repeated} have several (fit one pair per concept)")
    return names


def concept_box(bank: CAVBank, embeddings: Tensor, kappa: Kappa | None = "mean") -> ConceptBox:
    """Bounds that keep each new margin in [min, max] training margin, plus the validity rule.

    Margins already outside the training range leave ``w = 0`` feasible (the bounds are clipped to
    contain 0). A concept whose largest training margin is not positive cannot be used (bounds 0).
    """
    device = embeddings.device
    directions = bank.directions_.to(device)
    margin_max, margin_min = bank.margin_max_.to(device), bank.margin_min_.to(device)
    usable = margin_max > 0
    scale = torch.where(usable, margin_max, torch.ones_like(margin_max))
    margins = embeddings @ directions.T + bank.intercepts_.to(device)
    upper = (margin_max - margins) / scale
    lower = (margin_min - margins) / scale
    if kappa is not None:
        if kappa == "mean":
            present, absent = bank.positive_mean_.to(device), bank.negative_mean_.to(device)
        elif kappa == "zero":
            present = absent = torch.zeros_like(margin_max)
        else:
            raise ValueError(f"kappa must be 'mean', 'zero' or None; got {kappa!r}")
        upper = torch.where(margins > present, torch.zeros_like(upper), upper)
        lower = torch.where(margins < absent, torch.zeros_like(lower), lower)
    upper = upper.clamp_min(0) * usable
    lower = lower.clamp_max(0) * usable
    return ConceptBox(lower, upper, directions * scale[:, None])


@dataclass
class Counterfactuals:
    """Concept scores per sample (B, K) and what the counterfactual achieved.

    For CCE, ``weights`` are the solved concept weights (> 0 add, < 0 remove); for a baseline they
    are its ranking scores. ``success`` and ``target_probability`` describe the counterfactual
    embedding (for baselines: the original one, as they change nothing).
    """

    concepts: list[str]
    weights: Tensor
    targets: Tensor
    original_prediction: Tensor
    prediction: Tensor
    target_probability: Tensor
    steps: Tensor

    @property
    def success(self) -> Tensor:
        """True where the counterfactual prediction equals the target."""
        return self.prediction == self.targets

    def ranks(self, concept: str | int) -> Tensor:
        """Rank (1 = first) of ``concept`` among concepts to add, per sample; ties count against it."""
        k = self.concepts.index(concept) if isinstance(concept, str) else int(concept)
        own = self.weights[:, k : k + 1]
        ahead = (self.weights > own).sum(1) + (self.weights == own).sum(1) - 1
        return ahead + 1

    def explanation(self, sample: int, top: int = 5) -> dict[str, list[tuple[str, float]]]:
        """The ``top`` concepts to add and to remove for one sample, strongest first."""
        w = self.weights[sample]
        order = torch.argsort(w, descending=True).tolist()
        add = [(self.concepts[k], float(w[k])) for k in order if w[k] > 0][:top]
        remove = [(self.concepts[k], float(w[k])) for k in reversed(order) if w[k] < 0][:top]
        return {"add": add, "remove": remove}


def _check_inputs(bank: CAVBank, head: nn.Module, embeddings: Tensor, targets: Tensor | int) -> tuple[Tensor, Tensor]:
    if not hasattr(bank, "directions_"):
        raise ValueError("the concept bank is not fitted: call CAVBank.fit(...) or CAVBank.load(path) first")
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (batch, dim); got shape {tuple(embeddings.shape)}")
    dim = bank.directions_.shape[1]
    if embeddings.shape[1] != dim:
        raise ValueError(
            f"embeddings have {embeddings.shape[1]} dimensions but the bank's CAVs have {dim}: fit the bank on "
            "the activations the head takes as input"
        )
    if not torch.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or infinite values")
    device = next((p.device for p in head.parameters()), embeddings.device)  # solve where the head lives
    z = embeddings.detach().float().to(device)
    targets = torch.as_tensor(targets, device=z.device).long()
    if targets.ndim == 0:
        targets = targets.expand(z.shape[0])
    if targets.shape != (z.shape[0],):
        raise ValueError(f"targets must be one class or one per sample ({z.shape[0]}); got shape {tuple(targets.shape)}")
    with torch.no_grad():
        n_classes = head(z[:1]).shape[-1]
    bad = targets[(targets < 0) | (targets >= n_classes)]
    if len(bad):
        raise ValueError(f"target {int(bad[0])} is not a class of the head, which outputs {n_classes} logits")
    return z, targets


class CCE:
    """Batched conceptual-counterfactual solver over a fitted ``CAVBank`` and a differentiable head.

    Hyperparameters follow the reference: ``alpha`` (L1) 0.1, ``beta`` (L2) 0.01, SGD with learning
    rate 0.01 and momentum 0.9 for 100 steps. ``kappa`` picks the validity thresholds ("mean": the
    positive / negative training-margin means; "zero": the hyperplane; None: box only).
    ``early_stop`` freezes a sample's weights at the first step whose counterfactual reaches the
    target. ``batch_size`` bounds memory: larger batches are solved in chunks.
    """

    def __init__(
        self,
        bank: CAVBank,
        head: nn.Module,
        alpha: float = 0.1,
        beta: float = 0.01,
        lr: float = 0.01,
        momentum: float = 0.9,
        steps: int = 100,
        kappa: Kappa | None = "mean",
        early_stop: bool = False,
        batch_size: int = 4096,
    ):
        if steps < 1 or batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive; got {steps} and {batch_size}")
        if kappa not in ("mean", "zero", None):
            raise ValueError(f"kappa must be 'mean', 'zero' or None; got {kappa!r}")
        self.bank = bank
        self.head = head
        self.alpha = alpha
        self.beta = beta
        self.lr = lr
        self.momentum = momentum
        self.steps = steps
        self.kappa = kappa
        self.early_stop = early_stop
        self.batch_size = batch_size

    def explain(self, embeddings: Tensor, targets: Tensor | int) -> Counterfactuals:
        """Solve for every row of ``embeddings`` (B, D) towards ``targets`` (one class or B)."""
        with evaluating(self.head):
            z, targets = _check_inputs(self.bank, self.head, embeddings, targets)
            parts = [self._solve(z[i : i + self.batch_size], targets[i : i + self.batch_size])
                     for i in range(0, z.shape[0], self.batch_size)]
        weights, original, steps, logits = (torch.cat(p) for p in zip(*parts))
        return _outcome(concept_names(self.bank), logits, weights, targets, original, steps)

    def score(self, embeddings: Tensor, targets: Tensor | int) -> float:
        """Fraction of samples whose counterfactual reaches its target."""
        return float(self.explain(embeddings, targets).success.float().mean())

    def _solve(self, z: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Weights, original prediction, steps taken and counterfactual logits of one chunk."""
        box = concept_box(self.bank, z, self.kappa)
        n_concepts = box.steps.shape[0]
        weights = torch.zeros(z.shape[0], n_concepts, device=z.device)
        velocity = torch.zeros_like(weights)
        active = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        taken = torch.full((z.shape[0],), self.steps, dtype=torch.long, device=z.device)
        original = None
        for step in range(self.steps):
            weights.requires_grad_(True)
            logits = self.head(z + weights @ box.steps)
            if original is None:
                original = logits.detach().argmax(1)
            if self.early_stop:
                reached = active & (logits.detach().argmax(1) == targets)
                taken[reached] = step
                active &= ~reached
                if not active.any():
                    weights = weights.detach()
                    break
            loss = (
                F.cross_entropy(logits, targets, reduction="none")
                + self.alpha * weights.abs().sum(1) / n_concepts
                + self.beta * torch.linalg.vector_norm(weights, dim=1) / n_concepts
            )
            (grad,) = torch.autograd.grad(loss.sum(), weights)
            with torch.no_grad():
                velocity = self.momentum * velocity + grad
                moved = torch.clamp(weights - self.lr * velocity, box.lower, box.upper)
                weights = torch.where(active[:, None], moved, weights)
        weights = weights.detach()
        with torch.no_grad():
            logits = self.head(z + weights @ box.steps)
        return weights, original, taken, logits


def _outcome(names: list[str], logits: Tensor, weights: Tensor, targets: Tensor, original: Tensor,
             steps: Tensor) -> Counterfactuals:
    """Scores plus what the head predicts for the counterfactual embeddings (their ``logits``)."""
    probability = logits.softmax(1).gather(1, targets[:, None])[:, 0]
    return Counterfactuals(names, weights.cpu(), targets.cpu(), original.cpu(), logits.argmax(1).cpu(),
                           probability.cpu(), steps.cpu())


@torch.no_grad()
def univariate_scores(bank: CAVBank, head: nn.Module, embeddings: Tensor, targets: Tensor | int,
                      kappa: Kappa | None = "mean", chunk: int = 64) -> Counterfactuals:
    """Baseline: add each concept alone, as far as its box allows; score = gain in target probability."""
    with evaluating(head):
        z, targets = _check_inputs(bank, head, embeddings, targets)
        logits = head(z)
        before = logits.softmax(1).gather(1, targets[:, None])  # (B, 1)
        gains = []
        for i in range(0, z.shape[0], chunk):
            rows, goal = z[i : i + chunk], targets[i : i + chunk]
            box = concept_box(bank, rows, kappa)
            moved = rows[:, None, :] + box.upper[:, :, None] * box.steps[None]  # (b, K, D)
            after = head(moved.flatten(0, 1)).softmax(1).view(len(rows), moved.shape[1], -1)
            after = after.gather(2, goal[:, None, None].expand(-1, moved.shape[1], 1))[..., 0]
            gains.append(after - before[i : i + chunk])
    original = logits.argmax(1)
    return _outcome(concept_names(bank), logits, torch.cat(gains), targets, original, torch.zeros_like(targets))


@torch.no_grad()
def random_scores(bank: CAVBank, head: nn.Module, embeddings: Tensor, targets: Tensor | int,
                  seed: int = 0) -> Counterfactuals:
    """Baseline: a uniformly random concept ranking per sample (chance level)."""
    with evaluating(head):
        z, targets = _check_inputs(bank, head, embeddings, targets)
        logits = head(z)
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(z.shape[0], bank.directions_.shape[0], generator=generator)
    return _outcome(concept_names(bank), logits, scores, targets, logits.argmax(1), torch.zeros_like(targets))
