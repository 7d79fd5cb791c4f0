"""Oracle and niche impurity scores (OIS, NIS; Espinosa Zarlenga et al., AAAI 2023).

Both ask how much a concept's representation says about *other* concepts. Each concept's own
representation is used (``own_representations``): a CEM's embedding, a CBM's bottleneck unit.

OIS: the purity matrix holds, for every pair (i, j), the held-out AUC of a small MLP (one hidden
layer of 32 ReLU units, as in the authors' code) that predicts true concept j from
representation i; the oracle matrix is the same with the true concept i as input (and 1 on
its diagonal). OIS = ||purity - oracle||_F / (k / 2), 0 when representations carry exactly what
the concepts themselves imply about each other. All k^2 MLPs train at once, as one batched model,
for 300 Adam steps (the authors' 25 epochs are 25 steps on a few hundred samples, which leaves
some helpers untrained: an AUC of 0 for a concept predicting itself).

NIS: one MLP (20, 20) learns every concept from all representations together. For a threshold
beta, concept j's niche is the set of representations whose largest absolute correlation with
c_j exceeds beta; the impurity at beta is the mean AUC of predicting c_j with its niche zeroed
out (from the representations outside it). NIS is the area under impurity for beta = 0, 0.05,
..., 0.95. (The authors' code uses the inside-niche prediction for multi-dimensional
representations and the outside one for scalars; conceptlab uses the outside one, the paper's
definition, for both, and absolute correlations for both.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn

from ..models.base import ConceptOutput
from .labels import check_binary_labels


def own_representations(output: ConceptOutput, n_concepts: int) -> Tensor | None:
    """(N, k, d): each concept's own representation; ``None`` for models without concepts.

    CEM: its embedding (d = m). CBM: its bottleneck unit (d = 1); a hybrid CBM's extra units
    belong to no concept and are left out.

    Args:
        output: A model's output on the data.
        n_concepts: The model's number of concepts.

    Returns:
        (N, k, d), or None.

    Examples:
        >>> from conceptlab.metrics import own_representations
        >>> from conceptlab.models import cbm
        >>> own_representations(cbm(in_features=2, n_concepts=2, n_classes=2)(torch.randn(4, 2)), 2).shape
        torch.Size([4, 2, 1])
    """
    if output.concept_probs is None:
        return None
    if output.concept_embeddings is not None:
        return output.concept_embeddings
    return output.bottleneck[:, :n_concepts].unsqueeze(-1)


def _check(representations: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    if representations.ndim != 3 or c.ndim != 2 or representations.shape[:2] != c.shape:
        raise ValueError(f"need representations (N, k, d) and concepts (N, k); got {tuple(representations.shape)} "
                         f"and {tuple(c.shape)}")
    if not torch.isfinite(representations).all():
        raise ValueError("concept representations contain NaN or infinite values")
    if representations.shape[0] < 10:
        raise ValueError(f"impurity scores need at least 10 samples; got {representations.shape[0]}")
    check_binary_labels(c, "impurity")
    return representations.detach().float().cpu(), c.detach().float().cpu()


def _split(n: int, test_fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    order = torch.randperm(n, generator=generator)
    n_test = max(1, int(round(test_fraction * n)))
    return order[n_test:], order[:n_test]


def batched_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``scores`` (P, n) against the 0/1 row of ``labels`` (P, n) (ties
    count half); NaN where a row's labels are all equal."""
    ranks = rankdata(scores, axis=1)
    positives = labels.sum(1)
    negatives = labels.shape[1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * labels).sum(1) - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _minibatches(rows: Tensor, size: int, steps: int, generator: torch.Generator):
    """``steps`` minibatches of ``size`` rows, reshuffled every pass over ``rows``."""
    size = min(size, len(rows))
    done = 0
    while True:
        shuffled = rows[torch.randperm(len(rows), generator=generator)]
        for first in range(0, len(shuffled) - size + 1, size):
            if done == steps:
                return
            done += 1
            yield shuffled[first : first + size]


def _glorot(*shape: int, fan_in: int, fan_out: int, generator: torch.Generator) -> nn.Parameter:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)


