import itertools

import numpy as np
import pytest
import torch
from torch import nn

from conceptlab import cli
from conceptlab.bench import parse_spec, run_grid, write_reports
from conceptlab.datasets import xor
from conceptlab.interventions import (
    POLICIES,
    PolicyState,
    curve_plot,
    intervention_curve,
    random_policy,
    unit_ranks,
    units_to_concepts,
    with_competence,
)
from conceptlab.metrics import concept_alignment_score
from conceptlab.metrics.alignment import kmedoids_clusters
from conceptlab.models import ConceptBottleneckModel, ConceptEmbeddingModel, Intervention, cem
from conceptlab.training import TrainConfig, fit, seeded

PNG = b"\x89PNG\r\n\x1a\n"


def _identity_cbm(bottleneck: str, n_extra: int = 0) -> ConceptBottleneckModel:
    """Concept logits = x (first 3 inputs), extras = remaining inputs; head weights 1, 2, 3 (, 10...)."""
    model = ConceptBottleneckModel(nn.Identity(), n_concepts=3, n_classes=2, bottleneck=bottleneck, n_extra=n_extra)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0] + [10.0] * n_extra]))
        model.head.bias.zero_()
    return model


X = torch.tensor([[2.0, -2.0, 0.0, -1.0], [-3.0, 4.0, 1.0, 2.0]])
MASK = torch.tensor([[True, False, True], [False, True, False]])
VALUES = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_sigmoid_cbm_writes_true_values_and_leaves_hybrid_extras_alone():
    model = _identity_cbm("sigmoid", n_extra=1)
    out = model(X, Intervention(MASK, VALUES))
    p = torch.sigmoid(X[:, :3])
    expected = torch.where(MASK, VALUES, p)
    assert torch.allclose(out.bottleneck[:, :3], expected)
    assert torch.allclose(out.bottleneck[:, 3], nn.functional.leaky_relu(X[:, 3]))
    assert torch.allclose(out.task_logits.squeeze(1), expected @ torch.tensor([1.0, 2.0, 3.0]) + 10 * out.bottleneck[:, 3])
    assert torch.allclose(out.concept_probs, p)  # the model's own predictions are reported unchanged


def test_bool_cbm_writes_hard_values():
    out = _identity_cbm("bool")(X[:, :3], Intervention(MASK, VALUES))
    hard = (X[:, :3] > 0).float()
    assert torch.equal(out.bottleneck, torch.where(MASK, VALUES, hard))


def test_logit_cbm_writes_training_logit_percentiles():
    model = _identity_cbm("logit")
    train_logits = torch.arange(101.0).unsqueeze(1).repeat(1, 3) * torch.tensor([1.0, 2.0, -1.0])
    model.calibrate_interventions(train_logits)
    assert torch.allclose(model.intervention_low, torch.tensor([5.0, 10.0, -95.0]))
    assert torch.allclose(model.intervention_high, torch.tensor([95.0, 190.0, -5.0]))
    out = model(X[:, :3], Intervention(MASK, VALUES))
    # sample 0: concept 0 -> low (5), concept 2 -> high (-5); sample 1: concept 1 -> low (10)
    assert torch.allclose(out.bottleneck, torch.tensor([[5.0, -2.0, -5.0], [-3.0, 10.0, 1.0]]))


def test_logit_cbm_refuses_to_intervene_uncalibrated():
    with pytest.raises(ValueError, match="training-logit percentiles"):
        _identity_cbm("logit")(X[:, :3], Intervention(MASK, VALUES))


def test_cem_intervention_sets_the_mixing_probability():
    model = ConceptEmbeddingModel(nn.Identity(), latent_dim=4, n_concepts=3, n_classes=2, embedding_size=2)
    out = model(X)
    full = model(X, Intervention.all(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])))
    context = nn.functional.leaky_relu(torch.einsum("bh,khe->bke", X, model.context_weight) + model.context_bias)
    positive, negative = context[..., :2], context[..., 2:]
    assert torch.allclose(full.concept_embeddings[0, 0], positive[0, 0])
    assert torch.allclose(full.concept_embeddings[0, 1], negative[0, 1])
    assert torch.allclose(full.concept_embeddings[1, 1], positive[1, 1])
    p = out.concept_probs.unsqueeze(-1)
    assert torch.allclose(out.concept_embeddings, p * positive + (1 - p) * negative)
    half = model(X, Intervention.all(torch.full((2, 3), 0.5)))
    assert torch.allclose(half.concept_embeddings, (positive + negative) / 2)


