from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from conceptlab.concepts.activations import capture_activations
from conceptlab.concepts.cav import CAVBank
from conceptlab.concepts.tcav import layer_gradients, significance, tcav_scores

D = 64


def _sets(seed=0):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(D, generator=g)
    direction /= direction.norm()
    sets = {f"concept{i}": torch.randn(50, D, generator=g) + 6 * direction for i in range(2)}
    sets |= {f"random{r}": torch.randn(50, D, generator=g) for r in range(3)}
    return sets, direction


def test_the_svm_and_sgd_estimators_agree():
    sets, direction = _sets()
    pairs = [(c, r) for c in ("concept0", "concept1") for r in ("random0", "random1", "random2")]
    fast = CAVBank("svm").fit(sets, pairs)
    reference = CAVBank("sgd").fit(sets, pairs)
    assert torch.allclose(fast.directions_.norm(dim=1), torch.ones(len(pairs)))
    assert ((fast.directions_ * reference.directions_).sum(1) > 0.7).all()
    assert (fast.directions_ @ direction > 0.6).all()
    assert (fast.accuracy_ >= 0.9).all() and (reference.accuracy_ >= 0.75).all()
    assert (fast.positive_mean_ > 0).all() and (fast.negative_mean_ < 0).all()
    assert (fast.margin_max_ >= fast.positive_mean_).all() and (fast.margin_min_ <= fast.negative_mean_).all()
    z = sets["concept0"][:5]
    assert torch.allclose(fast.decision_function(z)[:, 0], z @ fast.directions_[0] + fast.intercepts_[0])


@pytest.mark.parametrize("solver", ["svm", "sgd", "logistic", "mean-difference"])
def test_every_estimator_finds_the_planted_direction(solver):
    sets, direction = _sets()
    pairs = [("concept0", "random0"), ("concept1", "random1")]
    bank = CAVBank(solver).fit(sets, pairs)
    assert torch.allclose(bank.directions_.norm(dim=1), torch.ones(2))
    assert (bank.directions_ @ direction > 0.6).all() and (bank.accuracy_ >= 0.9).all()
    assert (bank.positive_mean_ > 0).all() and (bank.negative_mean_ < 0).all()


def test_the_mean_difference_and_logistic_estimators_are_what_they_say():
    from sklearn.linear_model import LogisticRegression

    sets, _ = _sets(3)
    pair = [("concept0", "random0")]
    mean = CAVBank("mean-difference", test_fraction=0.0).fit(sets, pair)
    positive, negative = sets["concept0"].mean(0), sets["random0"].mean(0)
    expected = (positive - negative) / (positive - negative).norm()
    assert torch.allclose(mean.directions_[0], expected, atol=1e-6)
    midpoint = (positive + negative) / 2
    assert abs(float(mean.decision_function(midpoint[None])[0, 0])) < 1e-4  # the boundary passes through the midpoint
    x = torch.cat([sets["concept0"], sets["random0"]]).double().numpy()
    y = np.r_[np.ones(50), np.zeros(50)]
    reference = LogisticRegression(C=1 / (0.01 * 100), max_iter=10_000, tol=1e-10).fit(x, y)  # run to convergence

    def objective(w, b):  # mean log loss + alpha / 2 ||w||^2, as the bank states it
        return np.mean(np.log1p(np.exp(-(2 * y - 1) * (x @ w + b)))) + 0.01 / 2 * w @ w

    optimum = objective(reference.coef_[0], reference.intercept_[0])
    for tol, slack in ((1e-3, 1e-3), (1e-8, 1e-7)):
        logistic = CAVBank("logistic", alpha=0.01, test_fraction=0.0, tol=tol).fit(sets, pair)
        w = (logistic.directions_[0] * logistic.norms_[0]).double().numpy()
        assert objective(w, float(logistic.intercepts_[0] * logistic.norms_[0])) <= optimum * (1 + slack)
    reference_direction = torch.as_tensor(reference.coef_[0] / np.linalg.norm(reference.coef_[0]), dtype=torch.float32)
    assert torch.allclose(logistic.directions_[0], reference_direction, atol=1e-5)
    assert 0 < int(logistic.n_iter_[0]) < 20 and torch.isnan(logistic.duality_gap_).all()  # no certificate claimed


def test_logistic_cavs_are_batched_like_single_fits():
    sets, _ = _sets(4)
    pairs = [(c, r) for c in ("concept0", "concept1") for r in ("random0", "random1", "random2")]
    together = CAVBank("logistic").fit(sets, pairs)
    for k, pair in enumerate(pairs):
        alone = CAVBank("logistic").fit(sets, [pair])
        assert torch.allclose(together.directions_[k], alone.directions_[0], atol=1e-5)
        assert torch.allclose(together.intercepts_[k], alone.intercepts_[0], atol=1e-4)


