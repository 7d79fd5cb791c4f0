"""Concept activation vectors: linear SVMs separating concept examples from others (Kim et al., 2018).

``CAVBank`` follows scikit-learn's estimator style: hyperparameters in ``__init__``, learned
state with a trailing underscore after ``fit``. Each CAV is fitted for a *pair* of example sets
(positive, negative), so one bank holds concept-vs-random CAVs for several random sets, relative
CAVs (concept vs concept) and random-vs-random CAVs for significance tests.

A pair's CAV depends on that pair's examples only: its two example sets are split into training
and held-out rows by a draw seeded with ``seed`` and the pair's names (so the split does not move
when other pairs or sets change, and differs between pairs, as in the reference code), and each
pair's estimator sees its own training rows and nothing else. Four estimators (``solver``):

- ``"svm"`` (default) minimises ``mean hinge loss + alpha / 2 ||w||^2`` (free intercept) for every
  pair at once on the activations' device, by a batched interior-point method
  (:mod:`conceptlab.concepts.svm`); each pair stops when its relative duality gap is at most
  ``tol``: its objective is certified within ``tol`` (relative) of the optimum;
- ``"sgd"`` fits one ``SGDClassifier(loss="hinge")`` per pair on the same objective (the TCAV
  reference code's and captum's choice; stochastic, so only approximately minimal);
- ``"logistic"``: L2-regularised logistic regression (``mean log loss + alpha / 2 ||w||^2``), every
  pair at once by Newton's method (:mod:`conceptlab.concepts.logistic`), stopped when the predicted
  decrease is at most ``tol`` (relative) of the objective;
- ``"mean-difference"``: the difference of the two sets' mean activations, through their midpoint
  (no solver, no regularisation).
Which estimator TCAV uses by default, and how the four compare against causal ground truth, is
measured by ``benchmarks/tcav_causal.py`` (docs/guide/posthoc.md).
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from ..atomic import save_atomic
from ..cache import load_cached, store_cached
from ..checksum import verify_checksum, with_checksum
from .activations import tensor_fingerprint
from .logistic import fit_logistic_cavs
from .svm import fit_linear_svms

BANK_FORMAT = "conceptlab-cavs/2"
Solver = Literal["svm", "sgd", "logistic", "mean-difference"]
SOLVERS: tuple[str, ...] = get_args(Solver)


class CAVBank:
    """Unit-norm CAVs with intercepts, held-out accuracy and margin statistics, one per pair.

    Learned attributes (one entry per pair): ``directions_`` (P, D), ``intercepts_`` (so that
    ``decision_function`` gives signed distances), ``norms_`` (||w||: the SVM's weights are
    ``directions_ * norms_``, its intercept ``intercepts_ * norms_``), ``accuracy_`` on held-out rows, ``objective_``
    (the SVM objective reached, whatever the estimator), ``duality_gap_`` (``"svm"``: relative gap
    certified at the solution; NaN for the others), ``n_iter_``, and training-margin statistics: ``margin_max_``,
    ``margin_min_``, ``positive_mean_`` / ``negative_mean_`` (mean margin of the positive /
    negative examples) and ``above_mean_`` / ``below_mean_`` (mean of the margins above / below
    zero, whichever example they belong to, as the CCE reference code groups them).

    Args:
        solver: ``svm``, ``sgd``, ``logistic`` or ``mean-difference``.
        alpha: Regularisation strength.
        max_iter: Iteration limit (None: each solver's own).
        tol: Tolerance (the SVM's certified duality gap).
        test_fraction: Share of each set held out to score the CAV.
        seed: Draws the held-out rows.
        cache_dir: Keep fitted CAVs on disk, keyed by the data and hyperparameters.

    Examples:
        >>> from conceptlab.concepts import CAVBank
        >>> positives, negatives = torch.randn(60, 5) + 2.0, torch.randn(60, 5)
        >>> bank = CAVBank(alpha=0.01).fit({"bright": positives, "random": negatives}, [("bright", "random")])
        >>> bank.directions_.shape, bool(bank.accuracy_[0] > 0.9)
        (torch.Size([1, 5]), True)
    """

    def __init__(
        self,
        solver: Solver = "svm",
        *,
        alpha: float = 0.01,
        max_iter: int | None = None,
        tol: float = 1e-3,
        test_fraction: float = 0.33,
        seed: int = 0,
        cache_dir: str | Path | None = None,
    ):
        self.solver = solver
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.test_fraction = test_fraction
        self.seed = seed
        self.cache_dir = cache_dir
        #: What the file this bank was loaded from recorded beside it (``save(path, **metadata)``);
        #: empty for a bank fitted in this process.
        self.saved_metadata: dict = {}

    def get_params(self) -> dict:
        """The hyperparameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in (*self._SETTINGS, "cache_dir")}

    def _check_settings(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}; got {self.solver!r}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in [0, 1); got {self.test_fraction}")
        if not self.alpha > 0 or not self.tol > 0:
            raise ValueError(f"alpha and tol must be positive; got alpha={self.alpha}, tol={self.tol}")
        if self.max_iter is not None and self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive number of iterations (or None); got {self.max_iter}")

    _LEARNED = ("pairs_", "directions_", "intercepts_", "norms_", "accuracy_", "objective_", "duality_gap_", "n_iter_",
                "margin_max_", "margin_min_", "positive_mean_", "negative_mean_", "above_mean_", "below_mean_")
    _SETTINGS = ("solver", "alpha", "max_iter", "tol", "test_fraction", "seed")

    def _cache_path(self, sets: Mapping[str, Tensor], pairs: Sequence[tuple[str, str]]) -> Path:
        """Cache file for these example sets, pairs and hyperparameters (any change: another file)."""
        used = sorted({name for pair in pairs for name in pair})
        blob = json.dumps({
            "format": BANK_FORMAT,
            "pairs": [list(p) for p in pairs],
            "data": {name: tensor_fingerprint(sets[name]) for name in used},
            "settings": [getattr(self, k) for k in self._SETTINGS],
        })
        return Path(self.cache_dir) / f"cavs-{hashlib.sha256(blob.encode()).hexdigest()[:24]}.pt"

    def fit(self, sets: Mapping[str, Tensor], pairs: Sequence[tuple[str, str]]) -> CAVBank:
        """Fit one CAV per (positive set, negative set) pair of ``sets`` (name -> (n, ...) activations).

        Raises:
            ValueError: Invalid hyperparameters (checked here, as scikit-learn does), or sets that
                are missing, empty or of different widths.
        """
        self._check_settings()
        pairs = [(str(p), str(n)) for p, n in pairs]
        _check_sets(sets, pairs)
        cache = self._cache_path(sets, pairs) if self.cache_dir is not None else None
        cached = load_cached(cache) if cache is not None else None
        if isinstance(cached, dict) and set(cached) == set(self._LEARNED):
            for key, value in cached.items():
                setattr(self, key, value)
            self.pairs_ = [tuple(p) for p in self.pairs_]
            return self
        names = sorted({name for pair in pairs for name in pair})
        pool = torch.cat([sets[n].detach().flatten(1).float() for n in names])
        offsets = np.cumsum([0] + [sets[n].shape[0] for n in names])
        rows = {n: np.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
        splits = [self._split(pair, rows[pair[0]], rows[pair[1]]) for pair in pairs]
        train = [(p[0], n[0]) for p, n in splits]
        test = [(p[1], n[1]) for p, n in splits]
        if self.solver in ("svm", "logistic"):
            members = [(torch.as_tensor(p), torch.as_tensor(n)) for p, n in train]
            fit = fit_linear_svms if self.solver == "svm" else fit_logistic_cavs
            limit = {"max_iter": self.max_iter} if self.max_iter else {}  # else each solver's own default
            solution = fit(pool, members, self.alpha, self.tol, **limit)
            weights, intercepts = solution.weights.cpu(), solution.intercepts.cpu()
            self.n_iter_ = solution.iterations.cpu()
            unfinished = solution.gap.cpu() > self.tol
            if unfinished.any():
                worst = int(solution.gap.argmax())
                warnings.warn(f"{int(unfinished.sum())} CAV(s) stopped at max_iter before reaching tol={self.tol} "
                              f"(worst: {pairs[worst]} at {float(solution.gap[worst]):.2g}); raise max_iter",
                              RuntimeWarning, stacklevel=2)
            # a certificate for the SVM only: the logistic solver's stopping value is an estimate
            self.duality_gap_ = solution.gap.float().cpu() if self.solver == "svm" else torch.full((len(pairs),), float("nan"))
        else:
            weights, intercepts = self._fit_each(pool.cpu(), train)
            self.duality_gap_ = torch.full((len(pairs),), float("nan"))
            self.n_iter_ = torch.full((len(pairs),), -1)
        pool = pool.cpu()
        norms = weights.norm(dim=1).clamp_min(1e-12)
        self.pairs_ = pairs
        self.norms_ = norms
        self.directions_ = weights / norms[:, None]
        self.intercepts_ = intercepts / norms  # so that margins are (v . z + b) in activation units
        margins = self._margins(pool)  # (M, P): every pooled row against every CAV
        self.objective_ = torch.stack([
            torch.cat([1 - margins[p, k] * norms[k], 1 + margins[n, k] * norms[k]]).clamp_min(0).mean()
            + self.alpha / 2 * norms[k] ** 2
            for k, (p, n) in enumerate(train)
        ])
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
        self.above_mean_ = torch.stack([_mean_where(m, m > 0) for m in both])
        self.below_mean_ = torch.stack([_mean_where(m, m < 0) for m in both])
        if cache is not None:
            store_cached({key: getattr(self, key) for key in self._LEARNED}, cache)
        return self

    def _split(self, pair: tuple[str, str], positive: np.ndarray, negative: np.ndarray) -> tuple[tuple, tuple]:
        """(train, held-out) rows of a pair's positive and negative set, drawn from the seed and the
        pair's names only; each set is split alike (stratified) and keeps at least one training row."""
        rng = np.random.default_rng([self.seed, zlib.crc32(pair[0].encode()), zlib.crc32(pair[1].encode())])
        parts = []
        for rows in (positive, negative):
            order = rng.permutation(rows)
            n_test = min(int(round(self.test_fraction * len(order))), len(order) - 1)
            parts.append((np.sort(order[n_test:]), np.sort(order[:n_test])))
        return parts[0], parts[1]

    def save(self, path: str | Path, **metadata) -> Path:
        """Write the hyperparameters, learned CAVs and ``metadata`` (e.g. the layer) atomically."""
        if not hasattr(self, "directions_"):
            raise ValueError("the bank is not fitted: call fit(...) before save(...)")
        payload = {
            "format": BANK_FORMAT,
            "settings": {k: getattr(self, k) for k in self._SETTINGS},
            "learned": {key: getattr(self, key) for key in self._LEARNED},
            "metadata": metadata,
        }
        return save_atomic(with_checksum(payload), path)

    @classmethod
    def load(cls, path: str | Path) -> CAVBank:
        """A bank written by ``save``; what it recorded beside the CAVs is in ``saved_metadata``. Loads
        tensors only, never code."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no concept bank at {path}; write one with CAVBank.fit(...).save(path)")
        try:
            payload = torch.load(path, weights_only=True)
        except Exception as err:
            raise ValueError(f"{path} is not a readable conceptlab concept bank ({type(err).__name__}: {err})") from err
        if not isinstance(payload, dict) or payload.get("format") != BANK_FORMAT:
            raise ValueError(f"{path} is not a conceptlab concept bank (expected format {BANK_FORMAT!r})")
        verify_checksum(payload, path, "concept bank")
        try:
            bank = cls(**payload["settings"])
            bank._check_settings()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path} holds settings this conceptlab does not know ({err}); fit and save the bank again") from None
        for key, value in payload["learned"].items():
            setattr(bank, key, value)
        bank.pairs_ = [tuple(p) for p in bank.pairs_]
        bank.saved_metadata = dict(payload["metadata"])
        return bank

    def _margins(self, z: Tensor) -> Tensor:
        return z.flatten(1).float() @ self.directions_.T + self.intercepts_

    def decision_function(self, z: Tensor) -> Tensor:
        """Signed distances (N, P) of activations ``z`` to each CAV's hyperplane."""
        return self._margins(z)

    def index(self, positive: str, negative: str) -> int:
        return self.pairs_.index((positive, negative))

    def _fit_each(self, pool: Tensor, train: list) -> tuple[Tensor, Tensor]:
        """Weights and intercepts of the ``sgd`` or ``mean-difference`` estimator, pair by pair."""
        from sklearn.linear_model import SGDClassifier

        x = pool.numpy()
        weights, intercepts = [], []
        for p, n in train:
            if self.solver == "mean-difference":
                positive, negative = x[p].mean(0), x[n].mean(0)
                w = positive - negative
                weights.append(torch.as_tensor(w, dtype=torch.float32))
                intercepts.append(float(-w @ (positive + negative) / 2))
                continue
            clf = SGDClassifier(loss="hinge", alpha=self.alpha, max_iter=self.max_iter or 1000, tol=self.tol,
                                random_state=self.seed)
            clf.fit(x[np.concatenate([p, n])], np.r_[np.ones(len(p)), np.zeros(len(n))])
            weights.append(torch.as_tensor(clf.coef_[0], dtype=torch.float32))
            intercepts.append(float(clf.intercept_[0]))
        return torch.stack(weights), torch.tensor(intercepts)


def _check_sets(sets: Mapping[str, Tensor], pairs: Sequence[tuple[str, str]]) -> None:
    if not pairs:
        raise ValueError("pairs is empty: give at least one (positive set, negative set) pair")
    missing = sorted({name for pair in pairs for name in pair} - set(sets))
    if missing:
        raise ValueError(f"pairs name example sets {missing} that are not given; sets: {sorted(sets)}")
    same = [p for p in pairs if p[0] == p[1]]
    if same:
        raise ValueError(f"a pair needs two different example sets; got {same[0]}")
    used = sorted({name for pair in pairs for name in pair})
    dims = {name: tuple(sets[name].shape[1:]) for name in used}
    if len(set(dims.values())) > 1:
        raise ValueError(f"all example sets need activations of one shape; got {dims}")
    for name in used:
        x = sets[name]
        if not isinstance(x, Tensor) or x.ndim < 2:
            raise ValueError(f"example set {name!r} must be a tensor (n_examples, ...) of activations")
        if x.shape[0] < 2:
            raise ValueError(f"example set {name!r} has {x.shape[0]} example(s); each set needs at least 2")
        if not torch.isfinite(x).all():
            raise ValueError(f"example set {name!r} contains NaN or infinite activations")


def _mean_where(values: Tensor, keep: Tensor) -> Tensor:
    return values[keep].mean() if keep.any() else values.new_zeros(())


def _accuracy(margins: Tensor, n_positive: int) -> float:
    truth = torch.zeros_like(margins, dtype=torch.bool)
    truth[:n_positive] = True
    return float(((margins > 0) == truth).float().mean())
