"""Conceptual counterfactuals: known solutions, constraints, batching, baselines and errors."""

import math

import pytest
import torch
from torch import nn

from conceptlab.concepts import CAVBank
from conceptlab.concepts.cce import CCE, concept_box, random_scores, univariate_scores


def axis_bank(k: int = 6, margin: float = 2.0) -> CAVBank:
    """A bank whose concept i is embedding axis i, margins in [-margin, margin], means at +-1."""
    bank = CAVBank()
    bank.pairs_ = [(f"c{i}", "negatives") for i in range(k)]
    bank.directions_ = torch.eye(k)
    bank.intercepts_ = torch.zeros(k)
    bank.margin_max_ = torch.full((k,), margin)
    bank.margin_min_ = torch.full((k,), -margin)
    bank.positive_mean_ = torch.ones(k)
    bank.negative_mean_ = -torch.ones(k)
    bank.accuracy_ = torch.ones(k)
    return bank


def two_class_head(k: int, axis: int, gain: float, bias: float) -> nn.Linear:
    """Logit of class 1 = gain * z[axis] + bias; class 0 logit = 0."""
    head = nn.Linear(k, 2)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[1, axis] = gain
        head.bias[1] = bias
    return head


def random_problem(seed: int, k: int = 12, d: int = 10, n: int = 16, classes: int = 5):
    generator = torch.Generator().manual_seed(seed)
    bank = CAVBank()
    bank.pairs_ = [(f"c{i}", "negatives") for i in range(k)]
    directions = torch.randn(k, d, generator=generator)
    bank.directions_ = directions / directions.norm(dim=1, keepdim=True)
    bank.intercepts_ = 0.3 * torch.randn(k, generator=generator)
    bank.margin_max_ = 1 + torch.rand(k, generator=generator)
    bank.margin_min_ = -1 - torch.rand(k, generator=generator)
    bank.positive_mean_ = 0.5 * torch.rand(k, generator=generator)
    bank.negative_mean_ = -0.5 * torch.rand(k, generator=generator)
    bank.accuracy_ = torch.ones(k)
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, classes))
    z = torch.randn(n, d, generator=generator)
    targets = torch.randint(0, classes, (n,), generator=generator)
    return bank, head, z, targets


def test_solver_finds_the_known_optimum_of_a_linear_head():
    k, alpha, beta = 6, 0.1, 0.01
    head = two_class_head(k, axis=2, gain=4.0, bias=-1.0)  # class 1 needs concept c2 added
    result = CCE(axis_bank(k), head, alpha=alpha, beta=beta, steps=3000).explain(torch.zeros(3, k), 1)
    # stationarity for w = w2 > 0 (step 2 per unit weight): 8 (1 - sigmoid(8 w - 1)) = (alpha + beta) / k
    residual = (alpha + beta) / k / 8
    optimum = (math.log((1 - residual) / residual) + 1) / 8
    assert torch.allclose(result.weights[:, 2], torch.full((3,), optimum), atol=2e-3)
    assert torch.count_nonzero(result.weights[:, [0, 1, 3, 4, 5]]) == 0
    assert result.success.all() and (result.original_prediction == 0).all()
    assert result.explanation(0)["add"][0][0] == "c2" and result.explanation(0)["remove"] == []
    assert (result.ranks("c2") == 1).all()


def test_solver_removes_a_present_concept_when_that_fixes_the_prediction():
    k = 4
    head = two_class_head(k, axis=3, gain=-4.0, bias=2.0)  # class 1 wins only when c3 is weak
    z = torch.zeros(2, k)
    z[:, 3] = 1.5  # c3 clearly present, so it may be removed but not added
    result = CCE(axis_bank(k), head, steps=500).explain(z, 1)
    assert result.success.all()
    assert (result.weights[:, 3] < -0.3).all()
    assert result.explanation(1)["remove"][0][0] == "c3"


