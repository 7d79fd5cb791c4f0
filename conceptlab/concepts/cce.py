"""Conceptual counterfactual explanations (CCE; Abid, Yuksekgonul and Zou, ICML 2022).

A model head ``g`` maps an embedding ``z`` to logits. CCE looks for sparse concept weights ``w``
such that the perturbed embedding ``z' = z + sum_i w_i M_i v_i`` (``v_i`` a unit CAV, ``M_i`` the
largest training margin of concept ``i``) is classified as a chosen target:

    min_w  CE(g(z'), target) + alpha ||w||_1 + beta ||w||_2

with each concept's new margin kept inside its training range ``[m_i, M_i]`` (box) and, with
``kappa`` set, no adding of a concept already clearly present nor removing of one clearly absent
(validity). ``w_i > 0`` reads "add concept i", ``w_i < 0`` "remove concept i".

The penalties are per unit weight, whatever the number of concepts ``K``: a concept that does not
move the prediction keeps weight 0 and leaves the others' weights unchanged, so ``alpha`` means
the same on a 10-concept bank as on a 130-concept one. A weight is in units of its concept's
largest training margin, so rescaling the embedding space (and the head inversely) changes
nothing either. The published code divides both penalties by ``K``; ``CCE.published`` does so.

Two readings of CE: ``objective="reference"`` applies softmax and then cross-entropy, as the
published code does (a bounded loss whose gradient vanishes when the target class has almost no
probability, so many mistakes of a confident many-class head are never flipped);
``objective="logits"`` takes cross-entropy of the logits (it always pulls towards the target,
and with a proximal L1 step still names few concepts).

Every sample has its own ``w`` and loss, so a whole batch is solved at once: the summed loss has
per-row gradients equal to per-sample solving, and momentum SGD acts row by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import heads
from ..runtime import evaluating
from .cav import CAVBank

Kappa = Literal["mean", "zero"]
Objective = Literal["reference", "logits"]
MarginMeans = Literal["sign", "label"]
L1Step = Literal["proximal", "subgradient"]

# conceptlab's solver defaults, in one place (the benchmark's settings read them too)
CCE_DEFAULTS: dict[str, Any] = {
    "alpha": 0.078, "beta": 1e-4, "lr": 0.01, "momentum": 0.9, "steps": 100, "kappa": "mean", "early_stop": False,
    "objective": "logits", "margin_means": "sign", "support_threshold": 1e-3, "l1_step": "proximal",
}


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


def concept_box(bank: CAVBank, embeddings: Tensor, kappa: Kappa | None = "mean",
                margin_means: MarginMeans = "sign") -> ConceptBox:
    """Bounds that keep each new margin in [min, max] training margin, plus the validity rule.

    With ``kappa="mean"`` a concept whose margin is above the "present" mean cannot be added and
    one below the "absent" mean cannot be removed; ``margin_means`` says which means: ``"sign"``
    the mean of the training margins above / below zero (the reference code), ``"label"`` the
    mean margin of the positive / negative training examples. Margins already outside the
    training range leave ``w = 0`` feasible (the bounds are clipped to contain 0). A concept whose
    largest training margin is not positive cannot be used (bounds 0).
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
            if margin_means not in ("sign", "label"):
                raise ValueError(f"margin_means must be 'sign' or 'label'; got {margin_means!r}")
            by_sign = margin_means == "sign"
            present = (bank.above_mean_ if by_sign else bank.positive_mean_).to(device)
            absent = (bank.below_mean_ if by_sign else bank.negative_mean_).to(device)
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
    embedding (for baselines: the original one, as they change nothing). A concept is in a
    sample's explanation when ``|weight| > support_threshold``.

    Attributes:
        concepts: The bank's concept names (the columns of ``weights``).
        weights: (B, K) concept weights (CCE) or ranking scores (baselines).
        targets: (B,) the target class of each sample.
        original_prediction: (B,) the class predicted before any change.
        prediction: (B,) the class the counterfactual embedding predicts.
        target_probability: (B,) the target class's probability there.
        steps: (B,) optimisation steps each sample took.
        support_threshold: A concept is in an explanation when ``|weight|`` exceeds this.
    """

    concepts: list[str]
    weights: Tensor
    targets: Tensor
    original_prediction: Tensor
    prediction: Tensor
    target_probability: Tensor
    steps: Tensor
    support_threshold: float = 0.0

    @property
    def success(self) -> Tensor:
        """True where the counterfactual prediction equals the target."""
        return self.prediction == self.targets

    @property
    def support(self) -> Tensor:
        """Number of concepts per sample with ``|weight| > support_threshold`` (the explanation's size)."""
        return (self.weights.abs() > self.support_threshold).sum(1)

    def ranks(self, concept: str | int) -> Tensor:
        """Rank (1 = first) of ``concept`` among concepts to add, per sample; ties count against it."""
        k = self.concepts.index(concept) if isinstance(concept, str) else int(concept)
        own = self.weights[:, k : k + 1]
        ahead = (self.weights > own).sum(1) + (self.weights == own).sum(1) - 1
        return ahead + 1

    def explanation(self, sample: int, top: int = 5) -> dict[str, list[tuple[str, float]]]:
        """At most ``top`` concepts to add and to remove for one sample (those in its support), strongest first."""
        w = self.weights[sample]
        order = torch.argsort(w, descending=True).tolist()
        cut = self.support_threshold
        add = [(self.concepts[k], float(w[k])) for k in order if w[k] > cut][:top]
        remove = [(self.concepts[k], float(w[k])) for k in reversed(order) if w[k] < -cut][:top]
        return {"add": add, "remove": remove}


def head_class_logits(head: nn.Module, z: Tensor) -> Tensor:
    """The head's logits for ``z`` as (B, n_classes), whose softmax is the class distribution
    (``models.heads.class_logits``: a single binary logit ``z`` becomes ``[0, z]``)."""
    return heads.class_logits(heads.output_logits(head(z)))


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
    targets = torch.as_tensor(targets, device=z.device)
    if targets.is_floating_point() and not torch.equal(targets, targets.round()):
        raise ValueError("targets must be class indices, not scores")
    targets = targets.long()
    if targets.ndim == 0:
        targets = targets.expand(z.shape[0])
    if targets.shape != (z.shape[0],):
        raise ValueError(f"targets must be one class or one per sample ({z.shape[0]}); got shape {tuple(targets.shape)}")
    with torch.no_grad():
        n_classes = head_class_logits(head, z[:1]).shape[1]
    bad = targets[(targets < 0) | (targets >= n_classes)]
    if len(bad):
        raise ValueError(f"target {int(bad[0])} is not a class of the head, which distinguishes {n_classes} classes "
                         f"(0..{n_classes - 1})")
    return z, targets


class CCE:
    """Batched conceptual-counterfactual solver over a fitted ``CAVBank`` and a differentiable head.

    Defaults (chosen on the development scenarios of ``benchmarks/cce_transfer.py``, reported on
    its held-out ones in docs/guide/cce.md) name few concepts and reach the target: cross-entropy of the logits
    (``objective="logits"``) with an L1 term applied by a proximal step (``l1_step="proximal"``:
    soft-thresholding after each momentum-SGD step, so weights the loss does not need stay
    exactly 0) of strength ``alpha`` 0.078 per unit weight, ``beta`` (L2)
    1e-4, learning rate 0.01, momentum 0.9, 100 steps, and the validity rule ``kappa="mean"``
    with means grouped by sign. ``CCE.published(bank, head)`` gives the published solver
    instead: softmax then cross-entropy (``objective="reference"``), the L1 term in the gradient
    (``l1_step="subgradient"``), ``alpha`` 0.1. ``margin_means="label"`` groups training margins
    by the examples' labels; ``kappa`` picks the validity thresholds ("mean", "zero": the
    hyperplane, None: box only). ``early_stop`` freezes a sample's weights at the first step
    whose counterfactual reaches the target. A concept counts towards an explanation
    (``support``) when ``|w| > support_threshold``. ``batch_size`` bounds memory.

    Args:
        bank: A fitted concept bank on the head's input embedding.
        head: The differentiable module from the embedding to the logits.
        alpha: L1 strength per unit weight (few concepts).
        beta: L2 strength.
        lr: Learning rate of momentum SGD.
        momentum: Its momentum.
        steps: Optimisation steps.
        kappa: Validity thresholds: ``mean``, ``zero`` (the hyperplane) or None (box only).
        early_stop: Freeze a sample's weights at the first step that reaches the target.
        batch_size: Samples solved at once (bounds memory).
        objective: ``logits`` (cross-entropy of the logits) or ``reference`` (softmax, then cross-entropy, as published).
        margin_means: Group the training margins by ``sign`` or by the examples' ``label``.
        support_threshold: A concept counts in an explanation when ``|w|`` exceeds this.
        l1_step: ``proximal`` (soft-thresholding) or ``subgradient`` (as published).

    Examples:
        >>> from conceptlab.concepts import CCE, bank_from_labels
        >>> z, c = torch.randn(300, 6), (torch.rand(300, 3) > 0.5).float()
        >>> bank = bank_from_labels(z, c, ["a", "b", "c"], examples=50)
        >>> found = CCE(bank, torch.nn.Linear(6, 2), steps=5).explain(z[:4], targets=1)
        >>> found.weights.shape
        torch.Size([4, 3])
    """

    # alpha and beta as published, before their division by the number of concepts
    PUBLISHED = {"objective": "reference", "l1_step": "subgradient", "alpha": 0.1, "beta": 0.01, "lr": 0.01,
                 "momentum": 0.9, "steps": 100, "kappa": "mean", "margin_means": "sign"}

    def __init__(
        self,
        bank: CAVBank,
        head: nn.Module,
        *,
        alpha: float = CCE_DEFAULTS["alpha"],
        beta: float = CCE_DEFAULTS["beta"],
        lr: float = CCE_DEFAULTS["lr"],
        momentum: float = CCE_DEFAULTS["momentum"],
        steps: int = CCE_DEFAULTS["steps"],
        kappa: Kappa | None = CCE_DEFAULTS["kappa"],
        early_stop: bool = CCE_DEFAULTS["early_stop"],
        batch_size: int = 4096,
        objective: Objective = CCE_DEFAULTS["objective"],
        margin_means: MarginMeans = CCE_DEFAULTS["margin_means"],
        support_threshold: float = CCE_DEFAULTS["support_threshold"],
        l1_step: L1Step = CCE_DEFAULTS["l1_step"],
    ):
        if steps < 1 or batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive; got {steps} and {batch_size}")
        if kappa not in ("mean", "zero", None):
            raise ValueError(f"kappa must be 'mean', 'zero' or None; got {kappa!r}")
        if objective not in ("reference", "logits"):
            raise ValueError(f"objective must be 'reference' or 'logits'; got {objective!r}")
        if margin_means not in ("sign", "label"):
            raise ValueError(f"margin_means must be 'sign' or 'label'; got {margin_means!r}")
        if l1_step not in ("proximal", "subgradient"):
            raise ValueError(f"l1_step must be 'proximal' or 'subgradient'; got {l1_step!r}")
        if not support_threshold >= 0:
            raise ValueError(f"support_threshold must be non-negative; got {support_threshold}")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1); got {momentum}")
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
        self.objective = objective
        self.margin_means = margin_means
        self.support_threshold = support_threshold
        self.l1_step = l1_step

    @classmethod
    def published(cls, bank: CAVBank, head: nn.Module, **overrides) -> CCE:
        """The solver as Abid et al. published it (objective, L1 step, hyperparameters, validity rule),
        its penalties divided by the bank's number of concepts as in their code; ``overrides`` are
        taken as given (not divided)."""
        n_concepts = len(concept_names(bank))
        per_concept = {"alpha": cls.PUBLISHED["alpha"] / n_concepts, "beta": cls.PUBLISHED["beta"] / n_concepts}
        return cls(bank, head, **{**cls.PUBLISHED, **per_concept, **overrides})

    def explain(self, embeddings: Tensor, targets: Tensor | int) -> Counterfactuals:
        """Solve for every row of ``embeddings`` (B, D) towards ``targets`` (one class or B)."""
        with evaluating(self.head):
            z, targets = _check_inputs(self.bank, self.head, embeddings, targets)
            parts = [self._solve(z[i : i + self.batch_size], targets[i : i + self.batch_size])
                     for i in range(0, z.shape[0], self.batch_size)]
        weights, original, steps, logits = (torch.cat(p) for p in zip(*parts))
        return _outcome(concept_names(self.bank), logits, weights, targets, original, steps, self.support_threshold)

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Per-sample classification term: CE of softmax probabilities (reference) or of logits."""
        scores = logits.softmax(1) if self.objective == "reference" else logits
        return F.cross_entropy(scores, targets, reduction="none")

    def _solve(self, z: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Weights, original prediction, steps taken and counterfactual logits of one chunk."""
        box = concept_box(self.bank, z, self.kappa, self.margin_means)
        weights = torch.zeros(z.shape[0], box.steps.shape[0], device=z.device)
        velocity = torch.zeros_like(weights)
        active = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        taken = torch.full((z.shape[0],), self.steps, dtype=torch.long, device=z.device)
        original = None
        for step in range(self.steps):
            weights.requires_grad_(True)
            logits = head_class_logits(self.head, z + weights @ box.steps)
            if original is None:
                original = logits.detach().argmax(1)
            if self.early_stop:
                reached = active & (logits.detach().argmax(1) == targets)
                taken[reached] = step
                active &= ~reached
                if not active.any():
                    weights = weights.detach()
                    break
            loss = self._loss(logits, targets) + self.beta * torch.linalg.vector_norm(weights, dim=1)
            if self.l1_step == "subgradient":
                loss = loss + self.alpha * weights.abs().sum(1)
            (grad,) = torch.autograd.grad(loss.sum(), weights)
            with torch.no_grad():
                velocity = self.momentum * velocity + grad
                moved = weights - self.lr * velocity
                if self.l1_step == "proximal":
                    # soft-thresholding, so weights the loss does not need stay exactly 0. Momentum scales
                    # the smooth step by 1 / (1 - momentum) at a fixed point; the threshold is scaled
                    # alike, so fixed points are exactly the optima of loss + alpha |w|_1
                    moved = moved.sign() * (moved.abs() - self.lr * self.alpha / (1 - self.momentum)).clamp_min(0)
                moved = torch.clamp(moved, box.lower, box.upper)
                weights = torch.where(active[:, None], moved, weights)
        weights = weights.detach()
        with torch.no_grad():
            logits = head_class_logits(self.head, z + weights @ box.steps)
        return weights, original, taken, logits


