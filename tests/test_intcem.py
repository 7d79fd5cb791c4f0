"""IntCEM: its trajectory objective, its learned policy, and what must survive saving and loading."""

from dataclasses import replace

import pytest
import torch

from conceptlab.interventions import intervention_curve
from conceptlab.models import Intervention, cbm, intcem, load_model, save_model
from conceptlab.models.heads import true_class_logit
from conceptlab.training import IntCEMConfig, TrainConfig, fit, seeded
from conceptlab.training.intcem import IntCEMLearner, random_pick, trajectory_lengths
from conceptlab.training.recipes import recipe_stages

from .noisy_concepts import noisy_concepts


def _learner(config: TrainConfig, units=None) -> IntCEMLearner:
    with seeded(0):
        model = intcem(in_features=20, n_concepts=12, n_classes=4, units=units, embedding_size=4, latent_dim=16, hidden=(16,), policy_hidden=(16,))
    return IntCEMLearner(model, recipe_stages("intcem", config)[0], config)


def test_true_class_logit_reads_the_label_on_every_head():
    logits = torch.tensor([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0]])
    assert torch.equal(true_class_logit(logits, torch.tensor([1, 2])), torch.tensor([5.0, 3.0]))
    stacked = logits.unsqueeze(1).expand(-1, 4, -1)  # (B, G, T): after each of 4 units
    assert torch.equal(true_class_logit(stacked, torch.tensor([1, 2])), torch.tensor([[5.0] * 4, [3.0] * 4]))
    single = torch.tensor([[2.0], [2.0]])  # one binary logit: the log-odds of class 1
    assert torch.equal(true_class_logit(single, torch.tensor([1, 0])), torch.tensor([2.0, -2.0]))


def test_random_pick_draws_only_free_units():
    free = torch.rand(500, 6, generator=torch.Generator().manual_seed(0)) < 0.6
    picked = random_pick(free, 2)
    assert not (picked & ~free).any()
    assert torch.equal(picked.sum(1), free.sum(1).clamp(max=2))


def test_random_pick_takes_one_count_per_sample():
    free = torch.ones(4, 6, dtype=torch.bool)
    free[3, :4] = False  # two free units only
    picked = random_pick(free, torch.tensor([0, 1, 5, 3]))
    assert picked.sum(1).tolist() == [0, 1, 5, 2]
    assert not (picked & ~free).any()


def test_trajectory_lengths_stay_inside_the_horizon_and_each_samples_free_units():
    n_free = torch.arange(13).repeat(200)
    for horizon in (2.0, 3.7, 6.0, 13.0):
        before, steps = trajectory_lengths(n_free, horizon, max_horizon=6)
        assert (before + steps <= n_free).all()
        assert (before < torch.clamp(torch.minimum(n_free - 1, torch.tensor(int(horizon))), min=1)).all()
        assert (steps < min(int(horizon), 6)).all() | (steps == 0).all()
        assert ((steps >= 1) == (torch.minimum(n_free - before, torch.tensor(min(int(horizon), 6))) > 1)).all()
        assert (steps[n_free <= 1] == 0).all()


def test_one_exhausted_sample_does_not_empty_the_batch():
    """The defect this guards against: one T per batch from the fewest free units, so a single
    sample with nothing left (common with RandInt on 2-3 concepts) set T = 0 for everyone."""
    n_free = torch.full((256,), 3)
    n_free[0] = 0
    _, steps = trajectory_lengths(n_free, 3.0, max_horizon=6)
    assert steps[0] == 0 and (steps[1:] >= 1).all()


def test_the_horizon_grows_every_step_up_to_one_more_than_the_units():
    learner = _learner(TrainConfig(device="cpu", intcem=IntCEMConfig(horizon_rate=1.5)), torch.eye(12, dtype=torch.bool)[:4])
    x, c, y = torch.randn(8, 20), (torch.rand(8, 12) < 0.5).float(), torch.randint(0, 4, (8,))
    horizons = []
    for _ in range(6):
        learner.trajectory_terms((x, c, y))
        horizons.append(learner.horizon)
    assert horizons[:2] == pytest.approx([3.0, 4.5])
    assert max(horizons) < 5 * 1.5 and horizons[-1] == horizons[-2]  # stops once it passes G + 1 = 5