def test_random_policy_gives_a_permutation_per_sample_and_masks_respect_groups():
    generator = torch.Generator().manual_seed(0)
    units = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    ranks = unit_ranks(random_policy(torch.rand(50, 5), units, generator))
    assert all(sorted(row.tolist()) == [0, 1, 2] for row in ranks)
    assert len({tuple(r.tolist()) for r in ranks}) > 1  # orders differ between samples
    for n in range(4):
        mask = units_to_concepts(ranks < n, units)
        assert (mask[:, 0] == mask[:, 1]).all() and (mask[:, 3] == mask[:, 4]).all()
        assert ((ranks < n).sum(1) == n).all()


def _state(probs: torch.Tensor, units: torch.Tensor) -> PolicyState:
    done = torch.zeros(probs.shape[0], units.shape[0], dtype=torch.bool)
    return PolicyState(None, probs, probs, units, done, None, torch.Generator().manual_seed(0))


def test_uncertainty_policy_takes_the_least_certain_concept_first():
    probs = torch.tensor([[0.9, 0.45, 0.01], [0.6, 0.99, 0.2]])
    ranks = unit_ranks(POLICIES["uncertainty"](_state(probs, torch.eye(3, dtype=torch.bool))))
    assert ranks.tolist() == [[1, 0, 2], [0, 2, 1]]


def test_uncertainty_scores_a_group_by_its_most_uncertain_concept_or_by_the_mean():
    probs = torch.tensor([[0.51, 0.99, 0.6, 0.6]])  # group a: one near-coin-flip and one sure concept
    units = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert unit_ranks(POLICIES["uncertainty"](_state(probs, units))).tolist() == [[0, 1]]  # max (the CEM authors)
    assert unit_ranks(POLICIES["uncertainty-mean"](_state(probs, units))).tolist() == [[0, 1]]
    probs = torch.tensor([[0.55, 0.999, 0.58, 0.58]])  # the mean prefers b, the max still a
    assert unit_ranks(POLICIES["uncertainty"](_state(probs, units))).tolist() == [[0, 1]]
    assert unit_ranks(POLICIES["uncertainty-mean"](_state(probs, units))).tolist() == [[1, 0]]


@pytest.mark.parametrize("competence", [0.0, 0.25, 0.5, 1.0])
def test_competence_flips_exactly_the_requested_fraction_of_intervened_concepts(competence):
    generator = torch.Generator().manual_seed(1)
    c = torch.randint(0, 2, (200, 8)).float()
    mask = torch.zeros(200, 8, dtype=torch.bool)
    mask[:, :4] = True
    mask[100:, 4:] = True  # half the samples intervene on 8 concepts
    values = with_competence(mask, c, competence, generator=generator)
    wrong = values != c
    assert not (wrong & ~mask).any()
    assert torch.equal(wrong.sum(1), torch.round((1 - competence) * mask.sum(1).float()).long())


def test_competence_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"competence must lie in \[0, 1\]"):
        with_competence(MASK, VALUES, 1.5, generator=torch.Generator())


@pytest.fixture(scope="module")
def trained_cem():
    data = xor(size=1500, seed=0)
    with seeded(0):
        model = cem(in_features=2, n_concepts=2, n_classes=2, embedding_size=16)
    fit(model, data, "joint", config=TrainConfig(device="cpu", max_epochs=40, early_stopping_patience=0, intervention_prob=0.25))
    return model, data


def test_full_correct_intervention_helps_cem_and_wrong_values_hurt(trained_cem):
    model, data = trained_cem
    correct = intervention_curve(model, data.test, "random", repeats=3)
    wrong = intervention_curve(model, data.test, "random", competence=0.0, repeats=3)
    assert len(correct.accuracy_mean) == 3 and correct.units == data.info.group_names
    assert correct.accuracy_mean[-1] >= 0.995 and correct.accuracy_mean[-1] >= correct.accuracy_mean[0]
    assert wrong.accuracy_mean[-1] < 0.3 < wrong.accuracy_mean[0]
    assert wrong.name == "random@competence=0"


def test_a_user_callable_policy_is_used(trained_cem):
    model, data = trained_cem
    calls = []

    def second_concept_first(probs, units, generator):
        calls.append(units.shape)
        return torch.tensor([[0.0, 1.0]]).expand(probs.shape[0], 2)

    curve = intervention_curve(model, data.test, second_concept_first, groups=False, repeats=1)
    assert calls == [(2, 2)] and curve.policy == "second_concept_first"
    expected = Intervention(torch.tensor([[False, True]]).expand(len(data.test), 2), data.test.c)
    from conceptlab.metrics import evaluate

    assert curve.accuracy_mean[1] == pytest.approx(evaluate(model, data.test, intervention=expected)["task_accuracy"])
    with pytest.raises(ValueError, match="unknown intervention policy 'psychic'"):
        intervention_curve(model, data.test, "psychic")


