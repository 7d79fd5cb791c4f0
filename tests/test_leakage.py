"""Leakage and concept-quality metrics: the kNN estimators against analytic values, each leakage score
on representations built to leak (or not), CaCE through the model's own interventions, sparse heads."""

import math

import numpy as np
import pytest
import torch

from conceptlab.metrics import (
    accuracy_at_effective_concepts,
    causal_concept_effect,
    concepts_task_leakage,
    conditional_mutual_information,
    gaussian_mutual_information,
    interconcept_leakage,
    mutual_information,
    probe_leakage,
)
from conceptlab.models import cbm


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.9])
def test_ksg_estimate_is_within_two_hundredths_of_a_nat_of_the_gaussian_value(rho):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(20_000)
    y = rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal(20_000)
    assert abs(mutual_information(x, y) - gaussian_mutual_information(rho)) < 0.02


def test_multivariate_estimate_matches_the_gaussian_formula():
    # x (2-d) and y (2-d) with two independent correlated pairs: I = 2 * I(rho)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20_000, 2))
    y = 0.6 * x + 0.8 * rng.standard_normal((20_000, 2))
    assert abs(mutual_information(x, y) - 2 * gaussian_mutual_information(0.6)) < 0.04


def test_a_label_that_is_a_function_of_x_carries_its_whole_entropy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000)
    assert abs(mutual_information(x, x > 0, discrete_y=True) - math.log(2)) < 0.03
    assert mutual_information(x, rng.integers(0, 2, 5000), discrete_y=True) < 0.01


def test_conditional_information_vanishes_when_z_explains_the_dependence():
    g = torch.Generator().manual_seed(1)
    z = torch.randint(0, 3, (6000,), generator=g)
    x, y = z + 0.5 * torch.randn(6000, generator=g), z + 0.5 * torch.randn(6000, generator=g)
    assert mutual_information(x, y) > 0.3
    result = conditional_mutual_information(x, y, z)
    assert result.value < 0.02 and result.kept_share == 1.0


def test_estimators_refuse_bad_input_with_a_reason():
    with pytest.raises(ValueError, match="same samples"):
        mutual_information(torch.randn(10), torch.randn(11))
    with pytest.raises(ValueError, match="too few"):
        mutual_information(torch.randn(3), torch.randn(3))
    with pytest.raises(ValueError, match="NaN"):
        mutual_information(torch.tensor([1.0, float("nan"), 2, 3, 4]), torch.randn(5))
    with pytest.raises(ValueError, match="no value of the conditioning"):
        conditional_mutual_information(torch.randn(20), torch.randn(20), torch.arange(20))


def _toy(n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 2, (n, 3), generator=g).float()
    return g, c


def test_concepts_task_leakage_sees_the_task_written_into_representations_and_nothing_else():
    g, c = _toy()
    hidden = torch.randint(0, 2, (len(c),), generator=g)
    clean = (c + 0.3 * torch.randn(c.shape, generator=g)).unsqueeze(-1)
    leaky = torch.cat([clean, (hidden.float() + 0.3 * torch.randn(len(c), generator=g)).view(-1, 1, 1).expand(-1, 3, 1)], -1)
    y = ((c[:, 0] * c[:, 1]).long() | hidden)  # the task needs something the concepts do not say
    assert concepts_task_leakage(clean, c, y).value < 0.02
    assert concepts_task_leakage(leaky, c, y).value > 0.2
    assert probe_leakage(clean, c, y) < 0.03
    assert probe_leakage(leaky, c, y) > 0.2
    # a leak that acts only together with a concept (XOR) is invisible to a linear probe; the
    # information-theoretic score still sees it (why both are offered, docs/guide/quality.md)
    xor = (c[:, 0].long() + hidden) % 2
    assert concepts_task_leakage(leaky, c, xor).value > 0.3
    assert probe_leakage(leaky, c, xor) < 0.1


def test_interconcept_leakage_marks_exactly_the_pair_that_leaks():
    g, c = _toy()
    r = (c + 0.3 * torch.randn(c.shape, generator=g)).unsqueeze(-1)
    r = torch.cat([r, torch.zeros_like(r)], -1)
    r[:, 0, 1] = c[:, 2] + 0.3 * torch.randn(len(c), generator=g)  # concept 0's representation also holds concept 2
    matrix = interconcept_leakage(r, c)
    assert matrix.diagonal().isnan().all()
    assert matrix[0, 2] > 0.4
    off = matrix.clone()
    off[0, 2] = 0
    assert off.nan_to_num().max() < 0.03


