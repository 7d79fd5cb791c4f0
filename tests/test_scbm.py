"""Stochastic CBMs: the concept logits' Gaussian, its conditional under an intervention, the Monte
Carlo concept likelihood and precision penalty that train it, and determinism in evaluation."""

from functools import partial

import pytest
import torch

from conceptlab.datasets import xor
from conceptlab.interventions import intervention_curve
from conceptlab.models import Intervention, load_model, predict, save_model, scbm
from conceptlab.models.scbm import gaussian_conditional
from conceptlab.training import TrainConfig, fit, seeded


def _block_conditional(mean, cov, mask, values):
    """The textbook formula, one sample at a time, on the permuted blocks."""
    s, r = mask.nonzero().flatten(), (~mask).nonzero().flatten()
    gain = cov[r][:, s] @ torch.linalg.inv(cov[s][:, s])
    out_mean, out_cov = values.clone(), torch.zeros_like(cov)
    out_mean[r] = mean[r] + gain @ (values[s] - mean[s])
    out_cov[r.unsqueeze(1), r] = cov[r][:, r] - gain @ cov[s][:, r]
    return out_mean, out_cov


def test_the_batched_conditional_equals_the_block_formula_for_every_mask():
    generator = torch.Generator().manual_seed(0)
    k, batch = 6, 40
    factor = torch.randn(batch, k, k, generator=generator, dtype=torch.float64).tril()
    factor.diagonal(dim1=1, dim2=2).abs_().add_(0.5)
    cov = factor @ factor.transpose(1, 2)
    mean = torch.randn(batch, k, generator=generator, dtype=torch.float64)
    values = torch.randn(batch, k, generator=generator, dtype=torch.float64)
    mask = torch.rand(batch, k, generator=generator) < 0.5
    mask[0] = False  # nothing conditioned: the distribution itself
    mask[1] = True   # everything conditioned: the values, no variance
    got_mean, got_cov = gaussian_conditional(mean, cov, mask, values)
    for b in range(batch):
        if not mask[b].any():
            expected = (mean[b], cov[b])
        else:
            expected = _block_conditional(mean[b], cov[b], mask[b], values[b])
        assert torch.allclose(got_mean[b], expected[0], atol=1e-5), b
        assert torch.allclose(got_cov[b], expected[1], atol=1e-5), b


@pytest.fixture(scope="module")
def trained():
    data = xor(size=600)
    with seeded(0):
        model = scbm(in_features=2, n_concepts=2, n_classes=2, latent_dim=16, hidden=(16,), samples=32, head_hidden=(16,))
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    report = fit(model, data, "joint", config=TrainConfig(max_epochs=6, lr=0.01, device="cpu", early_stopping_patience=0))
    return data, model, start, report


def test_training_runs_the_concept_likelihood_and_the_precision_penalty(trained):
    data, model, start, report = trained
    x, c = data.train.x[:64], data.train.c[:64]
    model.train()
    out = model(x)
    terms = model.concept_objective(out, c)
    assert set(terms) == {"concept", "precision"} and all(v.item() > 0 for v in terms.values())
    sum(terms.values()).backward()
    assert model.scale.weight.grad.abs().sum() > 0  # the covariance learns from both terms
    model.zero_grad()
    model.eval()
    for name, p in model.named_parameters():
        assert not torch.equal(p.detach(), start[name]), f"{name} never moved"
    assert model.temperature < 1.0  # annealed towards 0.5 by the learner's epoch hook
    assert len(report.history["joint"]["train_loss"]) == 6


def test_an_intervention_conditions_the_other_concepts_on_the_written_logit(trained):
    data, model, _, _ = trained
    x = data.test.x[:8]
    latent = model.encode(x)
    mean, factor = model.gaussian(latent)
    mask = torch.tensor([[True, False]]).expand(8, -1)
    out = model(x, Intervention(mask, data.test.c[:8]))
    written = torch.where(data.test.c[:8] > 0.5, torch.logit(torch.tensor(0.95)), torch.logit(torch.tensor(0.05)))
    expected, _ = gaussian_conditional(mean, factor @ factor.transpose(1, 2), mask, written)
    assert torch.allclose(out.concept_logits, expected, atol=1e-5)
    assert torch.equal(out.concept_probs[:, 0], data.test.c[:8, 0])  # the corrected concept is its label
    covariance = out.concept_scale @ out.concept_scale.transpose(1, 2)
    _, expected_covariance = gaussian_conditional(mean, factor @ factor.transpose(1, 2), mask, written)
    assert torch.allclose(covariance, expected_covariance, atol=1e-5)  # the corrected concept: no variance left
    assert torch.allclose(covariance[:, 0], torch.zeros(8, 2), atol=1e-6)


def test_an_scbm_refuses_training_time_interventions():
    model = scbm(in_features=2, n_concepts=2, n_classes=2, latent_dim=4, hidden=(4,), samples=4).train()
    with pytest.raises(ValueError, match="set train.intervention_prob to 0"):
        model(torch.randn(3, 2), Intervention.all(torch.ones(3, 2)))