def test_concept_alignment_score_separates_aligned_from_random_representations():
    generator = torch.Generator().manual_seed(0)
    c = torch.randint(0, 2, (300, 2), generator=generator).float()
    aligned = [c[:, i : i + 1] * 5 + 0.1 * torch.randn(300, 1, generator=generator) for i in range(2)]
    random = [torch.randn(300, 4, generator=generator) for _ in range(2)]
    assert concept_alignment_score(aligned, c) > 0.97
    assert concept_alignment_score(random, c) < 0.6


def test_bench_records_curves_and_cas_and_writes_plots(tmp_path, capsys):
    spec = parse_spec({
        "name": "tiny", "dataset": {"name": "xor", "size": 300}, "models": ["cbm-fuzzy", "blackbox"], "seeds": 2,
        "model": {"hidden": [16], "embedding_size": 4},
        "train": {"max_epochs": 3, "device": "cpu"},
        "evaluation": {"intervention_repeats": 2},
        "reference": {"concept_alignment": {"cbm-fuzzy": 99.92}},
    })
    store = run_grid([spec], tmp_path, workers=1, progress=False)
    fuzzy = next(r for r in store.records() if r["model"] == "cbm-fuzzy")
    assert set(fuzzy["interventions"]) == {"random", "uncertainty", "random@competence=0", "uncertainty@competence=0"}
    assert all(len(curve) == 3 for curve in fuzzy["interventions"].values())
    assert 0 <= fuzzy["concept_alignment"] <= 1
    blackbox = next(r for r in store.records() if r["model"] == "blackbox")
    assert blackbox["interventions"] is None and blackbox["concept_alignment"] is not None
    markdown = write_reports(store.records(), [spec], tmp_path)
    assert "99.92" in markdown and "| cbm-fuzzy | random |" in markdown
    assert (tmp_path / "interventions.png").read_bytes()[:8] == PNG

    (checkpoint,) = (tmp_path / "checkpoints").glob("tiny-cbm-fuzzy-seed0-*.pt")
    assert cli.main(["intervene", str(checkpoint), "--policy", "uncertainty", "--competence", "1", "0",
                     "--out", str(tmp_path / "iv")]) == 0
    assert "uncertainty@competence=0" in capsys.readouterr().out
    assert (tmp_path / "iv" / "interventions-uncertainty.png").read_bytes()[:8] == PNG


def test_curve_plot_is_a_png(trained_cem, tmp_path):
    model, data = trained_cem
    curve_plot([intervention_curve(model, data.test, repeats=1)], tmp_path / "c.png", title="xor cem")
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG


def _total_distance(points, medoids):
    return float(np.min(np.linalg.norm(points[:, None] - points[list(medoids)][None], axis=-1), axis=1).sum())


def test_kmedoids_finds_the_brute_force_medoids_on_small_separated_data():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    points = np.concatenate([centre + 0.4 * rng.standard_normal((4, 2)) for centre in centres])
    labels, medoids = kmedoids_clusters(points, 3)
    best = min(itertools.combinations(range(len(points)), 3), key=lambda m: _total_distance(points, m))
    assert sorted(medoids.tolist()) == sorted(best)
    assert len(set(labels[:4])) == len(set(labels[4:8])) == len(set(labels[8:])) == 1


def test_every_kmedoids_medoid_is_the_brute_force_medoid_of_its_cluster():
    """The alternating algorithm's fixed point, checked by brute force on unstructured data."""
    points = np.random.default_rng(1).standard_normal((40, 3))
    labels, medoids = kmedoids_clusters(points, 5)
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    assert (labels == np.argmin(distances[:, medoids], axis=1)).all()  # every point with its nearest medoid
    for cluster, medoid in enumerate(medoids):
        members = np.flatnonzero(labels == cluster)
        costs = distances[np.ix_(members, members)].sum(1)
        assert costs[members.tolist().index(medoid)] == pytest.approx(costs.min())


def test_cas_with_kmedoids_and_with_kmeans_agree_on_clear_representations():
    generator = torch.Generator().manual_seed(0)
    c = (torch.rand(300, 3, generator=generator) < 0.5).float()
    aligned = [(2 * c[:, i : i + 1] - 1) + 0.05 * torch.randn(300, 4, generator=generator) for i in range(3)]
    noise = [torch.randn(300, 4, generator=generator) for _ in range(3)]
    for reps, low, high in ((aligned, 0.97, 1.0 + 1e-9), (noise, 0.0, 0.6)):
        medoids = concept_alignment_score(reps, c, clustering="kmedoids")
        means = concept_alignment_score(reps, c, clustering="kmeans")
        assert low < medoids <= high and low < means <= high


def test_kmedoids_cas_separates_representations_with_two_distinct_values():
    """A Bool-CBM's unit takes two values: the start must not put two medoids on one of them."""
    c = (torch.rand(400, 2, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    hard = [c[:, i : i + 1].clone() for i in range(2)]
    assert concept_alignment_score(hard, c, clustering="kmedoids") > 0.99
