"""ProbCBM: Gaussian concept embeddings scored against anchors, the KL and anchored terms that train
them, interventions that write the anchors, and the uncertainty policy that reads the variances."""

from pathlib import Path

import pytest
import torch

from conceptlab.datasets import xor
from conceptlab.interventions import intervention_curve
from conceptlab.models import Intervention, cbm, load_model, predict, probcbm, save_model
from conceptlab.training import TrainConfig, fit, seeded


@pytest.fixture(scope="module")
def trained():
    data = xor(size=600)
    with seeded(0):
        model = probcbm(in_features=2, n_concepts=2, n_classes=2, latent_dim=16, hidden=(16,), embedding_size=8,
                        class_embedding_size=16, samples=8, head_hidden=(32,))
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    report = fit(model, data, "joint", config=TrainConfig(max_epochs=15, lr=0.01, device="cpu", early_stopping_patience=0))
    return data, model, start, report


def test_training_runs_the_kl_and_the_anchored_terms_and_moves_the_anchors(trained):
    data, model, start, _ = trained
    x, c, y = data.train.x[:64], data.train.c[:64], data.train.y[:64]
    model.train()
    out = model(x)
    assert out.concept_samples.shape == (64, 2, 8)  # eight draws per concept in training
    terms = model.concept_objective(out, c, y=y)
    assert set(terms) == {"kl", "anchored"} and all(t.item() > 0 for t in terms.values())
    assert sum(g.abs().sum() for g in torch.autograd.grad(terms["kl"], list(model.log_variance.parameters()))) > 0
    (gradient,) = torch.autograd.grad(terms["anchored"], [model.anchors])
    assert gradient.abs().sum() > 0
    model.eval()
    assert not torch.equal(model.anchors.detach(), start["anchors"])


def test_the_concept_probability_is_the_mean_over_samples_of_the_anchor_comparison(trained):
    data, model, _, _ = trained
    model.train()
    with seeded(0):
        out = model(data.test.x[:20])
    model.eval()
    assert torch.allclose(out.concept_probs, torch.sigmoid(out.concept_samples).mean(-1), atol=1e-5)


def test_an_intervention_writes_the_anchor_and_zeroes_the_uncertainty(trained):
    data, model, _, _ = trained
    x, c = data.test.x[:30], data.test.c[:30]
    mask = torch.tensor([[True, False]]).expand(30, 2)
    out = predict(model, x, Intervention(mask, c))
    anchors = torch.nn.functional.normalize(model.anchors.detach(), dim=-1)
    written = torch.where(c[:, :1] > 0.5, anchors[1, 0], anchors[0, 0])  # concept 0's anchor per sample
    assert torch.allclose(out.bottleneck[:, :8], written, atol=1e-6)
    assert torch.all(out.concept_uncertainty[:, 0] == 0) and torch.all(out.concept_uncertainty[:, 1] > 0)
    everything = predict(model, x, Intervention.all(c))
    assert (everything.task_logits[:, 0] > 0).long().eq(data.test.y[:30]).float().mean() == 1  # XOR of the anchors


def test_evaluation_is_deterministic_and_a_saved_model_predicts_the_same(trained, tmp_path: Path):
    data, model, _, _ = trained
    first = predict(model, data.test.x)
    assert torch.equal(predict(model, data.test.x).task_logits, first.task_logits)
    loaded, _, _ = load_model(save_model(model, tmp_path / "probcbm.pt", data.info))
    assert torch.equal(predict(loaded, data.test.x).task_logits, first.task_logits)


def test_the_uncertainty_policy_follows_the_reported_variance_and_refuses_other_models(trained):
    data, model, _, _ = trained
    curve = intervention_curve(model, data.test, "concept-uncertainty", repeats=1)
    assert len(curve.accuracy_mean) == 3 and curve.accuracy_mean[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reports none"):
        intervention_curve(cbm(in_features=2, n_concepts=2, n_classes=2), data.test, "concept-uncertainty")


def test_a_multiclass_head_has_one_anchor_per_class():
    model = probcbm(in_features=3, n_concepts=2, n_classes=4, latent_dim=8, hidden=(8,), samples=3)
    assert model.head.class_anchors.shape[0] == 4
    assert model.eval()(torch.randn(5, 3)).task_logits.shape == (5, 4)


def test_a_collapsing_variance_keeps_the_objective_finite():
    """Trained without early stopping, the concept loss can drive the log-variance far below zero
    (-140 in a 100-epoch run on Trig); the KL read back from the standard deviation must not become log(0)."""
    model = probcbm(in_features=3, n_concepts=2, n_classes=2, latent_dim=8, hidden=(8,), samples=4)
    with torch.no_grad():
        model.log_variance.bias.fill_(-300.0)
    model.train()
    out = model(torch.randn(16, 3))
    terms = model.concept_objective(out, (torch.rand(16, 2) > 0.5).float(), y=torch.randint(0, 2, (16,)))
    assert all(torch.isfinite(t) for t in terms.values())
    model.eval()
