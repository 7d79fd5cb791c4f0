"""The torch CAV solver is exact and pair-independent: each pair's SVM sees its own data only and
is solved to a certified duality gap, so nothing outside the pair can move its CAV."""

import numpy as np
import pytest
import torch

from conceptlab.concepts.cav import CAVBank

D = 48


def _bank_problem(seed: int = 0, offset: float = 0.0):
    """Two concepts (one clear, one weak), a shifted set and four random sets of activations."""
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0)
    sets = {
        "clear": torch.randn(40, D, generator=g) + 3 * u + offset,
        "weak": torch.randn(40, D, generator=g) + 0.4 * u + offset,  # overlaps its randoms: hinge loss matters
        "shifted": torch.relu(torch.randn(40, D, generator=g)) + 5.0,
    }
    sets |= {f"random{r}": torch.randn(30 + 5 * r, D, generator=g) + offset for r in range(4)}
    pairs = [(c, f"random{r}") for c in ("clear", "weak") for r in range(4)]
    pairs += [("shifted", "random0"), ("random1", "random2"), ("clear", "weak")]
    return sets, pairs


def _exact_objective(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
    """Optimum of mean hinge + alpha/2 ||w||^2 by libsvm run to convergence (float64, centred data)."""
    from sklearn.svm import SVC

    centred = x - x.mean(0)
    svc = SVC(kernel="linear", C=1 / (len(y) * alpha), tol=1e-9).fit(centred, y)
    w, b = svc.coef_[0], svc.intercept_[0]
    return float(np.maximum(0, 1 - y * (centred @ w + b)).mean() + alpha / 2 * w @ w), w


def _objective(bank: CAVBank, k: int, x: np.ndarray, y: np.ndarray) -> float:
    w = (bank.directions_[k] * bank.norms_[k]).double().numpy()
    b = float(bank.intercepts_[k] * bank.norms_[k])
    return float(np.maximum(0, 1 - y * (x @ w + b)).mean() + bank.alpha / 2 * w @ w)


@pytest.mark.parametrize("offset", [0.0, 20.0])
def test_every_pair_reaches_the_exact_svm_optimum(offset):
    sets, pairs = _bank_problem(offset=offset)
    bank = CAVBank(test_fraction=0.0).fit(sets, pairs)  # every row trains, so the pair's data is known here
    assert (bank.duality_gap_ <= bank.tol).all()
    for k, (positive, negative) in enumerate(pairs):
        x = torch.cat([sets[positive], sets[negative]]).double().numpy()
        y = np.r_[np.ones(len(sets[positive])), -np.ones(len(sets[negative]))]
        optimum, w = _exact_objective(x, y, bank.alpha)
        ours = _objective(bank, k, x, y)
        assert ours <= optimum * 1.005, f"{(positive, negative)}: objective {ours:.6g} vs exact {optimum:.6g}"
        assert abs(float(bank.objective_[k]) - ours) <= 1e-3 * ours  # the reported objective is the one reached
        cosine = float(bank.directions_[k].double() @ torch.as_tensor(w / np.linalg.norm(w)))
        assert cosine >= 0.99, f"{(positive, negative)}: direction cosine {cosine:.4f} with the exact solver"


def test_the_sklearn_solver_stays_available_and_lands_near_the_optimum():
    sets, pairs = _bank_problem()
    exact = CAVBank(test_fraction=0.0).fit(sets, pairs[:4])
    sgd = CAVBank("sgd", test_fraction=0.0).fit(sets, pairs[:4])
    assert ((exact.directions_ * sgd.directions_).sum(1) > 0.8).all()
    assert (sgd.objective_ >= exact.objective_ * (1 - 1e-3)).all()  # SGD cannot beat the certified optimum
    assert torch.isnan(sgd.duality_gap_).all()


@pytest.mark.parametrize("change", ["shift", "resize", "replace"])
def test_a_pairs_cav_does_not_move_when_another_set_changes(change):
    sets, pairs = _bank_problem(1)
    before = CAVBank().fit(sets, pairs)
    g = torch.Generator().manual_seed(7)
    for other in sets:
        edited = {
            "shift": sets[other] + 5.0,
            "resize": torch.cat([sets[other], sets[other][:9] * 2]),
            "replace": 10 * torch.rand(17, D, generator=g),
        }[change]
        after = CAVBank().fit(dict(sets, **{other: edited}), pairs)
        for k, pair in enumerate(pairs):
            if other in pair:
                continue
            cosine = float(before.directions_[k] @ after.directions_[k])
            assert cosine >= 0.9999, f"{pair} moved (cosine {cosine:.6f}) when {other!r} changed ({change})"
            assert abs(float(before.intercepts_[k] - after.intercepts_[k])) <= 1e-4 * (1 + abs(float(before.intercepts_[k])))
            assert before.accuracy_[k] == after.accuracy_[k]


def test_a_pair_fitted_alone_equals_the_pair_in_a_bank():
    sets, pairs = _bank_problem(2)
    bank = CAVBank().fit(sets, pairs)
    for k in (0, 5, len(pairs) - 1):
        alone = CAVBank().fit(sets, [pairs[k]])
        assert float(alone.directions_[0] @ bank.directions_[k]) >= 0.9999
        assert torch.equal(alone.accuracy_[0], bank.accuracy_[k])


def test_a_pairs_split_depends_on_the_pair_only():
    """Held-out rows come from a draw seeded by the pair's names, so they do not move with other
    pairs, and each pair draws its own (as the reference code does)."""
    bank = CAVBank()
    rows_a, rows_b, rows_c = np.arange(0, 40), np.arange(40, 70), np.arange(70, 100)
    first = bank._split(("a", "b"), rows_a, rows_b)
    again = CAVBank()._split(("a", "b"), rows_a, rows_b)
    assert all(np.array_equal(x, y) for part, same in zip(first, again) for x, y in zip(part, same))
    train, held_out = first[0]
    assert len(held_out) == round(0.33 * 40) and not set(train) & set(held_out) and set(train) | set(held_out) == set(rows_a)
    assert not np.array_equal(bank._split(("a", "c"), rows_a, rows_c)[0][1], held_out)  # another pair, another draw


def test_bad_example_sets_raise_clear_errors():
    sets, _ = _bank_problem()
    with pytest.raises(ValueError, match="NaN or infinite"):
        CAVBank().fit(dict(sets, clear=sets["clear"].clone().fill_(float("inf"))), [("clear", "random0")])
    with pytest.raises(ValueError, match="at least 2"):
        CAVBank().fit(dict(sets, clear=sets["clear"][:1]), [("clear", "random0")])
    with pytest.raises(ValueError, match="two different example sets"):
        CAVBank().fit(sets, [("clear", "clear")])
    with pytest.raises(ValueError, match="pairs is empty"):
        CAVBank().fit(sets, [])
    with pytest.raises(ValueError, match="alpha and tol must be positive"):
        CAVBank(alpha=0).fit(sets, [("clear", "random0")])  # checked by fit, as scikit-learn does
    with pytest.raises(ValueError, match="max_iter must be a positive"):
        CAVBank(max_iter=0).fit(sets, [("clear", "random0")])


def test_an_iteration_cap_that_stops_short_is_reported():
    sets, pairs = _bank_problem()
    with pytest.warns(RuntimeWarning, match="raise max_iter"):
        bank = CAVBank(max_iter=5).fit(sets, pairs)
    assert (bank.duality_gap_ > bank.tol).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_solver_runs_on_the_gpu_and_agrees_with_the_cpu():
    sets, pairs = _bank_problem()
    cpu = CAVBank().fit(sets, pairs)
    gpu = CAVBank().fit({k: v.cuda() for k, v in sets.items()}, pairs)
    assert ((cpu.directions_ * gpu.directions_).sum(1) >= 0.9999).all()