def test_bank_input_errors():
    sets, _ = _sets()
    with pytest.raises(ValueError, match=r"not given"):
        CAVBank().fit(sets, [("concept0", "stripes")])
    with pytest.raises(ValueError, match="one shape"):
        CAVBank().fit({"a": torch.randn(4, 3), "b": torch.randn(4, 5)}, [("a", "b")])
    unfitted = CAVBank("liblinear", alpha=0.5)  # scikit-learn style: __init__ stores, fit validates
    assert unfitted.get_params() == {"solver": "liblinear", "alpha": 0.5, "max_iter": None, "tol": 1e-3,
                                     "test_fraction": 0.33, "seed": 0, "cache_dir": None}
    with pytest.raises(ValueError, match="solver must be"):
        unfitted.fit(sets, [("concept0", "random0")])
    with pytest.raises(TypeError):
        CAVBank("svm", 0.5)  # options are keyword-only


def _planted_model(u: torch.Tensor) -> nn.Module:
    """Class 1's logit is u . h for the hidden activations h: the concept 'u' drives class 1."""
    model = nn.Sequential(OrderedDict(pre=nn.Linear(D, D), hidden=nn.ReLU(), head=nn.Linear(D, 3)))
    with torch.no_grad():
        model.pre.weight.copy_(torch.eye(D))
        model.pre.bias.fill_(5.0)  # keep the ReLU active
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[1] = u
    return model


def test_planted_concept_scores_high_and_is_significant():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(D, generator=g)
    u /= u.norm()
    model = _planted_model(u)
    concept = torch.randn(40, D, generator=g) + 3 * u
    randoms = {f"random{r}": torch.randn(40, D, generator=g) for r in range(5)}
    acts = {k: capture_activations(model, ["hidden"], v)["hidden"] for k, v in {"concept": concept, **randoms}.items()}
    pairs = [("concept", r) for r in randoms]
    bank = CAVBank().fit(acts, pairs)
    grads = layer_gradients(model, "hidden", torch.randn(30, D, generator=g), target=1)
    scores, magnitude = tcav_scores(grads, bank)
    assert (scores >= 0.9).all() and (magnitude >= 0.9).all()
    assert significance(scores, n_tests=1)["significant"]
    loss_scores, _ = tcav_scores(layer_gradients(model, "hidden", torch.randn(30, D, generator=g), target=1, objective="loss"), bank, "loss")
    assert (loss_scores >= 0.9).all()  # the loss objective counts negative derivatives


def test_random_concepts_are_rarely_significant_under_the_reference_test():
    """A random 'concept' against 6 random sets, its scores tested against random-vs-random scores.

    (The paper's one-sample test flags such concepts more often, 2-6 of 20 here: all CAVs of one
    concept share its examples, so their scores move together.)
    """
    significant = 0
    for seed in range(20):
        g = torch.Generator().manual_seed(100 + seed)
        model = nn.Sequential(OrderedDict(hidden=nn.Linear(D, 32), act=nn.Tanh(), out=nn.Linear(32, 3)))
        torch.manual_seed(seed)
        for p in model.parameters():
            nn.init.normal_(p, std=0.5)
        sets = {f"r{r}": torch.randn(100, D, generator=g) for r in range(12)}
        acts = {k: capture_activations(model, ["hidden"], v)["hidden"] for k, v in sets.items()}
        pairs = [("r0", f"r{r}") for r in range(1, 7)] + [(f"r{r}", f"r{r + 5}") for r in range(1, 7)]
        scores, _ = tcav_scores(layer_gradients(model, "hidden", torch.randn(40, D, generator=g), target=0), CAVBank().fit(acts, pairs))
        significant += significance(scores[:6], scores[6:])["significant_reference"]
    assert significant <= 2


def test_significance_matches_scipy_on_fixed_numbers():
    from scipy import stats

    concept = np.array([0.9, 0.8, 0.85, 0.95, 0.7])
    random = np.array([0.5, 0.4, 0.6, 0.55, 0.45])
    result = significance(concept, random, n_tests=3)
    assert result["p_paper"] == pytest.approx(min(1.0, 3 * stats.ttest_1samp(concept, 0.5).pvalue))
    assert result["p_reference"] == pytest.approx(stats.ttest_ind(concept, random).pvalue)
    assert result["significant"] and result["significant_reference"]
    assert not significance(np.array([0.4, 0.6, 0.5, 0.55]))["significant"]
    with pytest.raises(ValueError, match="at least 2"):
        significance(np.array([0.9]))


