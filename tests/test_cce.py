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
    bank.positive_mean_ = bank.above_mean_ = torch.ones(k)
    bank.negative_mean_ = bank.below_mean_ = -torch.ones(k)
    return _fitted(bank)


def _fitted(bank: CAVBank) -> CAVBank:
    """The learned attributes a hand-built bank does not need for solving, as fit would set them."""
    k = len(bank.pairs_)
    bank.accuracy_, bank.norms_ = torch.ones(k), torch.ones(k)
    bank.objective_, bank.duality_gap_, bank.n_iter_ = torch.zeros(k), torch.zeros(k), torch.zeros(k, dtype=torch.long)
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
    bank.above_mean_ = 0.6 + 0.3 * torch.rand(k, generator=generator)  # sign-grouped means differ from label means
    bank.below_mean_ = -0.6 - 0.3 * torch.rand(k, generator=generator)
    _fitted(bank)
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, classes))
    z = torch.randn(n, d, generator=generator)
    targets = torch.randint(0, classes, (n,), generator=generator)
    return bank, head, z, targets


def _bisect(f, low: float, high: float) -> float:
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if f(middle) > 0 else (low, middle)
    return (low + high) / 2


@pytest.mark.parametrize("l1_step", ["proximal", "subgradient"])
@pytest.mark.parametrize("objective", ["logits", "reference"])
def test_solver_finds_the_known_optimum_of_a_linear_head(objective, l1_step):
    k, alpha, beta = 6, 0.1, 0.01
    head = two_class_head(k, axis=2, gain=4.0, bias=-1.0)  # class 1 needs concept c2 added
    result = CCE(axis_bank(k), head, alpha=alpha, beta=beta, steps=3000, objective=objective,
                 l1_step=l1_step).explain(torch.zeros(3, k), 1)
    # with w = w2 > 0 (step 2 per unit weight) the class-1 logit is 8 w - 1 and s = sigmoid(8 w - 1);
    # stationarity: -d CE / dw = alpha + beta (the penalties are per unit weight), where CE is
    #   logits:    -log s,                         so  -dCE/dw = 8 (1 - s)
    #   reference: log(1 + exp(1 - 2 s)) (CE of the probabilities), so -dCE/dw = 16 s (1 - s) sigmoid(1 - 2 s)
    penalty = alpha + beta
    if objective == "logits":
        pull = lambda s: 8 * (1 - s)  # noqa: E731
    else:
        pull = lambda s: 16 * s * (1 - s) / (1 + math.exp(2 * s - 1))  # noqa: E731
    s = _bisect(lambda s: pull(s) - penalty, 0.5, 1.0)  # pull falls as s rises towards 1
    optimum = (math.log(s / (1 - s)) + 1) / 8
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


@pytest.mark.parametrize("kappa,margin_means", [("mean", "sign"), ("mean", "label"), ("zero", "sign"), (None, "sign")])
@pytest.mark.parametrize("seed", range(4))
def test_box_and_validity_hold_after_every_step(kappa, margin_means, seed):
    bank, head, z, targets = random_problem(seed)
    margins = bank.decision_function(z)
    means = {"sign": (bank.above_mean_, bank.below_mean_), "label": (bank.positive_mean_, bank.negative_mean_)}
    present, absent = means[margin_means] if kappa == "mean" else (torch.zeros(len(bank.pairs_)),) * 2
    for steps in range(1, 25, 3):  # the solver is deterministic: its state after `steps` steps
        w = CCE(bank, head, lr=0.5, steps=steps, kappa=kappa, margin_means=margin_means,
                alpha=0.1).explain(z, targets).weights
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
    result = CCE(bank, head, lr=0.5, steps=200, alpha=0.1).explain(z, targets)
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
    uni = univariate_scores(axis_bank(6), head, z, targets=1)
    assert (uni.ranks("c4") == 1).all() and (uni.weights[:, 4] > 0.5).all()
    rnd = random_scores(axis_bank(6), head, z, targets=1, seed=3)
    ranks = torch.stack([rnd.ranks(f"c{i}") for i in range(6)], 1)
    assert all(sorted(row) == list(range(1, 7)) for row in ranks.tolist())