@pytest.mark.parametrize("kappa", ["mean", "zero", None])
@pytest.mark.parametrize("seed", range(4))
def test_box_and_validity_hold_after_every_step(kappa, seed):
    bank, head, z, targets = random_problem(seed)
    margins = bank.decision_function(z)
    present = bank.positive_mean_ if kappa == "mean" else torch.zeros(len(bank.pairs_))
    absent = bank.negative_mean_ if kappa == "mean" else torch.zeros(len(bank.pairs_))
    for steps in range(1, 25, 3):  # the solver is deterministic: its state after `steps` steps
        w = CCE(bank, head, lr=0.5, steps=steps, kappa=kappa).explain(z, targets).weights
        new = margins + w * bank.margin_max_
        assert (new <= torch.maximum(bank.margin_max_, margins) + 1e-5).all()
        assert (new >= torch.minimum(bank.margin_min_, margins) - 1e-5).all()
        if kappa is not None:
            assert (w[margins > present] <= 0).all(), "a clearly present concept was added"
            assert (w[margins < absent] >= 0).all(), "a clearly absent concept was removed"
    assert torch.count_nonzero(w) > 0  # the constraints did not simply pin everything to zero


def test_box_keeps_zero_feasible_and_disables_non_positive_margins():
    bank, _, z, _ = random_problem(0)
    bank.margin_max_[0] = -0.1  # a degenerate CAV: its max training margin is not positive
    box = concept_box(bank, 5 * z)  # far outside the training margins
    assert (box.lower <= 0).all() and (box.upper >= 0).all()
    assert (box.lower[:, 0] == 0).all() and (box.upper[:, 0] == 0).all()
    assert torch.isfinite(box.steps).all()


def test_success_is_judged_on_the_counterfactual():
    bank, head, z, _ = random_problem(1)
    predicted = head(z).argmax(1)
    targets = (predicted + 1) % 5  # every sample starts wrong
    result = CCE(bank, head, lr=0.5, steps=200).explain(z, targets)
    moved = z + result.weights @ concept_box(bank, z).steps
    assert torch.equal(result.success, head(moved).argmax(1) == targets)
    assert torch.equal(result.original_prediction, predicted)
    assert result.success.any() and not (result.original_prediction == targets).any()
    assert torch.allclose(result.target_probability, head(moved).softmax(1)[torch.arange(len(z)), targets], atol=1e-6)


@pytest.mark.parametrize("early_stop", [False, True])
def test_a_batch_gives_the_per_sample_results(early_stop):
    bank, head, z, targets = random_problem(2)
    solver = CCE(bank, head, lr=0.2, steps=60, early_stop=early_stop)
    batch = solver.explain(z, targets)
    for i in range(len(z)):
        alone = solver.explain(z[i : i + 1], targets[i : i + 1])
        assert torch.allclose(batch.weights[i], alone.weights[0], atol=1e-5)
        assert batch.success[i] == alone.success[0] and batch.steps[i] == alone.steps[0]
    chunked = CCE(bank, head, lr=0.2, steps=60, early_stop=early_stop, batch_size=5).explain(z, targets)
    assert torch.allclose(chunked.weights, batch.weights, atol=1e-5)


def test_early_stop_freezes_weights_once_the_target_is_reached():
    head = two_class_head(6, axis=2, gain=4.0, bias=-1.0)
    result = CCE(axis_bank(6), head, steps=300, early_stop=True).explain(torch.zeros(2, 6), 1)
    assert result.success.all()
    assert (result.steps < 300).all()
    full = CCE(axis_bank(6), head, steps=300).explain(torch.zeros(2, 6), 1)
    assert (result.weights[:, 2] < full.weights[:, 2]).all()  # it stopped at the first sufficient weight


def test_univariate_ranks_the_helpful_concept_first_and_random_is_a_permutation():
    head = two_class_head(6, axis=4, gain=3.0, bias=-2.0)
    z = torch.zeros(5, 6)
    uni = univariate_scores(axis_bank(6), head, z, 1)
    assert (uni.ranks("c4") == 1).all() and (uni.weights[:, 4] > 0.5).all()
    rnd = random_scores(axis_bank(6), head, z, 1, seed=3)
    ranks = torch.stack([rnd.ranks(f"c{i}") for i in range(6)], 1)
    assert all(sorted(row) == list(range(1, 7)) for row in ranks.tolist())


