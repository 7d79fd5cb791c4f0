"""TCAV variants: multi-label and regression targets, integrated gradients along the activation path,
relative TCAV on planted concepts, and scores for new inputs from a saved bank."""

import pytest
import torch
from torch import nn

from conceptlab.concepts import CAVBank, capture_activations, layer_gradients, relative_tcav, run_tcav, tcav_from_bank
from conceptlab.concepts.activations import model_fingerprint

D = 6


def _planted_model(outputs: int = 3) -> nn.Module:
    """Layer "0" is the identity on 6 inputs; output j reads input j (output 0: +x0, 1: -x1, 2: +x2)."""
    model = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, outputs))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(D))
        model[0].bias.fill_(5.0)  # keep the ReLU open for the inputs used here
        model[2].weight.zero_()
        model[2].bias.zero_()
        for j, sign in zip(range(outputs), (1.0, -1.0, 1.0)):
            model[2].weight[j, j] = sign
    return model


def _concepts(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sets = {}
    for j in range(3):
        x = 0.5 * torch.randn(120, D, generator=g)
        x[:, j] += 2.0  # concept "x{j} high"
        sets[f"x{j} high"] = x
    return sets


def _randoms(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"random{r}": 0.5 * torch.randn(120, D, generator=g) for r in range(4)}


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_multilabel_and_regression_targets_are_explained_through_their_own_output(task):
    model, inputs = _planted_model(), 0.5 * torch.randn(50, D)
    records = run_tcav(model, ["1"], _concepts(), randoms=_randoms(), inputs=inputs, target=1, task=task)
    by_concept = {r["concept"]: r for r in records}
    assert by_concept["x1 high"]["score_mean"] == 0.0 and by_concept["x1 high"]["significant"]  # output 1 falls with x1
    records = run_tcav(model, ["1"], _concepts(), randoms=_randoms(), inputs=inputs, target=2, task=task)
    assert {r["concept"]: r for r in records}["x2 high"]["score_mean"] == 1.0


def test_targets_of_other_tasks_are_checked_and_a_regression_loss_is_refused():
    model, inputs = _planted_model(), torch.randn(5, D)
    with pytest.raises(ValueError, match="out of range"):
        run_tcav(model, ["1"], _concepts(), randoms=_randoms(), inputs=inputs, target=3, task="multilabel")
    with pytest.raises(ValueError, match="no loss without a target value"):
        layer_gradients(model, "1", inputs, target=0, objective="loss", task="regression")
    # a single output: multi-label/regression index it as output 0, multiclass reads it as a binary head
    single = _planted_model(outputs=1)
    assert layer_gradients(single, "1", inputs, target=0, task="regression")[:, 0].eq(1).all()
    assert layer_gradients(single, "1", inputs, target=0)[:, 0].eq(-1).all()


def test_integrated_gradients_see_through_a_saturated_unit():
    model = nn.Sequential(nn.Linear(1, 1), nn.Hardtanh(-1.0, 1.0))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    x = torch.full((4, 1), 2.0)  # the layer's output is 2: beyond the saturation at 1
    plain = layer_gradients(model, "0", x, target=0, task="regression")
    integrated = layer_gradients(model, "0", x, target=0, task="regression", integrated_steps=100)
    assert plain.abs().max() == 0  # the local gradient says nothing
    assert torch.allclose(integrated, torch.full_like(integrated, 0.5), atol=0.01)  # half of the path is unsaturated
    shifted = layer_gradients(model, "0", x, target=0, task="regression", integrated_steps=100,
                              baselines={"0": torch.tensor([0.5])})
    assert torch.allclose(shifted, torch.full_like(shifted, 1 / 3), atol=0.01)  # from 0.5: 0.5 of 1.5 unsaturated
    with pytest.raises(ValueError, match="holds 2 values"):
        layer_gradients(model, "0", x, target=0, task="regression", integrated_steps=4, baselines={"0": torch.zeros(2)})
    with pytest.raises(ValueError, match="give integrated_steps"):
        layer_gradients(model, "0", x, target=0, baselines={"0": torch.zeros(1)})


def test_run_tcav_with_integrated_gradients_gives_the_planted_answer():
    model, inputs = _planted_model(), 0.5 * torch.randn(40, D)
    records = run_tcav(model, ["1"], _concepts(), randoms=_randoms(), inputs=inputs, target=0, task="regression",
                       integrated_steps=8)
    assert {r["concept"]: r["score_mean"] for r in records}["x0 high"] == 1.0


def test_relative_tcav_flags_the_concept_the_output_uses_against_the_others():
    model, inputs = _planted_model(), 0.5 * torch.randn(60, D)
    records = relative_tcav(model, ["1"], _concepts(), inputs=inputs, target=0, task="regression", runs=6)
    by_concept = {r["concept"]: r for r in records}
    assert by_concept["x0 high"]["score_mean"] == 1.0 and by_concept["x0 high"]["significant"]
    assert by_concept["x0 high"]["against"] == ["x1 high", "x2 high"]
    assert by_concept["x1 high"]["score_mean"] < 0.5  # output 0 does not grow with x1 more than with the others


def test_relative_tcav_needs_two_concepts_and_two_runs():
    model = _planted_model()
    with pytest.raises(ValueError, match="at least 2 concepts"):
        relative_tcav(model, ["1"], {"a": torch.randn(20, D)}, inputs=torch.randn(5, D), target=0)
    with pytest.raises(ValueError, match="runs must be at least 2"):
        relative_tcav(model, ["1"], _concepts(), inputs=torch.randn(5, D), target=0, runs=1)


def _saved_bank(network, tmp_path, **metadata):
    acts = capture_activations(network, ["1"], torch.cat([*_concepts().values(), *_randoms().values()]))["1"]
    sets = dict(zip([*_concepts(), *_randoms()], acts.split(120)))
    bank = CAVBank("logistic").fit(sets, [("x0 high", "random0"), ("x1 high", "random0")])
    return bank, bank.save(tmp_path / "bank.pt", **metadata)


def test_a_saved_bank_scores_new_inputs_as_the_fitted_one_does(tmp_path):
    model, inputs = _planted_model(), 0.5 * torch.randn(30, D)
    bank, path = _saved_bank(model, tmp_path, layer="1", model=model_fingerprint(model))
    loaded = tcav_from_bank(model, path, inputs, target=0, task="regression")
    direct = layer_gradients(model, "1", inputs, target=0, task="regression") @ bank.directions_.T
    assert torch.allclose(loaded.sensitivity, direct, atol=1e-6)
    assert loaded.scores.tolist() == [1.0, loaded.scores[1].item()] and loaded.pairs == bank.pairs_
    assert [r["concept"] for r in loaded.records()] == ["x0 high", "x1 high"]


def test_a_saved_bank_refuses_a_changed_model_an_unknown_layer_and_a_wrong_width(tmp_path):
    model, inputs = _planted_model(), torch.randn(5, D)
    _, path = _saved_bank(model, tmp_path, layer="1", model=model_fingerprint(model))
    changed = _planted_model()
    with torch.no_grad():
        changed[2].weight.add_(0.1)
    with pytest.raises(ValueError, match="differs from the one the bank was fitted on"):
        tcav_from_bank(changed, path, inputs, target=0, task="regression")
    _, bare = _saved_bank(model, tmp_path)
    with pytest.raises(ValueError, match="did not record its layer"):
        tcav_from_bank(model, bare, inputs, target=0, task="regression")
    with pytest.raises(ValueError, match="has 3 units"):
        tcav_from_bank(model, bare, inputs, target=0, task="regression", layer="2")


def test_cli_relative_tcav_needs_no_random_sets(tmp_path, capsys):
    from conceptlab import cli
    from conceptlab.datasets import ConceptInfo
    from conceptlab.models import cbm, save_model

    torch.manual_seed(0)
    save_model(cbm(in_features=D, n_concepts=2, n_classes=3, hidden=[16]), tmp_path / "m.pt",
               ConceptInfo(("a", "b"), ("cat", "dog", "zebra")))
    for name, x in {**_concepts(), "inputs": 0.5 * torch.randn(20, D)}.items():
        folder = tmp_path / ("inputs" if name == "inputs" else f"concepts/{name}")
        folder.mkdir(parents=True)
        torch.save(x, folder / "x.pt")
    base = ["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.1", "--concepts", str(tmp_path / "concepts"),
            "--inputs", str(tmp_path / "inputs"), "--target", "zebra"]
    assert cli.main([*base, "--relative", "--runs", "3", "--out", str(tmp_path / "out")]) == 0
    assert len((tmp_path / "out" / "tcav.csv").read_text().splitlines()) == 1 + 3
    assert cli.main(base) == 2
    assert "--random is required" in capsys.readouterr().err