def purity_matrix(
    representations: Tensor,
    c: Tensor,
    *,
    test_fraction: float = 0.2,
    hidden: int = 32,
    steps: int = 300,
    batch_size: int = 512,
    lr: float = 1e-2,
    seed: int = 0,
    pairs_per_block: int = 2048,
) -> Tensor:
    """(k, k): held-out AUC of predicting true concept j from representation i, every pair at once.

    Args:
        representations: (N, k, d) each concept's own representation.
        c: (N, k) concept labels.
        test_fraction: Share of the rows held out for the AUCs.
        hidden: Hidden width of each helper MLP.
        steps: Adam steps of every helper.
        batch_size: Rows per step.
        lr: Adam's learning rate.
        seed: Draws the held-out rows, batches and initial weights.
        pairs_per_block: Helpers trained at once (bounds memory for large k).

    Returns:
        (k, k) AUCs.

    Examples:
        >>> from conceptlab.metrics import purity_matrix
        >>> c = (torch.rand(300, 2) > 0.5).float()
        >>> purity_matrix(c.unsqueeze(-1), c, steps=50).shape
        torch.Size([2, 2])
    """
    reps, labels = _check(representations, c)
    n, k, d = reps.shape
    generator = torch.Generator().manual_seed(seed)
    train, test = _split(n, test_fraction, generator)
    matrix = torch.full((k, k), float("nan"))
    sources_per_block = max(1, pairs_per_block // k)
    for first in range(0, k, sources_per_block):
        sources = slice(first, min(k, first + sources_per_block))
        helpers = _PairwiseMLPs(sources.stop - sources.start, k, d, hidden, generator)
        optimizer = torch.optim.Adam(helpers.parameters(), lr=lr)
        for rows in _minibatches(train, batch_size, steps, generator):
            target = labels[rows].unsqueeze(1).expand(-1, helpers.sources, -1)
            loss = nn.functional.binary_cross_entropy_with_logits(helpers(reps[rows, sources]), target, reduction="none")
            optimizer.zero_grad()
            loss.mean(0).sum().backward()  # every pair follows its own mean loss
            optimizer.step()
        with torch.no_grad():
            scores = helpers(reps[test, sources]).permute(1, 2, 0).reshape(helpers.sources * k, -1).numpy()
        truth = labels[test].T.repeat(helpers.sources, 1).numpy()
        matrix[sources] = torch.from_numpy(batched_auc(scores, truth)).float().view(helpers.sources, k)
    return matrix


class _PairwiseMLPs(nn.Module):
    """``sources`` x ``targets`` independent MLPs d -> hidden (ReLU) -> 1, evaluated as one."""

    def __init__(self, sources: int, targets: int, d: int, hidden: int, generator: torch.Generator):
        super().__init__()
        self.sources = sources
        self.w1 = _glorot(sources, targets, d, hidden, fan_in=d, fan_out=hidden, generator=generator)
        self.b1 = nn.Parameter(torch.zeros(sources, targets, hidden))
        self.w2 = _glorot(sources, targets, hidden, fan_in=hidden, fan_out=1, generator=generator)
        self.b2 = nn.Parameter(torch.zeros(sources, targets))

    def forward(self, x: Tensor) -> Tensor:
        """(B, sources, d) -> (B, sources, targets) logits."""
        h = torch.relu(torch.einsum("bsd,sjdh->bsjh", x, self.w1) + self.b1)
        return torch.einsum("bsjh,sjh->bsj", h, self.w2) + self.b2


def oracle_impurity_score(
    representations: Tensor, c: Tensor, *, test_fraction: float = 0.2, seed: int = 0
) -> float:
    """OIS in [0, 2k/k]: the Frobenius distance between the purity matrix of the representations
    and the oracle's (true concepts as inputs), divided by k/2. Concepts constant on the held-out
    split are left out.

    Args:
        representations: (N, k, d) each concept's own representation.
        c: (N, k) concept labels.
        test_fraction: Share of the rows held out to score the helpers.
        seed: Draws the held-out rows and initialises the helpers.

    Returns:
        OIS (0: as pure as the concepts themselves).

    Examples:
        >>> from conceptlab.metrics import oracle_impurity_score
        >>> c = (torch.rand(300, 2) > 0.5).float()
        >>> oracle_impurity_score(c.unsqueeze(-1), c) < 0.2
        True
    """
    predicted = purity_matrix(representations, c, test_fraction=test_fraction, seed=seed)
    oracle = purity_matrix((c > 0.5).float().unsqueeze(-1), c, test_fraction=test_fraction, seed=seed)
    oracle.fill_diagonal_(1.0)
    kept = ~(torch.isnan(predicted).any(0) | torch.isnan(oracle).any(0))
    if not kept.any():
        raise ValueError("every concept is constant on the held-out split; OIS is undefined")
    gap = (predicted - oracle)[kept][:, kept]
    return float(torch.linalg.matrix_norm(gap) / (int(kept.sum()) / 2))


class _MultiLabelMLP(nn.Module):
    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...], generator: torch.Generator):
        super().__init__()
        widths = [n_in, *hidden, n_out]
        self.weights = nn.ParameterList(
            _glorot(a, b, fan_in=a, fan_out=b, generator=generator) for a, b in zip(widths[:-1], widths[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in widths[1:])

    def forward(self, x: Tensor) -> Tensor:
        for index, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if index < len(self.weights) - 1:
                x = torch.relu(x)
        return x


def _fit_multilabel(x: Tensor, y: Tensor, generator: torch.Generator, hidden=(20, 20), max_epochs: int = 1000,
                    batch_size: int = 512, lr: float = 1e-3, l2: float = 1e-4, tol: float = 1e-4,
                    patience: int = 10) -> _MultiLabelMLP:
    """scikit-learn's MLPClassifier recipe (Adam, L2 penalty, stop when the training loss stalls)."""
    model = _MultiLabelMLP(x.shape[1], y.shape[1], hidden, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    size = min(batch_size, len(x))
    best, stalled = float("inf"), 0
    for _ in range(max_epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for first in range(0, len(x), size):
            rows = order[first : first + size]
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[rows]), y[rows], reduction="sum") / len(rows)
            penalty = 0.5 * l2 * sum((w**2).sum() for w in model.weights) / len(rows)
            optimizer.zero_grad()
            (loss + penalty).backward()
            optimizer.step()
            total += float(loss.detach() + penalty.detach()) * len(rows)
        total /= len(x)
        if total > best - tol:
            stalled += 1
            if stalled > patience:
                break
        else:
            stalled = 0
        best = min(best, total)
    return model


def niche_correlations(representations: Tensor, c: Tensor) -> Tensor:
    """(k, k): the largest |Pearson correlation| between any dimension of representation i and concept j."""
    reps = representations - representations.mean(0)
    labels = c - c.mean(0)
    covariance = torch.einsum("nid,nj->ijd", reps, labels) / len(reps)
    scale = reps.std(0, unbiased=False).unsqueeze(1) * labels.std(0, unbiased=False).view(1, -1, 1)
    correlation = torch.where(scale > 0, covariance / scale.clamp(min=1e-12), torch.zeros_like(covariance))
    return correlation.abs().amax(-1)


def niche_impurity_score(
    representations: Tensor, c: Tensor, *, test_fraction: float = 0.2, step: float = 0.05, seed: int = 0
) -> float:
    """NIS: the area, over thresholds beta = 0, step, ..., < 1, of the mean held-out AUC of
    predicting each concept from the representations outside its niche.

    Args:
        representations: (N, k, d) each concept's own representation (``own_representations``).
        c: (N, k) concept labels.
        test_fraction: Share of the rows held out to score the helper model.
        step: Spacing of the thresholds beta.
        seed: Draws the held-out rows and initialises the helper.

    Returns:
        NIS in [0, 1].

    Examples:
        >>> from conceptlab.metrics import niche_impurity_score
        >>> c = (torch.rand(300, 3) > 0.5).float()
        >>> 0.0 <= niche_impurity_score((c + 0.1 * torch.randn(300, 3)).unsqueeze(-1), c) <= 1.0
        True
    """
    reps, labels = _check(representations, c)
    n, k, d = reps.shape
    generator = torch.Generator().manual_seed(seed)
    train, test = _split(n, test_fraction, generator)
    classifier = _fit_multilabel(reps[train].reshape(len(train), -1), labels[train], generator)
    correlations = niche_correlations(reps[train], labels[train])
    held_out = reps[test]  # (n_test, k, d)
    truth = labels[test].T.numpy()  # (k, n_test)
    impurities = []
    with torch.no_grad():
        for beta in np.arange(0.0, 1.0, step):
            outside = (correlations <= beta).T.float()  # (k targets, k representations): what concept j may read
            scores = torch.stack([
                classifier((held_out * outside[j].view(1, k, 1)).reshape(len(test), -1))[:, j] for j in range(k)
            ]).numpy()
            impurities.append(np.nanmean(batched_auc(scores, truth)))
    return float(torch.trapezoid(torch.tensor(impurities, dtype=torch.float64), dx=step))
