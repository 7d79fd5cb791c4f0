"""The planted benchmarks' own rules: the dev / held-out split, the selection rules fixed before
tuning, and the rates they report, on records whose answers are known."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cce_transfer  # noqa: E402
import planted  # noqa: E402
import tcav_causal  # noqa: E402


def test_no_edit_is_planted_in_both_splits():
    assert set(planted.DEV_EDITS).isdisjoint(planted.HELD_OUT_EDITS)
    assert set(planted.DEV_EDITS) | set(planted.HELD_OUT_EDITS) == set(planted.BANK_EDITS)
    for part in (planted.DEV_EDITS, planted.HELD_OUT_EDITS):
        assert any(e in planted.FAINT for e in part) and len([e for e in part if e not in planted.FAINT]) == 7
        for family in ("cnn", "mlp"):
            assert {e for s in tcav_causal.draw_scenarios(family, part, 10, 6, 0) for e in (s.positive, s.negative, s.unused)} <= set(part)
        assert {s.edit for s in cce_transfer.scenarios("images", part, 10, 0)} == set(part)


def _row(alpha, p3, support, family="features", k=10):
    return {"family": family, "k": k, "method": "cce", "alpha": alpha, "precision_at_3": p3, "median_support": support}


def test_the_cce_rule_takes_the_best_worst_case_among_sparse_enough_settings():
    rows = [_row(0.01, 0.99, 30), _row(0.01, 0.98, 30, k=48),   # best P@3, but names too many concepts
            _row(0.1, 0.90, 4), _row(0.1, 0.70, 4, k=48),       # worst case 0.70
            _row(0.3, 0.85, 2), _row(0.3, 0.80, 2, k=48)]       # worst case 0.80: chosen
    assert cce_transfer.choose_alpha(rows) == 0.3


def _case(effect, score, p, std=1.0, solver="svm", family="cnn"):
    return {"family": family, "solver": solver, "effect": effect, "logit_std": std, "score": score,
            "p_paper": p, "p_reference": p}


def test_tcav_rates_count_signs_power_and_false_positives_as_stated():
    records = [_case(2.0, 0.9, 0.01),    # sizeable, right side, significant: found
               _case(-1.0, 0.8, 0.01),   # sizeable, wrong side, significant: not found, wrong sign
               _case(0.5, 0.6, 0.5),     # sizeable, right side, not significant
               _case(0.1, 0.9, 0.01),    # between the thresholds: left out of sign, power and FPR
               _case(0.01, 0.7, 0.01),   # no effect, flagged: a false positive
               _case(-0.02, 0.4, 0.3)]   # no effect, not flagged
    rates = tcav_causal.rates(records, "paper")
    assert (rates["sizeable"], rates["none"]) == (3, 2)
    assert rates["sign_accuracy"] == pytest.approx(2 / 3) and rates["power"] == pytest.approx(1 / 3)
    assert rates["false_positives"] == pytest.approx(1 / 2)
    assert rates["balanced"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_planting_puts_the_unused_edit_on_half_of_every_class():
    y = torch.arange(2000) % 4
    scenario = tcav_causal.Scenario("cnn", 0, target=1, other=2, positive="P", negative="N", unused="U")
    seen = {}
    tcav_causal.plant(torch.zeros(2000), y, scenario, lambda name, rows: seen.setdefault(name, rows) * 0.0,
                      torch.Generator().manual_seed(0))
    carries_unused = torch.zeros(2000, dtype=torch.bool)
    for name, rows in seen.items():
        parts = name.split("+")
        assert ("P" in parts) == bool((y[rows] == 1).all()) and ("N" in parts) == bool((y[rows] == 2).all())
        if "U" in parts:
            carries_unused[rows] = True
    for c in range(4):  # U is independent of the class: about half of each
        assert 0.4 < carries_unused[y == c].float().mean() < 0.6


def test_random_sets_and_null_concepts_are_disjoint_unedited_draws():
    x = torch.arange(1000.0)[:, None]
    draws = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    randoms, nulls = tcav_causal.unedited_sets(x, draws)
    rows = [set(t[:, 0].long().tolist()) for t in (*randoms.values(), *nulls.values())]
    assert len(randoms) == tcav_causal.N_RANDOM and set(nulls) == set(tcav_causal.NULLS)
    assert all(len(r) == tcav_causal.N_EXAMPLES for r in rows)
    assert len(set().union(*rows)) == sum(map(len, rows))  # pairwise disjoint
    assert not set().union(*rows) & set(draws[: 3 * tcav_causal.N_EXAMPLES].tolist())  # not the edited concepts' examples
