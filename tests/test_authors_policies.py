"""The CEM authors' policy semantics: CooP tuned on validation, the oracle scored by single-concept
effects, IntCEM's policy sampled from its softmax, the global validation orders, behavioural
cloning. Each is checked against a brute-force computation of what it promises."""

import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from conceptlab.interventions import POLICIES, PolicyState, coop_policy, fit_policy, intervention_curve, unit_ranks
from conceptlab.interventions.curves import InterventionCurve
from conceptlab.interventions.fitted import COOP_GRID
from conceptlab.metrics import task_accuracy
from conceptlab.models import Intervention
from conceptlab.models.base import decode_all, encode_all


@pytest.fixture(scope="module")
def models(small_models):
    return small_models


@pytest.mark.parametrize("name", ["coop", "global-val-error", "global-val-improvement", "behavioural-cloning"])
def test_policies_that_learn_from_data_refuse_to_run_unfitted(noisy, models, name):
    with pytest.raises(ValueError, match=f"pass fit_policy\\('{name}'"):
        intervention_curve(models["cbm"], noisy.test, name, repeats=1)
    with pytest.raises(ValueError, match="training and validation splits: pass train= and val="):
        fit_policy(name, models["cbm"], val=noisy.val)
    assert fit_policy("random", models["cbm"]) is POLICIES["random"]  # nothing to fit


def test_coop_tries_each_weight_ratio_once_and_keeps_the_best_on_validation(noisy, models):
    model = models["cem"]
    tuned = fit_policy("coop", model, train=noisy.train, val=noisy.val, groups=True)
    n_units = noisy.info.group_matrix().shape[0]
    counts = sorted({math.ceil(f * n_units) for f in (0.01, 0.05, 0.25, 0.5)})
    scores, ratios = {}, set()
    for alpha in COOP_GRID:
        for beta in COOP_GRID:
            if alpha / beta in ratios:
                continue
            ratios.add(alpha / beta)
            curve = intervention_curve(model, noisy.val, coop_policy(concept_weight=alpha, label_weight=beta), groups=True, repeats=1)
            scores[(alpha, beta)] = sum(curve.accuracy_mean[k] * (1 - k / n_units) for k in counts)
    assert len(scores) == 7  # 16 pairs, 7 distinct ratios
    best = max(scores.values())
    chosen = (tuned.settings["concept_weight"], tuned.settings["label_weight"])
    assert scores[chosen] == best and next(p for p, v in scores.items() if v == best) == chosen  # the first best, as theirs
    assert tuned.name == "coop" and tuned.sequential


def test_the_authors_oracle_scores_a_group_by_the_mean_of_single_concept_corrections(noisy, models):
    model = models["cem"]
    x, c, y = noisy.test.x[:40], noisy.test.c[:40], noisy.test.y[:40]
    units = noisy.info.group_matrix()
    done_concepts = torch.zeros(40, 12, dtype=torch.bool)
    done_concepts[:, units[0]] = True  # group 0 corrected already
    intervention = Intervention(done_concepts, c)
    with torch.no_grad():
        codes = model.encode(x)
        state = PolicyState(model, codes, model.decode(codes).concept_probs, units,
                            torch.zeros(40, units.shape[0], dtype=torch.bool), intervention, torch.Generator(), c, y)
        scores = POLICIES["oracle-mean"](state)
        single = torch.zeros(40, 12)
        for i in range(12):  # brute force: decode once per concept
            mask = done_concepts.clone()
            mask[:, i] = True
            probs = model.decode(codes, Intervention(mask, c)).task_logits.softmax(-1)
            single[:, i] = probs.gather(1, y.view(-1, 1)).squeeze(1)
        single[done_concepts] = 0.0
    expected = torch.stack([single[:, units[g]].mean(1) for g in range(units.shape[0])], dim=1)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_the_sampled_learned_policy_draws_first_units_in_proportion_to_its_softmax(noisy, models):
    model = models["intcem"]
    x = noisy.test.x[:1].expand(4000, -1)
    units = noisy.info.group_matrix()
    with torch.no_grad():
        codes = model.encode(x)
        state = PolicyState(model, codes, model.decode(codes).concept_probs, units,
                            torch.zeros(4000, units.shape[0], dtype=torch.bool), None, torch.Generator().manual_seed(0))
        first = unit_ranks(POLICIES["learned-sample"](state)).argmin(1)
        softmax = model.unit_scores(codes[:1]).softmax(-1)[0]
    frequency = torch.bincount(first, minlength=units.shape[0]).float() / 4000
    assert torch.allclose(frequency, softmax, atol=0.03), (frequency, softmax)
    assert not POLICIES["learned-sample"].sequential and POLICIES["learned-sample"].stochastic


def test_global_validation_orders_follow_their_validation_statistics(noisy, models):
    model = models["cbm"]
    error = fit_policy("global-val-error", model, train=noisy.train, val=noisy.val, groups=False)
    improvement = fit_policy("global-val-improvement", model, train=noisy.train, val=noisy.val, groups=False)
    with torch.no_grad():
        probs = decode_all(model, encode_all(model, noisy.val.x)).concept_probs
        codes = encode_all(model, noisy.val.x)
    labels, hard = noisy.val.c >= 0.5, probs >= 0.5
    aucs = torch.tensor([roc_auc_score(labels[:, i], hard[:, i]) for i in range(12)])
    gains = []
    for i in range(12):
        mask = torch.zeros(len(noisy.val), 12, dtype=torch.bool)
        mask[:, i] = True
        gains.append(task_accuracy(decode_all(model, codes, Intervention(mask, noisy.val.c)).task_logits, noisy.val.y))
    state = PolicyState(model, codes[:3], probs[:3], torch.eye(12, dtype=torch.bool), torch.zeros(3, 12, dtype=torch.bool),
                        None, torch.Generator())
    assert torch.equal(error(state)[0].argsort(descending=True, stable=True),
                       (1 / (aucs - 0.5 + 1e-8).abs()).argsort(descending=True, stable=True))
    assert torch.equal(improvement(state)[0].argsort(descending=True, stable=True),
                       torch.tensor(gains).argsort(descending=True, stable=True))
    assert (error(state) == error(state)[0]).all()  # one order for every sample


def test_behavioural_cloning_imitates_the_oracle_and_beats_random(noisy, models):
    model = models["cem"]
    cloned = fit_policy("behavioural-cloning", model, train=noisy.train, val=noisy.val, groups=True)
    assert cloned.settings["examples"] == 5000 // 256 * 256  # the authors' dataset size, in batches of 256
    assert cloned.settings["training_agreement"] > 1 / 4 + 0.2  # far above choosing one of 4 groups at random
    random = intervention_curve(model, noisy.test, "random", groups=True, repeats=3)
    curve = intervention_curve(model, noisy.test, cloned, groups=True, repeats=1)
    assert curve.auc > random.auc


def test_the_early_weighted_summary_is_the_authors_weighting_over_every_count():
    curve = InterventionCurve("p", 1.0, ("a", "b"), (0.5, 0.8, 1.0), (0.0, 0.0, 0.0))
    assert curve.early_weighted_accuracy == pytest.approx((0.5 * 1 + 0.8 * 0.5 + 1.0 * 0) / 1.5)