def test_significance_without_spread_is_decided_without_scipy_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's precision-loss warning would fail the test
        same = significance(np.ones(5), np.ones(5))
        apart = significance(np.ones(5), np.full(5, 0.5))
        nearly = significance(np.array([1.0, 1.0, 1.0, 1.0, 1.0 - 1e-12]), np.full(5, 0.5))
    assert same["p_paper"] == 0.0 and same["p_reference"] == 1.0 and not same["significant_reference"]
    assert apart["p_reference"] == 0.0 and apart["significant_reference"]
    assert nearly["significant"]


def test_run_tcav_writes_records_csv_and_plot(tmp_path):
    from conceptlab.concepts import run_tcav, tcav_plot, write_tcav_csv

    g = torch.Generator().manual_seed(3)
    u = torch.randn(D, generator=g)
    u /= u.norm()
    model = _planted_model(u)
    concepts = {"planted": torch.randn(40, D, generator=g) + 3 * u, "noise": torch.randn(40, D, generator=g)}
    randoms = {f"random{r}": torch.randn(40, D, generator=g) for r in range(5)}
    records = run_tcav(model, ["hidden", "pre"], concepts, randoms=randoms, inputs=torch.randn(30, D, generator=g), target=1)
    assert len(records) == 4
    planted = next(r for r in records if r["concept"] == "planted" and r["layer"] == "hidden")
    assert planted["score_mean"] >= 0.9 and planted["significant"] and planted["cav_accuracy"] >= 0.75
    write_tcav_csv(records, tmp_path / "tcav.csv")
    assert (tmp_path / "tcav.csv").read_text().startswith("concept,layer,class,class_name,score_mean")
    tcav_plot(records, tmp_path / "tcav.png")
    assert (tmp_path / "tcav.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least 2 random sets"):
        run_tcav(model, ["hidden"], concepts, randoms={"random0": randoms["random0"]}, inputs=torch.randn(3, D), target=1)


@pytest.mark.parametrize("solver", ["svm", "sgd", "logistic", "mean-difference"])
def test_run_tcav_with_each_estimator_finds_the_planted_concept(solver):
    from conceptlab.concepts import run_tcav

    g = torch.Generator().manual_seed(3)
    u = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0)
    concepts = {"planted": torch.randn(40, D, generator=g) + 3 * u}
    randoms = {f"random{r}": torch.randn(40, D, generator=g) for r in range(5)}
    (record,) = run_tcav(_planted_model(u), ["hidden"], concepts, randoms=randoms, inputs=torch.randn(30, D, generator=g), target=1, solver=solver)
    assert record["score_mean"] >= 0.9 and record["significant"] and record["cav_accuracy"] > 0.6  # SGD: 0.62 here


def test_the_cli_offers_every_estimator():
    from conceptlab import cli
    from conceptlab.concepts.cav import SOLVERS
    from conceptlab.concepts.tcav import TCAV_ESTIMATOR

    assert cli.CAV_ESTIMATORS == SOLVERS
    assert cli.build_parser().parse_args(["tcav", "--model", "m", "--layers", "l", "--concepts", "c", "--random", "r",
                                          "--inputs", "i", "--target", "0"]).estimator == TCAV_ESTIMATOR


