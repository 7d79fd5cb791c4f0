import pytest
import torch

from conceptlab.datasets import xor
from conceptlab.metrics import evaluate
from conceptlab.models import black_box, cbm, cem
from conceptlab.training import TrainConfig, fit, seeded


@pytest.fixture(scope="module")
def data():
    return xor(size=1500, seed=0)


FAST = dict(device="cpu", max_epochs=40, early_stopping_patience=0)


@pytest.mark.parametrize(
    "key, build, recipe, low, high, extra",
    [
        ("blackbox", lambda: black_box(in_features=2, n_classes=2, latent_dim=32), "joint", 0.95, 1.0, {}),
        ("cbm-hybrid", lambda: cbm(in_features=2, n_concepts=2, n_classes=2, n_extra=30), "joint", 0.95, 1.0, {}),
        ("cbm-logit", lambda: cbm(in_features=2, n_concepts=2, n_classes=2, bottleneck="logit"), "joint", 0.90, 1.0, {}),
        ("cem", lambda: cem(in_features=2, n_concepts=2, n_classes=2, embedding_size=16), "joint", 0.95, 1.0, {"intervention_prob": 0.25}),
        # a linear head on two (soft) concept bits cannot represent XOR: at most 3 of 4 quadrants
        ("cbm-fuzzy", lambda: cbm(in_features=2, n_concepts=2, n_classes=2), "joint", 0.2, 0.8, {}),
        ("cbm-bool", lambda: cbm(in_features=2, n_concepts=2, n_classes=2, bottleneck="bool"), "joint", 0.2, 0.8, {}),
        ("cbm-seq", lambda: cbm(in_features=2, n_concepts=2, n_classes=2), "sequential", 0.2, 0.8, {}),
        ("cbm-ind", lambda: cbm(in_features=2, n_concepts=2, n_classes=2), "independent", 0.2, 0.8, {}),
    ],
)
def test_each_model_learns_xor_to_its_band(data, key, build, recipe, low, high, extra):
    with seeded(0):
        model = build()
    report = fit(model, data, recipe, config=TrainConfig(**FAST, **extra))
    metrics = evaluate(model, data.test)
    assert low <= metrics["task_accuracy"] <= high, metrics
    if model.n_concepts:
        assert metrics["concept_accuracy"] >= 0.95, metrics
    assert report.epochs == 40 * (2 if recipe != "joint" else 1)


def _head_inputs_while_training_head(model, data, recipe):
    """Record what the task head reads in the stage where only the head learns."""
    seen = []

    def hook(module, inputs, output):
        encoder_frozen = not any(p.requires_grad for p in model.concept_parameters())
        if module.training and encoder_frozen:
            seen.append(inputs[0].detach().clone())

    model.head.register_forward_hook(hook)
    fit(model, data, recipe, config=TrainConfig(device="cpu", max_epochs=3, early_stopping_patience=0))
    return torch.cat(seen)


def test_independent_head_reads_true_concepts_and_sequential_predicted(data):
    with seeded(0):
        independent = _head_inputs_while_training_head(cbm(in_features=2, n_concepts=2, n_classes=2), data, "independent")
        sequential = _head_inputs_while_training_head(cbm(in_features=2, n_concepts=2, n_classes=2), data, "sequential")
    assert set(independent.unique().tolist()) == {0.0, 1.0}
    assert len(sequential.unique()) > 100  # probabilities from the frozen concept encoder


def test_sequential_stage_two_leaves_the_concept_encoder_unchanged(data):
    with seeded(0):
        model = cbm(in_features=2, n_concepts=2, n_classes=2)
    snapshots = []
    model.head.register_forward_pre_hook(
        lambda m, i: snapshots.append([p.detach().clone() for p in model.concept_parameters()])
        if m.training and not any(p.requires_grad for p in model.concept_parameters()) else None
    )
    fit(model, data, "sequential", config=TrainConfig(device="cpu", max_epochs=3, early_stopping_patience=0))
    assert all(torch.equal(a, b) for a, b in zip(snapshots[0], snapshots[-1]))
    assert all(p.requires_grad for p in model.parameters())  # frozen parts are released afterwards


def test_training_is_deterministic_for_a_seed(data):
    weights = []
    for _ in range(2):
        with seeded(1):
            model = cem(in_features=2, n_concepts=2, n_classes=2, embedding_size=4)
        fit(model, data, "joint", config=TrainConfig(device="cpu", max_epochs=3, intervention_prob=0.25, seed=1))
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_early_stopping_stops_before_the_epoch_limit(data):
    with seeded(0):
        model = cbm(in_features=2, n_concepts=2, n_classes=2, n_extra=8)
    report = fit(model, data, "joint", config=TrainConfig(device="cpu", max_epochs=400, early_stopping_patience=3, lr_patience=1))
    assert report.epochs < 400


def test_logit_cbm_is_calibrated_after_fit(data):
    with seeded(0):
        model = cbm(in_features=2, n_concepts=2, n_classes=2, bottleneck="logit")
    fit(model, data, "joint", config=TrainConfig(device="cpu", max_epochs=3))
    assert (model.intervention_high > model.intervention_low).all()


def test_model_and_data_must_agree(data):
    with pytest.raises(ValueError, match="the model predicts 3 concepts but the data has 2"):
        fit(cbm(in_features=2, n_concepts=3, n_classes=2), data, "joint", config=TrainConfig(**FAST))
    with pytest.raises(ValueError, match="the model predicts 5 classes but the data has 2"):
        fit(cbm(in_features=2, n_concepts=2, n_classes=5), data, "joint", config=TrainConfig(**FAST))
    with pytest.raises(ValueError, match="unknown recipe 'stacked'"):
        fit(cbm(in_features=2, n_concepts=2, n_classes=2), data, "stacked", config=TrainConfig(**FAST))
    with pytest.raises(ValueError, match=r"train.learning_rate: unknown key.*known: batch_size"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="the model takes inputs of 5 features but the data's x has 2"):
        fit(cbm(in_features=5, n_concepts=2, n_classes=2), data, "joint", config=TrainConfig(**FAST))
