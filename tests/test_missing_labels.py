"""Partial concept supervision: a missing concept label (NaN) adds no loss and no gradient, metrics
skip it, an intervention on it is refused, and the bench can hide labels or whole concepts."""

import math

import pytest
import torch

from conceptlab.datasets import ConceptDataset, ConceptInfo, drop_concepts, hide_labels, load_dataset
from conceptlab.metrics import concept_accuracy, concept_auc
from conceptlab.models import Intervention, cbm, cem, intcem
from conceptlab.settings import SettingsError
from conceptlab.training import TrainConfig, concept_loss, concept_pos_weight, fit
from tests.noisy_concepts import noisy_concepts


def test_a_missing_label_adds_no_loss_and_exactly_zero_gradient():
    logits = torch.randn(6, 3, requires_grad=True)
    c = (torch.rand(6, 3) > 0.5).float()
    missing = torch.zeros(6, 3, dtype=torch.bool)
    missing[0, 1] = missing[3, 0] = missing[5, 2] = True
    loss = concept_loss(logits, c.masked_fill(missing, float("nan")))
    loss.backward()
    assert torch.all(logits.grad[missing] == 0.0)  # exactly zero, not small
    assert torch.all(logits.grad[~missing] != 0.0)
    known = torch.nn.functional.binary_cross_entropy_with_logits(logits[~missing], c[~missing])
    assert torch.allclose(loss, known)  # the mean over the known labels only


def test_a_batch_without_any_known_label_gives_zero_loss_not_nan():
    logits = torch.randn(4, 2, requires_grad=True)
    loss = concept_loss(logits, torch.full((4, 2), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0.0)


def test_class_balancing_counts_known_labels_only():
    nan = float("nan")
    c = torch.tensor([[1.0, nan], [0.0, 1.0], [nan, 0.0], [0.0, 0.0]])
    assert concept_pos_weight(c).tolist() == [2.0, 2.0]  # 1 vs 2 known, and 1 vs 2 known


def test_datasets_accept_missing_concept_labels_and_still_refuse_bad_ones():
    info = ConceptInfo(("a", "b"), ("no", "yes"))
    c = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    assert torch.isnan(ConceptDataset(torch.randn(2, 3), c, torch.tensor([0, 1]), info).c[0, 1])
    with pytest.raises(ValueError, match="NaN marks a missing label"):
        ConceptDataset(torch.randn(2, 3), torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([0, 1]), info)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ConceptDataset(torch.tensor([[float("nan")] * 3] * 2), c, torch.tensor([0, 1]), info)


def test_metrics_skip_missing_labels():
    nan = float("nan")
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.4], [0.1, 0.3]])
    c = torch.tensor([[1.0, nan], [0.0, 1.0], [nan, 0.0], [1.0, 0.0]])
    known = ~torch.isnan(c)
    assert concept_accuracy(probs, c) == pytest.approx(float(((probs > 0.5) == (c > 0.5))[known].float().mean()))
    assert concept_auc(probs, c) == pytest.approx((0.5 + 1.0) / 2)  # concept 0: 1 of 2 pairs; concept 1: 2 of 2


def test_an_intervention_on_a_missing_label_is_refused_and_elsewhere_a_missing_label_is_never_read():
    model = cbm(in_features=3, n_concepts=2, n_classes=2, hidden=(8,)).eval()
    x = torch.randn(2, 3)
    values = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    with pytest.raises(ValueError, match="1 intervened concept label"):
        Intervention(torch.ones(2, 2, dtype=torch.bool), values)
    mask = torch.tensor([[True, False], [True, True]])
    with_nan = model(x, Intervention(mask, values)).task_logits
    with_one = model(x, Intervention(mask, values.nan_to_num(1.0))).task_logits
    assert torch.equal(with_nan, with_one) and torch.isfinite(with_nan).all()


def _half_missing(seed: int = 0):
    data = noisy_concepts(n=800, seed=seed)
    return hide_labels(data, 0.5, seed)


def test_joint_training_learns_from_the_known_labels_and_randint_never_corrects_a_missing_one():
    data = _half_missing()
    assert abs(float(torch.isnan(data.train.c).float().mean()) - 0.5) < 1e-3 and not torch.isnan(data.test.c).any()
    model = cem(in_features=20, n_concepts=12, n_classes=4, embedding_size=4, latent_dim=16, hidden=(16,))
    report = fit(model, data, "joint", config=TrainConfig(max_epochs=3, intervention_prob=1.0))  # RandInt on every known label
    losses = report.history["joint"]["train_loss"]
    assert all(math.isfinite(v) and v > 0 for v in losses)  # the concept term ran, and no NaN reached the loss


@pytest.mark.parametrize("recipe, build", [
    ("independent", lambda: cbm(in_features=20, n_concepts=12, n_classes=4, hidden=(8,))),
    ("intcem", lambda: intcem(in_features=20, n_concepts=12, n_classes=4, embedding_size=4, latent_dim=8, hidden=(8,))),
])
def test_recipes_that_read_every_true_label_refuse_missing_ones_and_say_what_works(recipe, build):
    with pytest.raises(ValueError, match=f"the {recipe} recipe .* use the joint or sequential recipe"):
        fit(build(), _half_missing(), recipe, config=TrainConfig(max_epochs=1))


def test_an_intervention_curve_needs_every_label_of_its_data():
    from conceptlab.interventions import intervention_curve

    data = _half_missing()
    model = cbm(in_features=20, n_concepts=12, n_classes=4, hidden=(8,))
    with pytest.raises(ValueError, match="concept label\\(s\\) of these data are missing"):
        intervention_curve(model, data.train, repeats=1)