def _outcome(names: list[str], logits: Tensor, weights: Tensor, targets: Tensor, original: Tensor,
             steps: Tensor, support_threshold: float = 0.0) -> Counterfactuals:
    """Scores plus what the head predicts for the counterfactual embeddings (their ``logits``)."""
    probability = logits.softmax(1).gather(1, targets[:, None])[:, 0]
    return Counterfactuals(names, weights.cpu(), targets.cpu(), original.cpu(), logits.argmax(1).cpu(),
                           probability.cpu(), steps.cpu(), support_threshold)


@torch.no_grad()
def univariate_scores(bank: CAVBank, head: nn.Module, embeddings: Tensor, *, targets: Tensor | int,
                      kappa: Kappa | None = "mean", chunk: int = 64, margin_means: MarginMeans = "sign") -> Counterfactuals:
    """Baseline: add each concept alone, as far as its box allows; score = gain in target probability.

    Args:
        bank: A fitted concept bank.
        head: The head from the embedding to the logits.
        embeddings: (B, D) embeddings to explain.
        targets: One target class, or one per sample.
        kappa: Validity thresholds, as for ``CCE``.
        chunk: Samples scored at once.
        margin_means: As for ``CCE``.

    Returns:
        ``Counterfactuals`` scored by the single-concept gain.

    Examples:
        >>> from conceptlab.concepts import bank_from_labels, univariate_scores
        >>> z = torch.randn(200, 4)
        >>> bank = bank_from_labels(z, (torch.rand(200, 2) > 0.5).float(), ["a", "b"], examples=30)
        >>> univariate_scores(bank, torch.nn.Linear(4, 2), z[:3], targets=1).weights.shape
        torch.Size([3, 2])
    """
    with evaluating(head):
        z, targets = _check_inputs(bank, head, embeddings, targets)
        logits = head_class_logits(head, z)
        before = logits.softmax(1).gather(1, targets[:, None])  # (B, 1)
        gains = []
        for i in range(0, z.shape[0], chunk):
            rows, goal = z[i : i + chunk], targets[i : i + chunk]
            box = concept_box(bank, rows, kappa, margin_means)
            moved = rows[:, None, :] + box.upper[:, :, None] * box.steps[None]  # (b, K, D)
            after = head_class_logits(head, moved.flatten(0, 1)).softmax(1).view(len(rows), moved.shape[1], -1)
            after = after.gather(2, goal[:, None, None].expand(-1, moved.shape[1], 1))[..., 0]
            gains.append(after - before[i : i + chunk])
    original = logits.argmax(1)
    return _outcome(concept_names(bank), logits, torch.cat(gains), targets, original, torch.zeros_like(targets))


@torch.no_grad()
def random_scores(bank: CAVBank, head: nn.Module, embeddings: Tensor, *, targets: Tensor | int,
                  seed: int = 0) -> Counterfactuals:
    """Baseline: a uniformly random concept ranking per sample (chance level).

    Args:
        bank: A fitted concept bank.
        head: The head from the embedding to the logits.
        embeddings: (B, D) embeddings to explain.
        targets: One target class, or one per sample.
        seed: Draws the rankings.

    Returns:
        ``Counterfactuals`` with random scores.

    Examples:
        >>> from conceptlab.concepts import bank_from_labels, random_scores
        >>> z = torch.randn(200, 4)
        >>> bank = bank_from_labels(z, (torch.rand(200, 2) > 0.5).float(), ["a", "b"], examples=30)
        >>> random_scores(bank, torch.nn.Linear(4, 2), z[:3], targets=0).weights.shape
        torch.Size([3, 2])
    """
    with evaluating(head):
        z, targets = _check_inputs(bank, head, embeddings, targets)
        logits = head_class_logits(head, z)
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(z.shape[0], bank.directions_.shape[0], generator=generator)
    return _outcome(concept_names(bank), logits, scores, targets, logits.argmax(1), torch.zeros_like(targets))
