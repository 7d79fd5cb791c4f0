"""Concept activation vectors: linear SVMs separating concept examples from others (Kim et al., 2018).

``CAVBank`` follows scikit-learn's estimator style: hyperparameters in ``__init__``, learned
state with a trailing underscore after ``fit``. Each CAV is fitted for a *pair* of example sets
(positive, negative), so one bank holds concept-vs-random CAVs for several random sets, relative
CAVs (concept vs concept) and random-vs-random CAVs for significance tests.

Two solvers minimise the same objective, mean hinge loss + alpha/2 ||w||^2 (scikit-learn's
``SGDClassifier(loss="hinge")``):
- ``"sklearn"`` fits one ``SGDClassifier`` per pair (the reference implementations' choice);
- ``"torch"`` fits all pairs at once by full-batch Pegasos steps written in the span of each
  pair's training examples (w = X^T beta), so an iteration costs a Gram-matrix product over the
  examples instead of one over the (often 10^4-10^5) activation dimensions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..atomic import save_atomic


class CAVBank:
    """Unit-norm CAVs with intercepts, held-out accuracy and margin statistics, one per pair."""

    def __init__(
        self,
        solver: Literal["torch", "sklearn"] = "torch",
        alpha: float = 0.01,
        max_iter: int = 1000,
        tol: float = 1e-3,
        test_fraction: float = 0.33,
        seed: int = 0,
        cache_dir: str | None = None,
    ):
        if solver not in ("torch", "sklearn"):
            raise ValueError(f"solver must be 'torch' or 'sklearn'; got {solver!r}")
        if not 0 <= test_fraction < 1:
            raise ValueError(f"test_fraction must lie in [0, 1); got {test_fraction}")
        self.solver = solver
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.test_fraction = test_fraction
        self.seed = seed
        self.cache_dir = cache_dir

    _LEARNED = ("pairs_", "directions_", "intercepts_", "accuracy_", "margin_max_", "margin_min_",
                "positive_mean_", "negative_mean_")

    def _cache_path(self, sets: Mapping[str, Tensor], pairs: Sequence[tuple[str, str]]):
        """Cache file for these example sets, pairs and hyperparameters (any change: another file)."""
        import hashlib
        import json

        from .activations import tensor_fingerprint

        used = sorted({name for pair in pairs for name in pair})
        blob = json.dumps({
            "pairs": [list(p) for p in pairs],
            "data": {name: tensor_fingerprint(sets[name]) for name in used},
            "settings": [self.solver, self.alpha, self.max_iter, self.tol, self.test_fraction, self.seed],
        })
        return Path(self.cache_dir) / f"cavs-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.pt"

    def fit(self, sets: Mapping[str, Tensor], pairs: Sequence[tuple[str, str]]) -> CAVBank:
        """Fit one CAV per (positive set, negative set) pair of ``sets`` (name -> (n, D) activations)."""
        missing = sorted({name for pair in pairs for name in pair} - set(sets))
        if missing:
            raise ValueError(f"pairs name example sets {missing} that are not given; sets: {sorted(sets)}")
        dims = {name: tuple(x.shape[1:]) for name, x in sets.items()}
        if len(set(dims.values())) > 1:
            raise ValueError(f"all example sets need activations of one shape; got {dims}")
        cache = self._cache_path(sets, pairs) if self.cache_dir else None
        if cache is not None and cache.is_file():
            for key, value in torch.load(cache, weights_only=False).items():
                setattr(self, key, value)
            return self
        names = sorted({name for pair in pairs for name in pair})
        pool = torch.cat([sets[n].flatten(1).float() for n in names])
        offsets = np.cumsum([0] + [sets[n].shape[0] for n in names])
        rows = {n: np.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
        rng = np.random.default_rng(self.seed)
        train, test = [], []
        for positive, negative in pairs:
            tr_p, te_p = _split(rows[positive], self.test_fraction, rng)
            tr_n, te_n = _split(rows[negative], self.test_fraction, rng)
            train.append((tr_p, tr_n))
            test.append((te_p, te_n))
        if self.solver == "torch":
            # the SVM is translation invariant (free intercept): fit on centred activations, then
            # move the intercept back; Pegasos converges far better on centred data
            centre = pool.mean(0)
            weights, intercepts = self._fit_torch(pool - centre, train)
            intercepts = intercepts - weights @ centre
        else:
            weights, intercepts = self._fit_sklearn(pool, train)
        norms = weights.norm(dim=1).clamp_min(1e-12)
        self.pairs_ = [tuple(p) for p in pairs]
        self.directions_ = weights / norms[:, None]
        self.intercepts_ = intercepts / norms  # so that margins are (v . z + b) in activation units
        margins = self._margins(pool)  # (M, P)
        self.accuracy_ = torch.tensor([
            _accuracy(margins[np.concatenate([p, n]), k], len(p)) if len(p) + len(n) else float("nan")
            for k, (p, n) in enumerate(test)
        ])
        positive = [margins[p, k] for k, (p, _) in enumerate(train)]
        negative = [margins[n, k] for k, (_, n) in enumerate(train)]
        both = [torch.cat([a, b]) for a, b in zip(positive, negative)]
        self.margin_max_ = torch.stack([m.max() for m in both])
        self.margin_min_ = torch.stack([m.min() for m in both])
        self.positive_mean_ = torch.stack([m.mean() for m in positive])
        self.negative_mean_ = torch.stack([m.mean() for m in negative])
        if cache is not None:
            save_atomic({key: getattr(self, key) for key in self._LEARNED}, cache)
        return self

    def save(self, path: str | Path, **metadata) -> Path:
        """Write the hyperparameters, learned CAVs and ``metadata`` (e.g. the layer) atomically."""
        if not hasattr(self, "directions_"):
            raise ValueError("the bank is not fitted: call fit(...) before save(...)")
        payload = {
            "format": "conceptlab-cavs/1",
            "settings": {k: getattr(self, k) for k in ("solver", "alpha", "max_iter", "tol", "test_fraction", "seed")},
            "learned": {key: getattr(self, key) for key in self._LEARNED},
            "metadata": metadata,
        }
        return save_atomic(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> CAVBank:
        """A bank written by ``save``; its metadata is in ``metadata_``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no concept bank at {path}; write one with CAVBank.fit(...).save(path)")
        payload = torch.load(path, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != "conceptlab-cavs/1":
            raise ValueError(f"{path} is not a conceptlab concept bank (expected format 'conceptlab-cavs/1')")
        bank = cls(**payload["settings"])
        for key, value in payload["learned"].items():
            setattr(bank, key, value)
        bank.pairs_ = [tuple(p) for p in bank.pairs_]
        bank.metadata_ = dict(payload["metadata"])
        return bank

    def _margins(self, z: Tensor) -> Tensor:
        return z.flatten(1).float() @ self.directions_.T + self.intercepts_

    def decision_function(self, z: Tensor) -> Tensor:
        """Signed distances (N, P) of activations ``z`` to each CAV's hyperplane."""
        return self._margins(z)

    def index(self, positive: str, negative: str) -> int:
        return self.pairs_.index((positive, negative))

    def _fit_sklearn(self, pool: Tensor, train: list) -> tuple[Tensor, Tensor]:
        from sklearn.linear_model import SGDClassifier

        x = pool.numpy()
        weights, intercepts = [], []
        for p, n in train:
            clf = SGDClassifier(loss="hinge", alpha=self.alpha, max_iter=self.max_iter, tol=self.tol,
                                random_state=self.seed)
            clf.fit(x[np.concatenate([p, n])], np.r_[np.ones(len(p)), np.zeros(len(n))])
            weights.append(torch.as_tensor(clf.coef_[0], dtype=torch.float32))
            intercepts.append(float(clf.intercept_[0]))
        return torch.stack(weights), torch.tensor(intercepts)

    def _fit_torch(self, pool: Tensor, train: list) -> tuple[Tensor, Tensor]:
        """Full-batch Pegasos for every pair at once, in the span of its training examples."""
        n_max = max(len(p) + len(n) for p, n in train)
        index = torch.zeros(len(train), n_max, dtype=torch.long)
        labels = torch.zeros(len(train), n_max)  # +1 / -1, 0 for padding
        for k, (p, n) in enumerate(train):
            members = np.concatenate([p, n])
            index[k, : len(members)] = torch.as_tensor(members)
            labels[k, : len(p)], labels[k, len(p) : len(members)] = 1.0, -1.0
        gram = pool @ pool.T  # (M, M): the only pass over the activation dimensions
        kernel = gram[index[:, :, None], index[:, None, :]] * (labels != 0)[:, :, None] * (labels != 0)[:, None, :]
        counts = (labels != 0).sum(1, keepdim=True).float()
        beta = torch.zeros_like(labels)
        kernel_beta = torch.zeros_like(labels)  # K beta, kept up to date with one product per step
        bias = torch.zeros(len(train), 1)
        radius = 1.0 / np.sqrt(self.alpha)
        previous = None
        for t in range(1, self.max_iter + 1):
            margins = kernel_beta + bias
            violated = ((labels * margins) < 1) & (labels != 0)
            grad = -(labels * violated) / counts  # d mean-hinge / d margin
            step = 1.0 / (self.alpha * (t + 1))
            decay = 1 - step * self.alpha
            beta = decay * beta - step * grad
            kernel_beta = decay * kernel_beta - step * (kernel * grad[:, None, :]).sum(2)  # 4x faster than bmm here
            bias = bias - step * grad.sum(1, keepdim=True)  # the intercept is not regularised
            norm = (beta * kernel_beta).sum(1).clamp_min(0).sqrt()
            shrink = torch.clamp(radius / norm.clamp_min(1e-12), max=1.0)[:, None]
            beta, kernel_beta = beta * shrink, kernel_beta * shrink
            if t % 10 == 0:
                loss = (torch.clamp(1 - labels * margins, min=0) * (labels != 0)).sum(1) / counts[:, 0] + self.alpha / 2 * norm**2
                if previous is not None and torch.all((previous - loss).abs() <= self.tol * previous.abs().clamp_min(1e-12)):
                    break
                previous = loss
        coefficients = torch.zeros(len(train), pool.shape[0])  # beta scattered onto the pooled examples
        coefficients.scatter_add_(1, index, beta * (labels != 0))
        return coefficients @ pool, bias[:, 0]


def _split(rows: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random train / held-out split of one class's rows (stratified: each class split alike)."""
    order = rng.permutation(rows)
    n_test = int(round(fraction * len(order))) if len(order) > 1 else 0
    return order[n_test:], order[:n_test]


def _accuracy(margins: Tensor, n_positive: int) -> float:
    truth = torch.zeros_like(margins, dtype=torch.bool)
    truth[:n_positive] = True
    return float(((margins > 0) == truth).float().mean())
