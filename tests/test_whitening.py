"""Concept whitening: the layer whitens, its rotation stays orthogonal and learns only from the
alignment objective, the task never moves it, and after training each concept has its own axis."""

from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from conceptlab.datasets import xor
from conceptlab.models import ConceptWhitening, Intervention, load_model, predict, save_model, whitening
from conceptlab.models.heads import task_loss
from conceptlab.models.whitening import alignment_loss
from conceptlab.training import TrainConfig, fit, seeded


@pytest.fixture(scope="module")
def trained():
    data = xor(size=1500)
    with seeded(0):
        model = whitening(in_features=2, n_concepts=2, n_classes=2, latent_dim=16, hidden=(32,), head_hidden=(32,))
    start = model.whitening.rotation.weight.detach().clone()
    fit(model, data, "joint", config=TrainConfig(max_epochs=40, lr=0.01, device="cpu", early_stopping_patience=0))
    return data, model, start


def test_the_layer_whitens_vectors_and_feature_maps_with_batch_and_running_statistics():
    layer = ConceptWhitening(6, 2, momentum=1.0, iterations=10)  # enough Newton steps to whiten exactly at condition 4
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(2000, 6, generator=torch.Generator().manual_seed(1)) @ rotation @ torch.diag(torch.linspace(1, 2, 6)) + 3
    z = layer.train()(x)
    assert torch.allclose(z.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(torch.cov(z.T), torch.eye(6), atol=1e-3)
    assert torch.allclose(layer.eval()(x), z, atol=1e-4)  # momentum 1: the running statistics are this batch's
    maps = torch.randn(8, 6, 5, 5)
    out, axes = ConceptWhitening(6, 2, iterations=10).train().rotate(maps)
    assert out.shape == maps.shape and axes.shape == (8, 2)
    assert torch.allclose(torch.cov(out.permute(0, 2, 3, 1).reshape(-1, 6).T), torch.eye(6), atol=0.1)


def test_the_default_five_iterations_whiten_a_small_direction_only_partly_as_iternorm_does():
    x = torch.randn(2000, 6, generator=torch.Generator().manual_seed(1)) @ torch.diag(torch.tensor([1.0, 1, 1, 1, 1, 0.05]))
    partial = torch.cov(ConceptWhitening(6, 2).train()(x).T).diagonal()
    assert torch.allclose(partial[:5], torch.ones(5), atol=0.01) and partial[5] < 0.5  # a small direction is only lifted


def test_the_task_never_moves_the_rotation_and_the_alignment_moves_nothing_else():
    with seeded(0):
        model = whitening(in_features=2, n_concepts=2, n_classes=2, latent_dim=8, hidden=(8,)).train()
    x, c, y = torch.randn(64, 2), (torch.rand(64, 2) > 0.5).float(), torch.randint(0, 2, (64,))
    out = model(x)
    rotation = list(model.whitening.rotation.parameters())
    encoder = list(model.encoder.parameters())
    task_grads = torch.autograd.grad(task_loss(out.task_logits, y), rotation + encoder, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in task_grads[: len(rotation)])
    assert sum(g.abs().sum() for g in task_grads[len(rotation) :] if g is not None) > 0
    align = model.concept_objective(out, c)["concept"]
    align_grads = torch.autograd.grad(align, rotation + encoder, allow_unused=True)
    assert sum(g.abs().sum() for g in align_grads[: len(rotation)] if g is not None) > 0
    assert all(g is None or g.abs().sum() == 0 for g in align_grads[len(rotation) :])


def test_training_rotates_each_concept_onto_its_own_axis(trained):
    data, model, start = trained
    rotation = model.whitening.rotation.weight.detach()
    assert not torch.allclose(rotation, start)
    assert torch.allclose(rotation @ rotation.T, torch.eye(16), atol=1e-4)  # still orthogonal
    out = predict(model, data.test.x)
    for j in range(2):
        assert roc_auc_score(data.test.c[:, j], out.concept_samples[:, j, 0]) > 0.95
        assert roc_auc_score(data.test.c[:, j], out.concept_samples[:, 1 - j, 0]) < 0.75  # the other axis does not
    assert alignment_loss(out.concept_samples.squeeze(-1), data.test.c) < -0.5


def test_an_intervention_sets_only_its_axis_and_a_saved_model_predicts_the_same(trained, tmp_path: Path):
    data, model, _ = trained
    x, c = data.test.x[:50], data.test.c[:50]
    plain = predict(model, x)
    mask = torch.tensor([[True, False]]).expand(50, 2)
    corrected = predict(model, x, Intervention(mask, c))
    assert torch.equal(corrected.bottleneck[:, 0], torch.where(c[:, 0] > 0.5, model.intervention_high[0], model.intervention_low[0]))
    assert torch.equal(corrected.bottleneck[:, 1:], plain.bottleneck[:, 1:])  # the other concept and the free axes stay
    assert model.intervention_low[0] < 0 < model.intervention_high[0]
    loaded, _, _ = load_model(save_model(model, tmp_path / "cw.pt", data.info))
    assert torch.equal(predict(loaded, x).task_logits, plain.task_logits)


def test_more_concepts_than_axes_is_refused():
    with pytest.raises(ValueError, match="at least one axis per concept"):
        whitening(in_features=2, n_concepts=5, n_classes=2, latent_dim=4)