def test_random_ranking_is_at_chance_level():
    bank, head, z, targets = random_problem(3, k=20, n=400)
    hits = (random_scores(bank, head, z, targets, seed=0).ranks("c7") <= 3).float().mean()
    assert abs(float(hits) - 3 / 20) < 0.06


def test_bad_inputs_raise_clear_errors():
    bank, head, z, targets = random_problem(0)
    with pytest.raises(ValueError, match="dimensions"):
        CCE(bank, head).explain(torch.zeros(3, 7), 0)
    with pytest.raises(ValueError, match="not a class of the head"):
        CCE(bank, head).explain(z, 9)
    with pytest.raises(ValueError, match="NaN"):
        CCE(bank, head).explain(torch.full_like(z, float("nan")), 0)
    with pytest.raises(ValueError, match="one per sample"):
        CCE(bank, head).explain(z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="not fitted"):
        CCE(CAVBank(), head).explain(z, 0)
    with pytest.raises(ValueError, match="kappa"):
        CCE(bank, head, kappa="median")
    bank.pairs_[1] = ("c0", "other negatives")
    with pytest.raises(ValueError, match="one CAV per concept"):
        CCE(bank, head).explain(z, 0)


def test_cce_finds_a_concept_the_head_uses_through_a_fitted_bank():
    """End to end on learned CAVs: the head reads one planted direction; CCE adds that concept."""
    generator = torch.Generator().manual_seed(0)
    d, names = 16, [f"k{i}" for i in range(8)]
    axes = torch.linalg.qr(torch.randn(d, d, generator=generator))[0][:, : len(names)].T
    sets = {}
    for i, name in enumerate(names):
        sets[name] = torch.randn(60, d, generator=generator) + 3 * axes[i]
        sets[f"{name}:neg"] = torch.randn(60, d, generator=generator)
    bank = CAVBank(seed=0).fit(sets, [(n, f"{n}:neg") for n in names])
    head = nn.Linear(d, 2)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[1] = 2.0 * axes[5]
        head.bias.copy_(torch.tensor([0.0, -3.0]))
    z = torch.randn(32, d, generator=generator)
    z = z - (z @ axes[5])[:, None] * axes[5]  # concept k5 absent: class 0 predicted
    result = CCE(bank, head).explain(z, 1)
    assert (result.original_prediction == 0).all()
    assert result.success.float().mean() > 0.9
    assert (result.ranks("k5") == 1).float().mean() > 0.9


def test_a_bank_survives_save_and_load(tmp_path):
    bank, head, z, targets = random_problem(0)
    bank.seed = 0
    path = bank.save(tmp_path / "bank.pt", head="fc", classes=["a", "b"])
    loaded = CAVBank.load(path)
    assert loaded.metadata_ == {"head": "fc", "classes": ["a", "b"]}
    assert loaded.pairs_ == bank.pairs_
    assert torch.equal(CCE(loaded, head, steps=5).explain(z, targets).weights, CCE(bank, head, steps=5).explain(z, targets).weights)
    with pytest.raises(FileNotFoundError, match="no concept bank"):
        CAVBank.load(tmp_path / "missing.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a conceptlab concept bank"):
        CAVBank.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not fitted"):
        CAVBank().save(tmp_path / "empty.pt")


def test_a_head_in_training_mode_is_solved_and_judged_in_eval_mode():
    bank, _, z, targets = random_problem(4, d=10)
    torch.manual_seed(4)
    head = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 5))
    head(torch.randn(64, 10))  # give BatchNorm running statistics
    expected = CCE(bank, head.eval(), lr=0.5, steps=30).explain(z, targets)
    head.train()
    for explain in (lambda: CCE(bank, head, lr=0.5, steps=30).explain(z, targets),
                    lambda: univariate_scores(bank, head, z, targets), lambda: random_scores(bank, head, z, targets)):
        result = explain()  # a one-row BatchNorm batch in training mode would raise
        assert head.training
        assert torch.equal(result.original_prediction, expected.original_prediction)
    solved = CCE(bank, head, lr=0.5, steps=30).explain(z, targets)
    assert torch.allclose(solved.weights, expected.weights) and torch.equal(solved.success, expected.success)
