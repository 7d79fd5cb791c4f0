"""Policies that learn from data before they are used, as in the CEM authors' code
(``cem/interventions``): CooP with its weights tuned on validation, the two global validation
orders, and behavioural cloning of the greedy oracle.

``conceptlab.interventions.fit_policy(name, model, train=..., val=...)`` returns the ready policy;
the bench fits each on the run's own training and validation splits, never on the test split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..metrics import task_score
from ..models import mlp
from ..models.base import ConceptModel, Intervention, decode_all, encode_all
from ..runtime import evaluating, seeded
from .curves import policy_curve
from .policies import BINARY_CONCEPTS, MULTICLASS, Policy, PolicyData, PolicyState
from .sequential import coop_policy, oracle

COOP_GRID = (0.1, 1.0, 10.0, 100.0)  # the authors' fine_tune_coop grid for both weights
COOP_FRACTIONS = (0.01, 0.05, 0.25, 0.5)  # the shares of the units the authors tune CooP at


def _unfitted(state: PolicyState) -> Tensor:  # Policy.__call__ refuses before this is reached
    raise AssertionError("an unfitted policy was asked to score")


def tune_coop(data: PolicyData, grid: tuple[float, ...] = COOP_GRID) -> Policy:
    """CooP with (concept_weight, label_weight) chosen on validation as the authors do: every pair
    of ``grid`` (a weight ratio tried once), scored by sum_k acc_k (1 - k / G) over the numbers of
    corrected units k = ceil(f G) for f in 1 %, 5 %, 25 %, 50 %; the first best pair wins."""
    n_units = data.units.shape[0]
    counts = sorted({math.ceil(f * n_units) for f in COOP_FRACTIONS})
    codes = encode_all(data.model, data.val.inputs)
    seen, best, best_score = set(), None, -math.inf
    for alpha in grid:
        for beta in grid:
            if alpha / beta in seen:
                continue
            seen.add(alpha / beta)
            curve = policy_curve(data.model, data.val, coop_policy(concept_weight=alpha, label_weight=beta), groups=data.groups, repeats=1,
                                 seed=data.seed, codes=codes)
            score = sum(curve.accuracy_mean[k] * (1 - k / n_units) for k in counts)
            if score > best_score:
                best, best_score = (alpha, beta), score
    tuned = coop_policy(concept_weight=best[0], label_weight=best[1])
    return Policy("coop", tuned.score, sequential=True, source=tuned.source + "; weights tuned on validation",
                  settings={"concept_weight": best[0], "label_weight": best[1]})


def _static(name: str, concept_scores: Tensor, source: str) -> Policy:
    """A fixed order for every sample: (k,) concept scores, a group scoring its max (as the authors)."""

    def score(state: PolicyState) -> Tensor:
        return state.per_unit(concept_scores.to(state.probs.device).expand(state.probs.shape[0], -1), "max")

    return Policy(name, score, source=source)


def global_val_error(data: PolicyData) -> Policy:
    """The concepts worst predicted on validation first: 1 / |AUC_i - 0.5|, with the authors' AUC of
    the thresholded predictions (their accuracy where labels or predictions are constant)."""
    from sklearn.metrics import roc_auc_score

    probs = decode_all(data.model, encode_all(data.model, data.val.inputs)).concept_probs.detach().cpu()
    labels, hard = (data.val.c.cpu() >= 0.5).numpy(), (probs >= 0.5).numpy()
    aucs = torch.tensor([
        float((labels[:, i] == hard[:, i]).mean()) if len(set(labels[:, i])) == 1 or len(set(hard[:, i])) == 1
        else float(roc_auc_score(labels[:, i], hard[:, i]))
        for i in range(labels.shape[1])
    ])
    return _static("global-val-error", 1.0 / (aucs - 0.5 + 1e-8).abs(),
                   "CEM authors' GlobalValidationPolicy (global_val_error)")


def global_val_improvement(data: PolicyData) -> Policy:
    """The concepts whose correction alone most raises validation accuracy first (one fixed order)."""
    model, val = data.model, data.val
    codes = encode_all(model, val.inputs)
    k = val.info.n_concepts
    accuracy = torch.zeros(k)
    for i in range(k):
        mask = torch.zeros(len(val), k, dtype=torch.bool, device=codes.device)
        mask[:, i] = True
        logits = decode_all(model, codes, Intervention(mask, val.c.to(codes.device))).task_logits
        accuracy[i] = task_score(logits, val.y.to(codes.device), val.info.task)
    return _static("global-val-improvement", accuracy, "CEM authors' GlobalValidationImprovementPolicy (global_val_improvement)")


def cloning_input(model: ConceptModel, codes: Tensor, intervention: Intervention) -> Tensor:
    """What the cloned policy reads: the bottleneck with the intervention applied, and the 0/1 mask
    of corrected concepts (for a CEM: the flattened concept embeddings, as the authors' cloner)."""
    bottleneck = model.decode(codes, intervention).bottleneck.flatten(1)
    return torch.cat([bottleneck, intervention.mask.to(bottleneck.dtype)], dim=1)


def behavioural_cloning(
    data: PolicyData,
    *,
    dataset_size: int = 5000,
    batch_size: int = 256,
    epochs: int = 100,
    horizon_rate: float = 1.001,
    hidden: tuple[int, ...] = (256, 128),
) -> Policy:
    """An MLP trained to imitate the greedy ``oracle`` (the authors' ``BehavioralLearningPolicy``):
    ``dataset_size // batch_size`` batches of training samples, each with a random number of units
    already corrected (below a horizon that starts at 1 and grows by ``horizon_rate`` per batch, up
    to half the units), labelled with the oracle's next unit; SGD (lr 0.01, momentum 0.9, weight
    decay 4e-5) for ``epochs``. At test time its best-scored unit is corrected next.

    With the authors' defaults the horizon stays below 2 over the 19 batches, so every example
    starts from an uncorrected sample: the cloner learns the oracle's *first* choice.
    """
    model, train, units = data.model, data.train, data.units
    n_units = units.shape[0]
    max_horizon = math.ceil(n_units / 2)
    with seeded(data.seed), evaluating(model), torch.no_grad():
        generator = torch.Generator().manual_seed(data.seed)
        inputs, targets, horizon = [], [], 1.0
        all_codes = encode_all(model, train.inputs)
        for _ in range(max(1, dataset_size // batch_size)):
            rows = torch.randperm(len(train), generator=generator)[:batch_size]
            codes, c, y = all_codes[rows.to(all_codes.device)], train.c[rows], train.y[rows]
            before = int(torch.randint(0, max(1, min(int(horizon), n_units)), (), generator=generator))
            keys = torch.rand(len(rows), n_units, generator=generator)
            done = keys.argsort(1).argsort(1) < before
            mask = (done.float() @ units.float()) > 0
            intervention = Intervention(mask.to(codes.device), c.to(codes.device))
            probs = model.decode(codes).concept_probs
            state = PolicyState(model, codes, probs, units.to(codes.device), done.to(codes.device), intervention, generator,
                                c.to(codes.device), y.to(codes.device))
            targets.append(oracle(state).masked_fill(done.to(codes.device), float("-inf")).argmax(1).cpu())
            inputs.append(cloning_input(model, codes, intervention).float().cpu())
            horizon = min(horizon * horizon_rate, max_horizon)
        inputs, targets = torch.cat(inputs), torch.cat(targets)
        cloner = mlp(inputs.shape[1], n_units, hidden)
    optimizer = torch.optim.SGD(cloner.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    with seeded(data.seed):
        for _ in range(epochs):
            for start in range(0, len(inputs), batch_size):
                loss = F.cross_entropy(cloner(inputs[start : start + batch_size]), targets[start : start + batch_size])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    cloner.eval()
    with torch.no_grad():
        imitation = float((cloner(inputs).argmax(1) == targets).float().mean())

    def score(state: PolicyState) -> Tensor:
        intervention = state.intervention or Intervention(
            torch.zeros_like(state.probs, dtype=torch.bool), torch.zeros_like(state.probs))
        features = cloning_input(state.model, state.codes, intervention).float()
        return cloner.to(features.device)(features)

    return Policy("behavioural-cloning", score, sequential=True,
                  source="CEM authors' BehavioralLearningPolicy: an MLP imitating the greedy oracle",
                  settings={"examples": float(len(targets)), "training_agreement": imitation})


FITTED = [
    Policy("coop", _unfitted, sequential=True, fit=tune_coop, needs=(BINARY_CONCEPTS, MULTICLASS),
           source="CooP, Chauhan et al., AAAI 2023; weights tuned on validation as the CEM authors' fine_tune_coop"),
    Policy("global-val-error", _unfitted, fit=global_val_error, source="CEM authors' code (global_val_error)",
           needs=(BINARY_CONCEPTS,)),
    Policy("global-val-improvement", _unfitted, fit=global_val_improvement,
           source="CEM authors' code (global_val_improvement)"),
    Policy("behavioural-cloning", _unfitted, sequential=True, fit=behavioural_cloning, needs=(MULTICLASS,),
           source="CEM authors' code (behavioural_cloning), imitating the greedy oracle"),
]