def test_the_task_loss_reaches_the_policy_through_its_sampled_corrections():
    config = TrainConfig(device="cpu", intcem=IntCEMConfig(intervention_weight=0.0, initial_horizon=6.0))
    learner = _learner(config)
    x, c, y = torch.randn(32, 20), (torch.rand(32, 12) < 0.5).float(), torch.randint(0, 4, (32,))
    sum(learner.trajectory_terms((x, c, y))[0].values()).backward()
    gradient = sum(float(p.grad.abs().sum()) for p in learner.model.policy.parameters() if p.grad is not None)
    assert gradient > 0  # straight-through Gumbel: corrections chosen by the policy carry the task loss back


def test_a_sample_without_a_trajectory_adds_nothing_to_the_policy_term():
    learner = _learner(TrainConfig(device="cpu", intcem=IntCEMConfig(initial_horizon=6.0)))
    x, c, y = torch.randn(16, 20), (torch.rand(16, 12) < 0.5).float(), torch.randint(0, 4, (16,))
    learner.stage = replace(learner.stage, intervention_prob=1.0)  # RandInt corrects everything: no sample has a trajectory
    terms, steps = learner.trajectory_terms((x, c, y))
    assert (steps == 0).all() and terms["policy"].item() == 0.0
    learner.stage = replace(learner.stage, intervention_prob=0.0)
    terms, steps = learner.trajectory_terms((x, c, y))
    assert (steps > 0).all() and terms["policy"].item() > 0.0


def test_the_intcem_recipe_refuses_other_models():
    with seeded(0):
        model = cbm(in_features=20, n_concepts=12, n_classes=4)
    with pytest.raises(ValueError, match="the intcem recipe trains an IntCEM"):
        fit(model, noisy_concepts(n=300), "intcem", config=TrainConfig(device="cpu", max_epochs=1))


def test_units_must_cover_the_concepts():
    with pytest.raises(ValueError, match=r"units must be a \(n_units, n_concepts=12\) boolean matrix"):
        intcem(in_features=20, n_concepts=12, n_classes=4, units=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one concept per unit"):
        intcem(in_features=20, n_concepts=12, n_classes=4, units=torch.zeros(3, 12, dtype=torch.bool))


@pytest.fixture(scope="module")
def trained():
    data = noisy_concepts()
    with seeded(0):
        model = intcem(in_features=20, n_concepts=12, n_classes=4, units=None, embedding_size=8, latent_dim=32, hidden=(32,), policy_hidden=(64,))
    fit(model, data, "intcem", config=TrainConfig(max_epochs=40, intervention_prob=0.25, device="cpu", batch_size=128))
    return model.eval(), data


def test_intcem_learns_the_task_and_a_policy_better_than_random(trained):
    model, data = trained
    random = intervention_curve(model, data.test, "random", groups=False, repeats=3)
    learned = intervention_curve(model, data.test, "learned", groups=False, repeats=1)
    assert random.accuracy_mean[0] > 0.6  # learned the task (4 classes)
    assert learned.accuracy_mean[0] == pytest.approx(random.accuracy_mean[0])
    assert learned.auc > random.auc + 0.02


def test_a_saved_intcem_predicts_and_ranks_the_same_after_loading(trained, tmp_path):
    model, data = trained
    path = save_model(model, tmp_path / "intcem.pt", data.info)
    loaded, info, _ = load_model(path)
    x = data.test.x[:64]
    intervention = Intervention(torch.rand(64, 12) < 0.3, data.test.c[:64])
    with torch.no_grad():
        assert torch.allclose(loaded(x, intervention).task_logits, model(x, intervention).task_logits)
        assert torch.allclose(loaded.unit_scores(loaded.encode(x), intervention), model.unit_scores(model.encode(x), intervention))
    assert torch.equal(loaded.units, model.units)
    assert info == data.info