def test_cli_tcav_on_a_conceptlab_model_with_tensor_examples(tmp_path, capsys):
    from conceptlab import cli
    from conceptlab.datasets import ConceptInfo
    from conceptlab.models import cbm, save_model

    torch.manual_seed(0)
    model = cbm(in_features=D, n_concepts=2, n_classes=3, hidden=[16])
    save_model(model, tmp_path / "m.pt", ConceptInfo(("a", "b"), ("cat", "dog", "zebra")))
    g = torch.Generator().manual_seed(0)
    for folder, n in [("concepts/striped", 30), ("concepts/dotted", 30), ("random/r0", 30), ("random/r1", 30),
                      ("random/r2", 30), ("inputs", 20)]:
        (tmp_path / folder).mkdir(parents=True)
        torch.save(torch.randn(n, D, generator=g), tmp_path / folder / "x.pt")
    code = cli.main(["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.0,encoder.1",
                     "--concepts", str(tmp_path / "concepts"), "--random", str(tmp_path / "random"),
                     "--inputs", str(tmp_path / "inputs"), "--target", "zebra", "--out", str(tmp_path / "out")])
    assert code == 0
    assert "striped" in capsys.readouterr().out
    assert len((tmp_path / "out" / "tcav.csv").read_text().splitlines()) == 1 + 2 * 2
    assert cli.main(["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.1", "--estimator", "mean-difference",
                     "--concepts", str(tmp_path / "concepts"), "--random", str(tmp_path / "random"),
                     "--inputs", str(tmp_path / "inputs"), "--target", "zebra", "--out", str(tmp_path / "md")]) == 0
    assert len((tmp_path / "md" / "tcav.csv").read_text().splitlines()) == 1 + 2
    torch.save(torch.randn(30, D + 3), tmp_path / "concepts" / "dotted" / "x.pt")  # wrong width: a traceback before
    assert cli.main(["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.1", "--concepts", str(tmp_path / "concepts"),
                     "--random", str(tmp_path / "random"), "--inputs", str(tmp_path / "inputs"), "--target", "zebra"]) == 2
    assert f"example set 'dotted' holds examples of shape ({D + 3},), the inputs ({D},)" in capsys.readouterr().err
    torch.save(torch.randn(30, D), tmp_path / "concepts" / "dotted" / "x.pt")
    torch.save(torch.randn(20, D + 1), tmp_path / "inputs" / "x.pt")
    for folder in ("concepts/striped", "concepts/dotted", "random/r0", "random/r1", "random/r2"):
        torch.save(torch.randn(30, D + 1), tmp_path / folder / "x.pt")
    assert cli.main(["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.1", "--concepts", str(tmp_path / "concepts"),
                     "--random", str(tmp_path / "random"), "--inputs", str(tmp_path / "inputs"), "--target", "zebra"]) == 2
    assert f"the model cannot run on inputs of shape ({D + 1},)" in capsys.readouterr().err
    for folder in ("concepts/striped", "concepts/dotted", "random/r0", "random/r1", "random/r2", "inputs"):
        torch.save(torch.randn(30, D), tmp_path / folder / "x.pt")
    for level in ("nan", "0", "1.5"):
        assert cli.main(["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.1", "--alpha", level,
                         "--concepts", str(tmp_path / "concepts"), "--random", str(tmp_path / "random"),
                         "--inputs", str(tmp_path / "inputs"), "--target", "zebra", "--out", str(tmp_path / "a")]) == 2
        assert "significance level" in capsys.readouterr().err
    assert cli.main(["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.9",
                     "--concepts", str(tmp_path / "concepts"), "--random", str(tmp_path / "random"),
                     "--inputs", str(tmp_path / "inputs"), "--target", "0"]) == 2
    assert "no layer 'encoder.9'" in capsys.readouterr().err


def test_several_layers_share_one_backward_pass():
    model = _planted_model(torch.ones(D) / D**0.5)
    x = torch.randn(7, D)
    both = layer_gradients(model, ["hidden", "pre"], x, target=1, batch_size=3)
    for layer in ("hidden", "pre"):
        assert torch.allclose(both[layer], layer_gradients(model, layer, x, target=1, batch_size=5))
    directions = {layer: torch.nn.functional.normalize(torch.randn(4, both[layer].shape[1]), dim=1) for layer in both}
    projected = layer_gradients(model, ["hidden", "pre"], x, target=1, batch_size=3, directions=directions)
    for layer in ("hidden", "pre"):  # per-batch projection: (N, P) derivatives instead of (N, D) gradients
        assert projected[layer].shape == (7, 4)
        assert torch.allclose(projected[layer], both[layer] @ directions[layer].T, atol=1e-6)


def test_cav_cache_hits_and_retrains_on_changed_data_or_settings(tmp_path, monkeypatch):
    import conceptlab.concepts.cav as cav

    sets, _ = _sets()
    pairs = [("concept0", "random0"), ("concept1", "random1")]
    first = CAVBank(cache_dir=tmp_path).fit(sets, pairs)
    fits = []
    real = cav.fit_linear_svms
    monkeypatch.setattr(cav, "fit_linear_svms", lambda *a, **k: fits.append(1) or real(*a, **k))
    again = CAVBank(cache_dir=tmp_path).fit(sets, pairs)
    assert fits == [] and torch.equal(again.directions_, first.directions_) and again.pairs_ == first.pairs_
    changed = dict(sets, concept0=sets["concept0"] + 0.1)
    CAVBank(cache_dir=tmp_path).fit(changed, pairs)  # changed examples retrain
    CAVBank(alpha=0.1, cache_dir=tmp_path).fit(sets, pairs)  # changed hyperparameters retrain
    CAVBank(cache_dir=tmp_path).fit(dict(sets, concept0=sets["concept0"].double()), pairs)  # same values, other dtype
    assert fits == [1, 1, 1] and len(list(tmp_path.glob("cavs-*.pt"))) == 4