def test_evaluation_is_deterministic_and_a_saved_model_predicts_the_same(trained, tmp_path):
    data, model, _, _ = trained
    first, second = predict(model, data.test.x), predict(model, data.test.x)
    assert torch.equal(first.task_logits, second.task_logits)
    nothing = Intervention(torch.zeros(len(data.test), 2, dtype=torch.bool), data.test.c)
    assert torch.equal(predict(model, data.test.x, nothing).task_logits, first.task_logits)  # a curve's first point
    loaded, _, _ = load_model(save_model(model, tmp_path / "scbm.pt", data.info))
    assert torch.equal(predict(loaded, data.test.x).task_logits, first.task_logits)


def test_every_concept_corrected_gives_the_concepts_only_answer(trained):
    data, model, _, _ = trained
    curve = intervention_curve(model, data.test, "random", repeats=1)
    assert len(curve.accuracy_mean) == 3
    everything = predict(model, data.test.x, Intervention.all(data.test.c))
    assert torch.equal(everything.bottleneck, data.test.c)  # the head reads exactly the true concepts


def test_a_benchmarked_scbm_opens_in_the_explorer_and_steps_a_policy(tmp_path):
    from pathlib import Path

    from conceptlab.bench import parse_spec, run_grid
    from conceptlab.explorer import Corrections, Explorer, load_explorer_model

    spec = parse_spec({"dataset": {"name": "xor", "size": 200}, "models": ["scbm"], "seeds": 1,
                       "model": {"hidden": [8], "latent_dim": 8}, "train": {"max_epochs": 2},
                       "evaluation": {"intervention_policies": ["random", "uncertainty"], "intervention_repeats": 1}}, "x")
    (record,) = run_grid([spec], tmp_path, workers=1, progress=False).records()
    assert record["status"] == "ok" and set(record["interventions"]) >= {"random", "uncertainty"}
    model = load_explorer_model(Path(record["checkpoint"]))
    explorer = Explorer([model])
    corrected = Corrections({}).with_value(0, 1)
    assert explorer.view(model.name, 0, corrected) is not None
    label, stepped = explorer.next_step(model.name, 0, corrected, policy="uncertainty")
    assert len(stepped.values) == 2


def _cross_entropy(logits, labels) -> float:
    import numpy as np

    return float(np.sum(np.logaddexp(0, logits) - labels * logits))


def _inside(logits, mean, inverse, radius2) -> float:
    """Positive inside the confidence region, zero on its boundary."""
    return float(radius2 - (logits - mean) @ inverse @ (logits - mean))


def test_the_confidence_region_strategy_finds_what_a_general_solver_finds_and_conditions_on_it(trained):
    """Against scipy's SLSQP, one sample at a time: the same least cross-entropy on the region's
    boundary (to 1e-5), never outside it."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.stats import chi2

    from conceptlab.models.scbm import confidence_region_logits

    generator = torch.Generator().manual_seed(1)
    k, batch = 5, 20
    factor = torch.randn(batch, k, k, generator=generator, dtype=torch.float64)
    cov = factor @ factor.transpose(1, 2) + 0.5 * torch.eye(k, dtype=torch.float64)
    mean = torch.randn(batch, k, generator=generator, dtype=torch.float64)
    mask = torch.rand(batch, k, generator=generator) < 0.5
    mask[:, 0] = True
    labels = (torch.rand(batch, k, generator=generator) < 0.5).double()
    ours = confidence_region_logits(mean, cov, mask, labels)
    assert torch.equal(ours[~mask], mean[~mask])
    for b in range(batch):
        s = mask[b].nonzero().flatten().numpy()
        m, c, y = mean[b, s].numpy(), cov[b][np.ix_(s, s)].numpy(), labels[b, s].numpy()
        q, inverse = chi2.ppf(0.99, len(s)), np.linalg.inv(c)
        loss = partial(_cross_entropy, labels=y)
        start = m + (2 * y - 1) * np.sqrt(q / ((2 * y - 1) @ inverse @ (2 * y - 1)))
        region = {"type": "ineq", "fun": partial(_inside, mean=m, inverse=inverse, radius2=q)}
        best = minimize(loss, start, method="SLSQP", constraints=[region], options={"ftol": 1e-14, "maxiter": 1000})
        found = ours[b, s].numpy()
        assert loss(found) <= best.fun + 1e-5 and _inside(found, m, inverse, q) >= -1e-9 * q, b
    data, model, _, _ = trained
    model.intervention_strategy = "confidence"
    try:
        x, labels = data.test.x[:8], data.test.c[:8]
        mask = torch.tensor([[True, False]]).expand(8, -1)
        mean, scale = model.gaussian(model.encode(x))
        written = confidence_region_logits(mean, scale @ scale.transpose(1, 2), mask, labels)
        expected, _ = gaussian_conditional(mean, scale @ scale.transpose(1, 2), mask, written.float())
        assert torch.allclose(model(x, Intervention(mask, labels)).concept_logits, expected, atol=1e-4)
    finally:
        model.intervention_strategy = "percentile"
