"""Deep Concept Reasoner: the rule layer is the Goedel-logic formula, its two networks learn, an
intervention flips a rule, and on XOR the rules are the two minterms, printed by the command line."""

import html
from pathlib import Path

import pytest
import torch

from conceptlab.cli import main
from conceptlab.datasets import xor
from conceptlab.models import class_rules, dcr, load_model, predict, save_model
from conceptlab.models.dcr import ReasonerHead
from conceptlab.training import TrainConfig, fit, seeded


def test_the_rule_layer_is_the_goedel_conjunction_of_relevant_literals():
    head = ReasonerHead(embedding_size=3, n_outputs=2)
    embeddings, truth = torch.randn(4, 5, 3), torch.rand(4, 5)
    polarity, relevance = head.roles(embeddings)
    by_hand = torch.empty(4, 2)
    for b in range(4):
        for j in range(2):
            clauses = []
            for i in range(5):
                s, c, r = polarity[b, i, j], truth[b, i], relevance[b, i, j]
                agree = min(max(1 - s, c), max(s, 1 - c))
                clauses.append(max(1 - r, agree))
            by_hand[b, j] = min(clauses)
    assert torch.allclose(head(embeddings, truth), by_hand, atol=1e-6)
    share = torch.log_softmax(head.relevance(embeddings), 1)
    assert torch.allclose(relevance, torch.sigmoid(share - 100 * share.mean(1, keepdim=True)))


@pytest.fixture(scope="module")
def trained():
    data = xor(size=1500, seed=0)
    with seeded(0):
        model = dcr(in_features=2, n_concepts=2, n_classes=2, embedding_size=16, latent_dim=64, hidden=(64, 64))
    start = {name: p.detach().clone() for name, p in model.head.named_parameters()}
    fit(model, data, "joint", config=TrainConfig(max_epochs=60, lr=0.01, intervention_prob=0.25, device="cpu"))
    return data, model.eval(), start


def test_on_xor_the_rules_are_the_two_minterms_and_both_networks_learned(trained):
    data, model, start = trained
    for name, p in model.head.named_parameters():
        assert not torch.equal(p.detach(), start[name]), f"{name} never moved"
    rules = class_rules(model, data.test.x, data.info)
    found = {rule for rule, _ in rules["xor"][:2]}
    assert found == {"x1 > 0.5 and not x2 > 0.5", "not x1 > 0.5 and x2 > 0.5"}, rules


def test_an_intervention_changes_the_rule_truth_and_a_saved_reasoner_keeps_its_rules(trained, tmp_path):
    from conceptlab.models import Intervention

    data, model, _ = trained
    test = data.test
    corrected = predict(model, test.x, Intervention.all(test.c)).task_logits[:, 0] > 0
    assert (corrected.long() == test.y).float().mean() > 0.97  # every concept corrected: the rules decide, nearly all right
    x = test.x[:50]
    loaded, info, _ = load_model(save_model(model, tmp_path / "dcr.pt", data.info))
    assert class_rules(loaded.eval(), x, info) == \
        class_rules(model, x, info)


def test_the_bench_records_the_rules_and_the_command_line_prints_them(tmp_path, capsys):
    from conceptlab.bench import parse_spec, run_grid
    from conceptlab.bench.report import markdown_table, table_rows

    spec = parse_spec({"dataset": {"name": "xor", "size": 600}, "models": ["dcr"], "seeds": 1,
                       "model": {"hidden": [32], "latent_dim": 32, "embedding_size": 8}, "train": {"max_epochs": 30},
                       "evaluation": {"intervention_policies": ["random"], "intervention_repeats": 1}}, "x")
    (record,) = run_grid([spec], tmp_path / "out", workers=1, progress=False).records()
    assert record["status"] == "ok" and set(record["rules"]) == {"not xor", "xor"}
    assert "Rules of dcr" in markdown_table(table_rows([record], [spec]), [spec])
    assert main(["rules", record["checkpoint"]]) == 0
    printed = capsys.readouterr().out
    assert "xor <- " in printed and Path(record["checkpoint"]).name in printed
    assert main(["rules", str(save_model(*_cbm_with_data(tmp_path)))]) != 0
    assert "rules come from a Deep Concept Reasoner" in capsys.readouterr().err
    _the_explorer_shows_each_sample_rule(Path(record["checkpoint"]))


def _the_explorer_shows_each_sample_rule(checkpoint: Path) -> None:
    """The sample's rule under the corrections, in the view and on the page; it follows a correction."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from conceptlab.explorer import Corrections, Explorer, load_explorer_model
    from conceptlab.explorer.app import create_app

    model = load_explorer_model(checkpoint)
    explorer = Explorer([model])
    test = explorer.data(model.name).test
    positive = next(i for i in range(len(test)) if explorer.view(model.name, i, Corrections({})).rule)
    view = explorer.view(model.name, positive, Corrections({}))
    assert view.rule.startswith("xor <- ") and view.rule == model.model.sample_rules(test.x[positive : positive + 1], model.info)[0]
    flipped = Corrections({0: 1 - float(test.c[positive, 0])})
    assert explorer.view(model.name, positive, flipped).rule != view.rule  # corrected x1: another rule, or none
    page = TestClient(create_app(explorer, hosts=None)).get("/explore", params={"model": model.name, "sample": positive})
    assert page.status_code == 200 and html.escape(view.rule.split(" <- ")[1]) in page.text


def _cbm_with_data(tmp_path):
    from conceptlab.models import cbm

    data = xor(size=100)
    return cbm(in_features=2, n_concepts=2, n_classes=2), tmp_path / "cbm.pt", data.info