def test_random_ranking_is_at_chance_level():
    bank, head, z, targets = random_problem(3, k=20, n=400)
    hits = (random_scores(bank, head, z, targets=targets, seed=0).ranks("c7") <= 3).float().mean()
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
    for bad in ({"alpha": float("nan")}, {"alpha": -1.0}, {"beta": float("inf")}, {"lr": -1.0}, {"lr": float("nan")},
                {"momentum": 1.0}, {"support_threshold": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CCE(bank, head, **bad)


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
    assert loaded.saved_metadata == {"head": "fc", "classes": ["a", "b"]}
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
                    lambda: univariate_scores(bank, head, z, targets=targets), lambda: random_scores(bank, head, z, targets=targets)):
        result = explain()  # a one-row BatchNorm batch in training mode would raise
        assert head.training
        assert torch.equal(result.original_prediction, expected.original_prediction)
    solved = CCE(bank, head, lr=0.5, steps=30).explain(z, targets)
    assert torch.allclose(solved.weights, expected.weights) and torch.equal(solved.success, expected.success)


def _paper_loop(bank, head, z, target, alpha=0.1, beta=0.01, lr=0.01, momentum=0.9, steps=100):
    """Abid et al.'s algorithm for one image, written from the paper: momentum SGD on concept
    weights w for CE(softmax(g(z + sum_i w_i M_i v_i)), target) + alpha |w|_1 / K + beta |w|_2 / K,
    each step followed by projection on the box and the validity rule (means grouped by sign)."""
    k = len(bank.pairs_)
    margins = z @ bank.directions_.T + bank.intercepts_
    upper = (bank.margin_max_ - margins) / bank.margin_max_
    lower = (bank.margin_min_ - margins) / bank.margin_max_
    upper[margins > bank.above_mean_] = 0.0
    lower[margins < bank.below_mean_] = 0.0
    upper, lower = upper.clamp_min(0), lower.clamp_max(0)
    w = torch.zeros(k, requires_grad=True)
    optimiser = torch.optim.SGD([w], lr=lr, momentum=momentum)
    for _ in range(steps):
        optimiser.zero_grad()
        probabilities = head((z + (w * bank.margin_max_) @ bank.directions_)[None]).softmax(1)
        loss = nn.functional.cross_entropy(probabilities, torch.tensor([target])) + alpha * w.abs().sum() / k \
            + beta * w.norm() / k
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            w.copy_(torch.maximum(torch.minimum(w, upper), lower))
    return w.detach()


def test_reference_settings_reproduce_the_papers_per_image_algorithm():
    generator = torch.Generator().manual_seed(5)
    d, names = 12, [f"k{i}" for i in range(10)]
    sets = {}
    for name in names:
        sets[name] = torch.randn(40, d, generator=generator) + 0.8 * torch.randn(d, generator=generator).sign()  # overlapping
        sets[f"{name}:neg"] = torch.randn(40, d, generator=generator)
    bank = CAVBank().fit(sets, [(n, f"{n}:neg") for n in names])
    assert not torch.equal(bank.above_mean_, bank.positive_mean_)  # the two groupings differ on this bank
    torch.manual_seed(5)
    head = nn.Sequential(nn.Linear(d, 24), nn.Tanh(), nn.Linear(24, 4))
    z = torch.randn(6, d, generator=generator)
    targets = (head(z).argmax(1) + 1) % 4
    batched = CCE.published(bank, head, lr=0.05).explain(z, targets)
    for i in range(len(z)):
        alone = _paper_loop(bank, head, z[i], int(targets[i]), lr=0.05)
        assert torch.allclose(batched.weights[i], alone, atol=1e-4), f"image {i}"
    assert torch.count_nonzero(batched.weights) > 0


def test_support_counts_the_concepts_an_explanation_names():
    bank, head, z, targets = random_problem(6)
    result = CCE(bank, head, lr=0.5, steps=50, support_threshold=0.05).explain(z, targets)
    assert torch.equal(result.support, (result.weights.abs() > 0.05).sum(1))
    for i in range(len(z)):
        named = result.explanation(i, top=100)
        assert len(named["add"]) + len(named["remove"]) == int(result.support[i])
    assert CCE(bank, head, lr=0.5, steps=50, support_threshold=0.0).explain(z, targets).support.sum() >= result.support.sum()
    with pytest.raises(ValueError, match="support_threshold"):
        CCE(bank, head, support_threshold=-1)
    with pytest.raises(ValueError, match="objective"):
        CCE(bank, head, objective="softmax")


def _scaled(bank: CAVBank, scale: float) -> CAVBank:
    """The bank of the same concepts in an embedding space stretched by ``scale``."""
    stretched = CAVBank()
    stretched.pairs_, stretched.directions_ = list(bank.pairs_), bank.directions_.clone()
    for key in ("intercepts_", "margin_max_", "margin_min_", "positive_mean_", "negative_mean_", "above_mean_", "below_mean_"):
        setattr(stretched, key, scale * getattr(bank, key))
    return _fitted(stretched)


@pytest.mark.parametrize("objective", ["logits", "reference"])
def test_explanations_do_not_change_with_the_embedding_scale(objective):
    """Stretching the embedding space by s (and the head's input by 1 / s) changes no weight."""
    bank, head, z, targets = random_problem(11)
    scale = 7.0
    stretched_head = nn.Sequential(nn.Linear(z.shape[1], z.shape[1], bias=False), head)
    with torch.no_grad():
        stretched_head[0].weight.copy_(torch.eye(z.shape[1]) / scale)
    plain = CCE(bank, head, lr=0.2, steps=60, objective=objective).explain(z, targets)
    stretched = CCE(_scaled(bank, scale), stretched_head, lr=0.2, steps=60, objective=objective).explain(scale * z, targets)
    assert torch.count_nonzero(plain.weights) > 0
    assert torch.allclose(plain.weights, stretched.weights, atol=1e-4)
    assert torch.equal(plain.success, stretched.success)


@pytest.mark.parametrize("l1_step", ["proximal", "subgradient"])
def test_concepts_the_head_ignores_do_not_change_the_others_weights(l1_step):
    """The same problem with 6 or 60 concepts, the 54 added on axes the head never reads: the
    weights of the first 6 are identical, so alpha means the same at every bank size."""
    head = two_class_head(60, axis=2, gain=4.0, bias=-1.0)
    small = axis_bank(60)
    small.pairs_ = small.pairs_[:6]
    for key in ("directions_", "intercepts_", "margin_max_", "margin_min_", "positive_mean_", "negative_mean_",
                "above_mean_", "below_mean_"):
        setattr(small, key, getattr(small, key)[:6])
    _fitted(small)
    z = 0.2 * torch.randn(5, 60, generator=torch.Generator().manual_seed(2))
    few = CCE(small, head, l1_step=l1_step, lr=0.05).explain(z, 1)
    many = CCE(axis_bank(60), head, l1_step=l1_step, lr=0.05).explain(z, 1)
    assert few.weights[:, 2].min() > 0.1 and few.success.all()
    assert torch.allclose(few.weights, many.weights[:, :6], atol=1e-6)
    assert torch.count_nonzero(many.weights[:, 6:]) == 0


def test_the_published_solver_divides_its_penalties_by_the_number_of_concepts():
    for k in (6, 60):
        solver = CCE.published(axis_bank(k), nn.Linear(k, 2))
        assert solver.alpha == pytest.approx(0.1 / k) and solver.beta == pytest.approx(0.01 / k)
    assert CCE.published(axis_bank(6), nn.Linear(6, 2), alpha=0.5).alpha == 0.5  # an override is taken as given


def test_the_cli_shows_the_solvers_defaults():
    from conceptlab import cli
    from conceptlab.concepts.cce import CCE_DEFAULTS

    assert cli.CCE_DEFAULTS_SHOWN == {key: CCE_DEFAULTS[key] for key in cli.CCE_DEFAULTS_SHOWN}


def test_the_defaults_name_the_concept_the_head_uses_and_few_others():
    """30 correlated CAVs; the head's class 1 reads one of them. The defaults (logits, proximal L1)
    explain with that concept and exact zeros elsewhere; the published solver's subgradient L1 on
    logits moves almost every concept."""
    generator = torch.Generator().manual_seed(8)
    k, d = 30, 16
    bank = CAVBank()
    bank.pairs_ = [(f"c{i}", "negatives") for i in range(k)]
    bank.directions_ = torch.nn.functional.normalize(torch.randn(k, d, generator=generator), dim=1)
    bank.intercepts_ = torch.zeros(k)
    bank.margin_max_, bank.margin_min_ = torch.full((k,), 3.0), torch.full((k,), -3.0)
    bank.positive_mean_ = bank.above_mean_ = torch.ones(k)
    bank.negative_mean_ = bank.below_mean_ = -torch.ones(k)
    _fitted(bank)
    head = nn.Linear(d, 2)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[1] = 2.0 * bank.directions_[3]
        head.bias.copy_(torch.tensor([0.0, -2.0]))
    z = 0.3 * torch.randn(20, d, generator=generator)
    z = z - (z @ bank.directions_[3])[:, None] * bank.directions_[3]  # c3 absent: class 0
    sparse = CCE(bank, head).explain(z, 1)
    dense = CCE.published(bank, head, objective="logits").explain(z, 1)
    assert sparse.success.all() and (sparse.ranks("c3") == 1).all()
    assert sparse.support.max() <= 3 and (sparse.weights == 0).sum(1).min() >= k - 3
    assert dense.support.float().median() >= 20


def test_a_single_logit_head_is_explained_as_two_classes():
    bank = axis_bank(6)
    head = nn.Linear(6, 1)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, 2] = 4.0
        head.bias.fill_(-1.0)  # logit of class 1 = 4 z2 - 1
    result = CCE(bank, head, steps=300, objective="logits").explain(torch.zeros(3, 6), 1)
    assert result.success.all() and (result.ranks("c2") == 1).all()
    assert (CCE(bank, head, steps=300).explain(torch.full((2, 6), 0.6), 0).weights[:, 2] < 0).all()  # class 0: remove c2
    with pytest.raises(ValueError, match="distinguishes 2 classes"):
        CCE(bank, head).explain(torch.zeros(1, 6), 2)