def test_a_concept_bank_from_labels_uses_the_known_rows():
    from conceptlab.concepts import label_sets

    c = torch.tensor([[1.0], [0.0]] * 10 + [[float("nan")]] * 10)
    features = torch.arange(30.0).unsqueeze(1)
    positives, negatives = label_sets(features, c, ["a"], examples=10)["a"]
    assert len(positives) == len(negatives) == 10 and features[20:].flatten().tolist() not in (positives.tolist(),)
    assert set(positives.flatten().tolist()) | set(negatives.flatten().tolist()) <= set(range(20))


def test_hidden_concepts_leave_every_split_and_their_groups():
    data = noisy_concepts(n=200)
    reduced = drop_concepts(data, ["c0", "c4"])
    assert reduced.info.n_concepts == 10 and "c0" not in reduced.info.concept_names
    assert reduced.info.concept_groups["g0"] == (reduced.info.concept_names.index("c8"),)  # g0 was (c0, c4, c8)
    assert torch.equal(reduced.test.c, data.test.c[:, [i for i in range(12) if i not in (0, 4)]])
    with pytest.raises(ValueError, match="not concepts of these data"):
        drop_concepts(data, ["nope"])


def test_the_bench_hides_labels_and_concepts_from_the_dataset_block_and_refuses_models_that_cannot_train():
    from conceptlab.bench import parse_spec
    from conceptlab.settings import SettingsError

    splits = load_dataset({"name": "trig", "size": 300, "missing_concept_labels": 0.5, "hidden_concepts": ["z > 0"]}, seed=3)
    assert splits.info.concept_names == ("a > 0", "b > 0")
    assert float(torch.isnan(splits.train.c).float().mean()) == 0.5 and not torch.isnan(splits.test.c).any()
    again = load_dataset({"name": "trig", "size": 300, "missing_concept_labels": 0.5, "hidden_concepts": ["z > 0"]}, seed=3)
    assert torch.equal(torch.isnan(again.train.c), torch.isnan(splits.train.c))  # the same labels hidden on a rerun
    full = load_dataset({"name": "trig", "size": 300}, seed=3)
    assert torch.equal(full.train.x, splits.train.x)  # the data themselves are unchanged
    with pytest.raises(SettingsError, match="models: cbm-ind, intcem train on every true concept label"):
        parse_spec({"dataset": {"name": "xor", "missing_concept_labels": 0.5}}, "x")
    with pytest.raises(SettingsError, match="dataset.missing_concept_labels"):
        parse_spec({"dataset": {"name": "xor", "missing_concept_labels": 1.0}}, "x")


def test_a_bench_run_with_half_the_labels_missing_trains_and_evaluates_on_complete_test_labels(tmp_path):
    from conceptlab.bench import parse_spec, run_grid

    spec = parse_spec({"dataset": {"name": "xor", "size": 400, "missing_concept_labels": 0.5}, "models": ["cbm-logit", "cem"],
                       "seeds": 1, "train": {"max_epochs": 3}, "evaluation": {"intervention_policies": ["random"],
                                                                              "intervention_repeats": 1}}, "half")
    records = run_grid([spec], tmp_path, workers=1, progress=False).records()
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert all(0.0 <= r["concept_auc"] <= 1.0 and r["interventions"] and 0.0 <= r["val_concept_auc"] <= 1.0 for r in records)


def test_policies_fitted_on_splits_with_missing_labels_learn_from_the_rows_whose_labels_are_known():
    """The bench fits data-driven policies on the training and validation splits, which may miss
    labels: every built-in policy fits and orders, reading only rows with every label known."""
    from conceptlab.interventions import POLICIES, fit_policy, intervention_curve

    data = load_dataset({"name": "trig", "size": 600, "missing_concept_labels": 0.5}, seed=0)
    model = cbm(in_features=7, n_concepts=3, n_classes=2, hidden=(8,))
    for name in POLICIES:
        if name.startswith("learned") or POLICIES[name].unmet_needs(data.info, model):
            continue
        curve = intervention_curve(model, data.test, fit_policy(name, model, train=data.train, val=data.val), repeats=1)
        assert all(0.0 <= a <= 1.0 for a in curve.accuracy_mean), name


def test_kept_concept_groups_draws_one_subset_of_whole_groups_for_every_run():
    """The CEM authors' CUB-Incomplete rule: ceil(fraction x G) groups from numpy's permutation under seed 42."""
    import numpy as np

    from conceptlab.datasets import keep_concept_groups, load_dataset, mixed_concepts

    data = mixed_concepts(size=200)
    kept = keep_concept_groups(data, 0.5)  # ceil(0.5 x 3) = 2 of colour, size, striped
    groups = list(data.info.concept_groups)
    expected = [groups[g] for g in sorted(np.random.RandomState(42).permutation(3)[:2])]
    assert list(kept.info.group_names) == expected
    assert kept.info.task == "multilabel"  # what drops concepts keeps the task and the remaining types
    assert kept.info.categorical == tuple(g for g in ("colour",) if g in expected)
    assert kept.info.continuous == tuple(g for g in ("size",) if g in expected)
    for seed in (0, 3):  # the run's seed changes the split, never the concept set
        assert load_dataset({"name": "mixed", "size": 200, "kept_concept_groups": 0.5}, seed=seed).info == kept.info
    with pytest.raises(SettingsError, match="kept_concept_groups"):
        load_dataset({"name": "xor", "kept_concept_groups": 0.0}, seed=0)