def test_leakage_scores_do_not_depend_on_the_order_of_the_samples():
    g, c = _toy(2000)
    y = torch.randint(0, 2, (2000,), generator=g)
    r = (c + 0.5 * torch.randn(c.shape, generator=g) + 0.3 * y[:, None]).unsqueeze(-1)
    order = torch.randperm(2000, generator=g)
    assert concepts_task_leakage(r, c, y).value == pytest.approx(concepts_task_leakage(r[order], c[order], y[order]).value,
                                                                abs=1e-6)
    assert torch.allclose(interconcept_leakage(r, c), interconcept_leakage(r[order], c[order]), equal_nan=True, atol=1e-6)


def test_leakage_refuses_soft_concept_labels():
    with pytest.raises(ValueError, match="0/1"):
        concepts_task_leakage(torch.randn(50, 2, 1), torch.rand(50, 2), torch.zeros(50))


def test_cace_follows_the_head_weights_and_uses_the_interventions():
    torch.manual_seed(0)
    model = cbm(in_features=4, n_concepts=3, n_classes=2)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[4.0, -4.0, 0.0]]))
        model.head.bias.zero_()
    effect = causal_concept_effect(model, torch.randn(64, 4))
    assert effect.shape == (3, 2)
    assert effect[0, 1] > 0.5 and effect[1, 1] < -0.5  # concept 0 raises class 1, concept 1 lowers it
    assert effect[2].abs().max() < 1e-6  # concept 2 is not read by the head
    assert torch.allclose(effect.sum(1), torch.zeros(3), atol=1e-6)  # probabilities move, their total does not


def test_accuracy_at_effective_concepts_prunes_to_the_largest_weights():
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, 2, (400, 4), generator=g).float()
    y = (c[:, 0] + c[:, 1] > 1).long()
    weight = torch.tensor([[0.0, 0, 0, 0], [3.0, 3.0, 0.2, -0.1]])
    bias = torch.tensor([0.0, -4.5])
    full = accuracy_at_effective_concepts(weight, c, y, nec=4, bias=bias)
    assert full == accuracy_at_effective_concepts(weight, c, y, nec=2, bias=bias) == 1.0
    assert accuracy_at_effective_concepts(weight, c, y, nec=1, bias=bias) < 0.9
    with pytest.raises(ValueError, match="nec must lie"):
        accuracy_at_effective_concepts(weight, c, y, nec=0, bias=bias)


def test_the_bench_records_leakage_where_asked_and_the_table_shows_it(tmp_path):
    from conceptlab.bench import parse_spec, run_grid, write_reports

    spec = parse_spec({
        "name": "leaky", "dataset": {"name": "correlated", "size": 600, "rho": 0.5, "n_concepts": 3}, "models": ["cbm-fuzzy", "cem"],
        "seeds": 1, "model": {"hidden": [16], "embedding_size": 4, "latent_dim": 16},
        "train": {"max_epochs": 2, "device": "cpu"},
        "evaluation": {"intervention_repeats": 1, "intervention_competence": [1.0], "concept_alignment": False, "leakage": True},
    })
    store = run_grid([spec], tmp_path, workers=1, progress=False)
    for record in store.records():
        assert record["interconcept_leakage"] >= 0 and record["concepts_task_leakage"] >= 0
        assert -1 <= record["probe_leakage"] <= 1
    markdown = write_reports(store.records(), [spec], tmp_path)
    assert "| ICL | CTL | probe leakage |" in markdown and "ICL and CTL: inter-concept leakage" in markdown
    from conceptlab.bench.evaluation import EvaluationSettings

    assert not EvaluationSettings().leakage  # off unless a config asks: earlier bench results stay as they were


def test_the_bench_prunes_linear_concept_heads_and_skips_the_others(tmp_path):
    from conceptlab.bench import parse_spec, run_grid, write_reports

    spec = parse_spec({
        "name": "sparse", "dataset": {"name": "correlated", "size": 600, "rho": 0.5, "n_concepts": 3},
        "models": ["cbm-fuzzy", "cbm-hybrid", "cem"], "seeds": 1, "model": {"hidden": [16], "embedding_size": 4, "latent_dim": 16},
        "train": {"max_epochs": 2, "device": "cpu"},
        "evaluation": {"intervention_repeats": 1, "intervention_competence": [1.0], "concept_alignment": False,
                       "effective_concepts": 1},
    })
    store = run_grid([spec], tmp_path, workers=1, progress=False)
    records = {r["model"]: r for r in store.records()}
    assert 0 <= records["cbm-fuzzy"]["accuracy_at_nec"] <= 1
    assert records["cbm-hybrid"]["accuracy_at_nec"] is None and records["cem"]["accuracy_at_nec"] is None  # heads read more
    assert "| accuracy at NEC |" in write_reports(store.records(), [spec], tmp_path)
