"""MixCEM: global embeddings plus residuals scaled by the concept's certainty, residual dropout, the
prior term on the true concepts' global embeddings, and Platt calibration on the validation split."""

from pathlib import Path

import pytest
import torch

from conceptlab.datasets import xor
from conceptlab.models import ConceptModel, Intervention, load_model, mixcem, predict, save_model
from conceptlab.models.base import encode_all
from conceptlab.models.calibration import CALIBRATION_PENALTY
from conceptlab.models.mixcem import binary_entropy
from conceptlab.training import TrainConfig, fit, seeded


@pytest.fixture(scope="module")
def trained():
    data = xor(size=600)
    with seeded(0):
        model = mixcem(in_features=2, n_concepts=2, n_classes=2, embedding_size=8, latent_dim=16, hidden=(16,))
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    report = fit(model, data, "joint", config=TrainConfig(max_epochs=8, lr=0.01, device="cpu", early_stopping_patience=0,
                                                           intervention_prob=0.25))
    return data, model, start, report


def test_training_moves_the_global_embeddings_and_calibrates_every_concept(trained):
    data, model, start, _ = trained
    assert not torch.equal(model.global_embeddings.detach(), start["global_embeddings"])
    assert not torch.equal(model.platt_scale, torch.ones(2)) and not torch.equal(model.platt_bias, torch.zeros(2))
    # the fitted scale and bias are the calibration's optimum: nudging either raises its objective on the validation split
    scores = model.raw_concept_logits(encode_all(model, data.val.x))

    def loss(scale, bias):
        fit_term = torch.nn.functional.binary_cross_entropy_with_logits(scale * scores + bias, data.val.c)
        return (fit_term + CALIBRATION_PENALTY * ((scale - 1).square() + bias.square()).mean()).item()

    best = loss(model.platt_scale, model.platt_bias)
    for nudge in (0.05, -0.05):
        assert loss(model.platt_scale + nudge, model.platt_bias) > best - 1e-4
        assert loss(model.platt_scale, model.platt_bias + nudge) > best - 1e-4


def test_the_prior_term_reads_the_true_concepts_and_reaches_the_global_embeddings(trained):
    data, model, _, _ = trained
    x, c, y = data.train.x[:64], data.train.c[:64], data.train.y[:64]
    model.train()
    terms = model.concept_objective(model(x), c, y=y)
    assert set(terms) == {"prior"} and terms["prior"].item() > 0
    (gradient,) = torch.autograd.grad(terms["prior"], [model.global_embeddings])
    assert gradient.abs().sum() > 0
    flipped = model.concept_objective(model(x), 1 - c, y=y)["prior"]
    assert not torch.isclose(flipped, terms["prior"])  # it reads the labels, not the predictions
    model.eval()


def test_the_residual_is_scaled_by_certainty_and_dropped_at_random_only_in_training(trained):
    data, model, _, _ = trained
    probs = torch.tensor([[0.5, 1.0], [0.9, 0.0]])
    model.eval()
    assert torch.allclose(model.residual_scale(probs), (1 - binary_entropy(probs)) * 0.5)
    assert model.residual_scale(probs)[0, 0].abs() < 1e-6  # an undecided concept: the global embedding alone
    model.train()
    with seeded(0):
        draws = torch.stack([model.residual_scale(torch.full((64, 2), 0.99)) for _ in range(4)])
    model.eval()
    kept = draws > 0
    assert 0.3 < kept.float().mean() < 0.7 and not torch.equal(kept[0], kept[1])  # dropout 0.5, a new mask each step


def test_effects_in_closed_form_equal_decoding_every_correction(trained):
    data, model, _, _ = trained
    codes = encode_all(model, data.test.x[:50])
    partial = Intervention(torch.tensor([[True, False]]).expand(50, 2), data.test.c[:50])
    for intervention in (None, partial):
        closed = model.concept_effects(codes, intervention)
        decoded = ConceptModel.concept_effects(model, codes, intervention)
        assert torch.allclose(closed.logits, decoded.logits, atol=1e-5)
        assert torch.allclose(closed.to_zero, decoded.to_zero, atol=1e-5)
        assert torch.allclose(closed.to_one, decoded.to_one, atol=1e-5)


def test_evaluation_is_deterministic_and_a_saved_model_keeps_its_calibration(trained, tmp_path: Path):
    data, model, _, _ = trained
    first = predict(model, data.test.x)
    assert torch.equal(predict(model, data.test.x).task_logits, first.task_logits)
    loaded, _, _ = load_model(save_model(model, tmp_path / "mixcem.pt", data.info))
    assert torch.equal(loaded.platt_scale, model.platt_scale)
    assert torch.equal(predict(loaded, data.test.x).task_logits, first.task_logits)


def test_a_concept_with_one_value_on_the_validation_split_keeps_the_identity_calibration():
    with seeded(0):
        model = mixcem(in_features=2, n_concepts=2, n_classes=2, embedding_size=4, latent_dim=8, hidden=(8,))
    x = torch.randn(40, 2)
    c = torch.stack([torch.ones(40), (x[:, 0] > 0).float()], 1)
    c[:5, 1] = float("nan")
    model.calibrate_concepts(x, c)
    assert model.platt_scale[0] == 1 and model.platt_bias[0] == 0
    assert model.platt_scale[1] != 1


def test_bad_settings_are_refused_with_their_name():
    with pytest.raises(ValueError, match="dropout"):
        mixcem(in_features=2, n_concepts=2, n_classes=2, dropout=1.0)
    with pytest.raises(ValueError, match="prior_weight"):
        mixcem(in_features=2, n_concepts=2, n_classes=2, prior_weight=-1.0)

