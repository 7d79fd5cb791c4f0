"""Post-hoc CBMs: the concept bank, the exact elastic-net head, the hybrid, interventions and edits."""

import numpy as np
import pytest
import torch
from torch import nn

from conceptlab.cli import main
from conceptlab.concepts import bank_concepts, bank_from_folders, bank_from_labels, concept_bank
from conceptlab.datasets import ConceptDataset, ConceptInfo, split_dataset
from conceptlab.models import (
    ConceptEdit,
    ConceptModel,
    Intervention,
    PosthocCBM,
    apply_edits,
    cbm,
    class_weights,
    load_model,
    matching_concepts,
    pcbm,
    predict,
    save_model,
    sparsity,
    top_concepts,
)
from conceptlab.training import PosthocConfig, TrainConfig, fit, fit_elastic_net
from tests.noisy_concepts import noisy_concepts

D, K = 20, 12  # noisy_concepts' input width and concepts


@pytest.fixture(scope="module")
def data():
    return noisy_concepts(n=1600)


@pytest.fixture(scope="module")
def bank(data):
    return bank_from_labels(data.train.x, data.train.c, data.info.concept_names, seed=0)


@pytest.fixture(scope="module")
def trained(data, bank):
    model = pcbm(in_features=D, n_concepts=K, n_classes=data.info.n_classes, bank=bank)
    fit(model, data, "posthoc", config=TrainConfig(max_epochs=40, posthoc=PosthocConfig(lam=1e-3)))
    return model


def accuracy(model, part, intervention=None) -> float:
    return float((predict(model, part.x, intervention).task_logits.argmax(1) == part.y).float().mean())


def _sklearn_objective(x, y, w, b, lam, l1_ratio):
    logits = x @ w.T + b
    loss = torch.nn.functional.cross_entropy(logits, y) if w.shape[0] > 1 else \
        torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    return float(loss + lam * (l1_ratio * w.abs().sum() + (1 - l1_ratio) / 2 * w.pow(2).sum()))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # saga at tol 1e-8; we compare objectives
@pytest.mark.parametrize("n_classes", [2, 4])
def test_elastic_net_reaches_the_optimum_scikit_learn_finds(n_classes):
    from sklearn.linear_model import LogisticRegression

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=generator)
    y = (x[:, :n_classes] + 0.5 * torch.randn(400, n_classes, generator=generator)).argmax(1)
    lam, l1_ratio = 0.02, 0.9
    ours = fit_elastic_net(x, y, 1 if n_classes == 2 else n_classes, lam=lam, l1_ratio=l1_ratio, max_iter=20000, tol=1e-7)
    reference = LogisticRegression(solver="saga", l1_ratio=l1_ratio, C=1 / (lam * len(x)), max_iter=100000,
                                   tol=1e-8).fit(x.numpy(), y.numpy())
    w_ref, b_ref = torch.tensor(reference.coef_, dtype=torch.float32), torch.tensor(reference.intercept_, dtype=torch.float32)
    if n_classes > 2:  # scikit-learn's multinomial bias is free up to a constant; so is the weight matrix when unpenalised
        b_ref = b_ref - b_ref.mean() + ours.bias.mean()
    assert ours.converged
    assert _sklearn_objective(x, y, ours.weight, ours.bias, lam, l1_ratio) <= \
        _sklearn_objective(x, y, w_ref, b_ref, lam, l1_ratio) + 1e-5
    assert torch.allclose(ours.weight, w_ref, atol=5e-3)
    assert ((ours.weight == 0) == (w_ref.abs() < 1e-6)).float().mean() > 0.95  # the same concepts are zero


def test_a_stronger_penalty_gives_a_sparser_head_and_a_huge_one_an_empty_head(data, bank):
    zeros = []
    for lam in (1e-4, 1e-2, 1e-1, 10.0):
        model = pcbm(in_features=D, n_concepts=K, n_classes=data.info.n_classes, bank=bank)
        fit(model, data, "posthoc", config=TrainConfig(posthoc=PosthocConfig(lam=lam)))
        zeros.append(sparsity(model))
    assert zeros == sorted(zeros)
    assert zeros[0] < 0.5 and zeros[-1] == 1.0


def test_bank_has_one_cav_per_concept_in_order_and_finds_the_concepts(data, bank):
    assert bank_concepts(bank) == list(data.info.concept_names)
    assert float(bank.accuracy_[0]) > 0.9  # c0 is seen through little noise
    assert float(bank.accuracy_[:3].mean()) > float(bank.accuracy_[-3:].mean())  # noise grows with the index


def test_a_concepts_cav_does_not_move_when_another_concepts_labels_change(data, bank):
    c = data.train.c.clone()
    c[:, 5] = 1 - c[:, 5]
    c[:40, 7] = 1 - c[:40, 7]
    other = bank_from_labels(data.train.x, c, data.info.concept_names, seed=0)
    same = [i for i in range(12) if i not in (5, 7)]
    assert torch.equal(other.directions_[same], bank.directions_[same])
    assert not torch.allclose(other.directions_[7], bank.directions_[7])


def test_pcbm_learns_and_corrected_concepts_raise_its_accuracy(data, trained):
    assert accuracy(trained, data.test) > 0.6  # chance: about 0.25
    corrected = accuracy(trained, data.test, Intervention.all(data.test.c))
    assert corrected > accuracy(trained, data.test) + 0.05


def test_hybrid_trains_its_residual_only_and_keeps_the_pcbm_head(data, bank, trained):
    hybrid = pcbm(in_features=D, n_concepts=K, n_classes=data.info.n_classes, hybrid=True, bank=bank)  # the Lightning residual (the authors' recipe: below)
    fit(hybrid, data, "posthoc", config=TrainConfig(max_epochs=40, posthoc=PosthocConfig(lam=1e-3, residual="early-stopping")))
    assert torch.equal(hybrid.head.weight, trained.head.weight)  # the same exact solve, then frozen
    assert hybrid.residual.weight.abs().sum() > 0
    assert accuracy(hybrid, data.test) >= accuracy(trained, data.test) - 0.02


def test_closed_form_effects_equal_decoding_each_correction(data, trained):
    code = trained.encode(data.test.x[:16])
    iv = Intervention(torch.rand(16, 12) < 0.3, (torch.rand(16, 12) < 0.5).float())
    exact = trained.concept_effects(code, iv)
    decoded = ConceptModel.concept_effects(trained, code, iv)
    for a, b in ((exact.logits, decoded.logits), (exact.to_zero, decoded.to_zero), (exact.to_one, decoded.to_one)):
        assert torch.allclose(a, b, atol=1e-5)


def test_binary_task_uses_one_logit():
    generator = torch.Generator().manual_seed(1)
    c = (torch.rand(600, 3, generator=generator) < 0.5).float()
    x = torch.cat([2 * c - 1 + 0.3 * torch.randn(600, 3, generator=generator), torch.randn(600, 2, generator=generator)], 1)
    y = (c[:, 0] + c[:, 1] > 0.5).long()
    info = ConceptInfo(["a", "b", "noise"], ["no", "yes"])
    splits = split_dataset(ConceptDataset(x, c, y, info), seed=0)
    model = pcbm(in_features=5, n_concepts=3, n_classes=2, bank=bank_from_labels(splits.train.x, splits.train.c, info.concept_names))
    fit(model, splits, "posthoc", config=TrainConfig(posthoc=PosthocConfig(lam=1e-3)))
    out = predict(model, splits.test.x)
    assert out.task_logits.shape == (len(splits.test), 1)
    assert float(((out.task_logits[:, 0] > 0).long() == splits.test.y).float().mean()) > 0.9
    weights = class_weights(model)
    assert torch.equal(weights[0], -weights[1])
    assert top_concepts(model, info, 2)["yes"][0][0] in ("a", "b")


def test_save_and_load_give_the_same_model(tmp_path, data, bank):
    hybrid = pcbm(in_features=D, n_concepts=K, n_classes=data.info.n_classes, hybrid=True, bank=bank)
    fit(hybrid, data, "posthoc", config=TrainConfig(max_epochs=5))
    save_model(hybrid, tmp_path / "m.pt", data.info)
    loaded, info, _ = load_model(tmp_path / "m.pt")
    assert isinstance(loaded, PosthocCBM) and loaded.hybrid
    iv = Intervention.all(data.test.c)
    assert torch.equal(predict(loaded, data.test.x, iv).task_logits, predict(hybrid, data.test.x, iv).task_logits)


def test_bad_input_is_refused_with_the_fix(data, bank):
    model = pcbm(in_features=D, n_concepts=K, n_classes=data.info.n_classes, bank=bank)
    with pytest.raises(ValueError, match="recipe='posthoc'"):
        fit(model, data, "joint", config=TrainConfig(max_epochs=1))
    with pytest.raises(ValueError, match="trains a PosthocCBM"):
        fit(cbm(in_features=20, n_concepts=12, n_classes=4), data, "posthoc", config=TrainConfig(max_epochs=1))
    with pytest.raises(ValueError, match="no concept bank"):
        fit(pcbm(in_features=20, n_concepts=12, n_classes=4), data, "posthoc")
    with pytest.raises(ValueError, match="embeddings of 20 features"):
        model(torch.randn(3, 7))
    with pytest.raises(ValueError, match="percentiles"):
        model(data.test.x[:2], Intervention.all(data.test.c[:2]))
    with pytest.raises(ValueError, match="12 concepts of width 20"):
        model.set_bank(concept_bank({"a": (torch.randn(6, 3), torch.randn(6, 3) + 2)}))
    few = data.train.c.clone()
    few[:, 3] = 0
    few[:2, 3] = 1
    with pytest.raises(ValueError, match="'c3' has 2 positive"):
        bank_from_labels(data.train.x, few, data.info.concept_names)
    with pytest.raises(ValueError, match="NaN"):
        fit_elastic_net(torch.tensor([[float("nan")]]), torch.tensor([0]), 2, lam=0.1)


def test_edits_change_only_what_they_name(data, trained):
    info = data.info
    before = predict(trained, data.test.x).task_logits
    edited = apply_edits(trained, info, [ConceptEdit(("c0", "c1"), 0.0, ("class2",))])
    after = predict(edited, data.test.x).task_logits
    assert torch.equal(after[:, [0, 1, 3]], before[:, [0, 1, 3]])  # other classes untouched
    assert not torch.equal(after[:, 2], before[:, 2])
    assert (edited.head.weight[2, :2] == 0).all()
    assert torch.equal(predict(trained, data.test.x).task_logits, before)  # the original is left as it was
    halved = apply_edits(trained, info, [ConceptEdit(("c4",), 0.5)])
    assert torch.allclose(halved.head.weight[:, 4], trained.head.weight[:, 4] / 2)
    assert matching_concepts(info, r"^c1\d$") == ("c10", "c11")
    with pytest.raises(ValueError, match="unknown concept"):
        apply_edits(trained, info, [ConceptEdit(("wings",))])
    with pytest.raises(ValueError, match="unknown class"):
        apply_edits(trained, info, [ConceptEdit(("c0",), 0.0, ("class9",))])
    with pytest.raises(ValueError, match="mixes concepts"):
        from conceptlab.models import cem

        apply_edits(cem(in_features=20, n_concepts=12, n_classes=4), info, [ConceptEdit(("c0",))])


def test_class_edits_are_refused_on_a_single_logit_head():
    info = ConceptInfo(["a", "b"], ["no", "yes"])
    model = cbm(in_features=4, n_concepts=2, n_classes=2)
    with pytest.raises(ValueError, match="one logit for its two classes"):
        apply_edits(model, info, [ConceptEdit(("a",), 0.0, ("yes",))])
    assert (apply_edits(model, info, [ConceptEdit(("a",))]).head.weight[:, 0] == 0).all()


def test_cli_edit_prunes_into_a_new_file_and_shows_top_concepts(tmp_path, data, trained, capsys):
    path = save_model(trained, tmp_path / "pcbm.pt", data.info, bench="noisy")
    assert main(["edit", str(path), "--top", "3", "--plot", str(tmp_path / "top.png")]) == 0
    assert "class0:" in capsys.readouterr().out
    assert (tmp_path / "top.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "edited.pt"
    assert main(["edit", str(path), "--prune", "c0", "--match", "^c1[01]$", "--classes", "class1", "--out", str(out)]) == 0
    edited, _, metadata = load_model(out)
    assert metadata["edits"] == [{"concepts": ["c0", "c10", "c11"], "factor": 0.0, "classes": ["class1"], "method": "fold-mean"}]
    assert metadata["bench"] == "noisy"
    assert (edited.head.weight[1, [0, 10, 11]] == 0).all()
    assert torch.equal(load_model(path)[0].head.weight, trained.head.weight)
    assert main(["edit", str(path), "--prune", "c3", "--classes", "class1", "--method", "prune-normalize", "--out", str(out)]) == 0
    normalized, _, metadata = load_model(out)
    assert metadata["edits"][0]["method"] == "prune-normalize" and normalized.head.weight[1, 3] == 0
    assert torch.allclose(normalized.head.weight[1].abs().sum(), trained.head.weight[1].abs().sum())
    assert main(["edit", str(path), "--prune", "c0"]) == 2  # an edit needs --out
    assert main(["edit", str(path), "--scale", "c0=half", "--out", str(out)]) == 2
    capsys.readouterr()
    fresh = tmp_path / "never.pt"
    for bad in ("nan", "inf", "-inf", "1e400", "-2"):  # a NaN model with rc 0 before
        assert main(["edit", str(path), "--scale", f"c0={bad}", "--out", str(fresh)]) == 2
        assert "finite number >= 0" in capsys.readouterr().err and not fresh.exists()
    for target in (tmp_path, path / "under-a-file.pt"):  # tracebacks before
        assert main(["edit", str(path), "--prune", "c0", "--out", str(target)]) == 2
        assert "cannot use" in capsys.readouterr().err
    assert main(["edit", str(path), "--prune", ",", "--out", str(fresh)]) == 2  # an IndexError before
    assert "at least one concept" in capsys.readouterr().err and not fresh.exists()
    before = path.read_bytes()
    assert main(["edit", str(path), "--prune", "c0", "--out", str(path)]) == 2  # the original stays, as the help says
    assert "would overwrite the model it edits" in capsys.readouterr().err and path.read_bytes() == before


def test_bank_from_folders_reads_example_folders_through_a_layer(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    for name, shift in (("bright", 3.0), ("dark", -3.0)):
        (tmp_path / "concepts" / name).mkdir(parents=True)
        torch.save(torch.randn(30, 6) + shift, tmp_path / "concepts" / name / "x.pt")
    (tmp_path / "random").mkdir()
    torch.save(torch.randn(40, 6), tmp_path / "random" / "x.pt")
    bank = bank_from_folders(model, "1", tmp_path / "concepts", negatives=tmp_path / "random")
    assert bank_concepts(bank) == ["bright", "dark"]
    assert bank.directions_.shape == (2, 8)
    assert float(bank.accuracy_.min()) > 0.8
    assert np.isfinite(bank.norms_.numpy()).all()


def test_bench_trains_pcbm_keys_and_sweeps_the_sparsity(tmp_path):
    from conceptlab.bench import parse_spec, run_grid

    spec = parse_spec({
        "name": "tiny", "dataset": {"name": "trig", "size": 400}, "models": ["pcbm", "pcbm-h", "linear-probe"],
        "seeds": 1, "model": {"bank_examples": 40}, "train": {"max_epochs": 3, "device": "cpu"},
        "evaluation": {"intervention_policies": ["random"], "concept_alignment": False},
        "sweep": {"train.posthoc.lam": [1e-4, 10.0]},
    })
    assert [p.train.posthoc.lam for p in spec.points()] == [1e-4, 10.0]
    records = run_grid([spec], tmp_path, workers=1, progress=False).records()
    assert len(records) == 6 and all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    loaded = {(r["model"], r["sweep_point"]["train.posthoc.lam"]): load_model(r["checkpoint"])[0] for r in records}
    assert sparsity(loaded["pcbm", 10.0]) > sparsity(loaded["pcbm", 1e-4])
    assert all(r["history"]["head"]["train_loss"] for r in records if r["model"] != "linear-probe")


def test_pruning_a_pcbm_concept_keeps_inputs_at_its_usual_value_where_they_were(data, trained):
    """A pruned concept's term becomes its training mean: an input whose distance equals the mean
    keeps its logits exactly; inputs away from it lose the concept's effect and nothing else."""
    info = data.info
    z = data.test.x[:32]
    edited = apply_edits(trained, info, [ConceptEdit(("c0",), 0.0)])
    distances = trained.distances(z)
    at_mean = trained.directions[0] * (trained.distance_mean[0] - distances[:, :1])  # move z along c0's normal
    z_mean = z + at_mean
    assert torch.allclose(edited(z_mean).task_logits, trained(z_mean).task_logits, atol=1e-4)
    change = edited(z).task_logits - trained(z).task_logits
    expected = -(distances[:, :1] - trained.distance_mean[0]) * trained.head.weight[:, 0]
    assert torch.allclose(change, expected, atol=1e-4)


def test_the_papers_prune_keeps_the_bias_and_shifts_logits_by_the_removed_term(data, trained):
    info = data.info
    edited = apply_edits(trained, info, [ConceptEdit(("c3",), 0.0, ("class1",), method="prune")])
    assert torch.equal(edited.head.bias, trained.head.bias)
    assert edited.head.weight[1, 3] == 0 and torch.equal(edited.head.weight[[0, 2, 3]], trained.head.weight[[0, 2, 3]])
    with torch.no_grad():
        distances = trained.distances(trained.encode(data.test.x))
        before, after = trained(data.test.x).task_logits, edited(data.test.x).task_logits
    assert torch.allclose(after[:, 1], before[:, 1] - trained.head.weight[1, 3] * distances[:, 3], atol=1e-5)


def test_prune_normalize_keeps_each_edited_class_total_weight(data, trained):
    info = data.info
    edited = apply_edits(trained, info, [ConceptEdit(("c0", "c5"), 0.0, ("class0", "class2"), method="prune-normalize")])
    old, new = trained.head.weight, edited.head.weight
    assert (new[[0, 2]][:, [0, 5]] == 0).all()
    assert torch.allclose(new[[0, 2]].abs().sum(1), old[[0, 2]].abs().sum(1))  # L1 norm of the class row preserved
    kept = [i for i in range(12) if i not in (0, 5)]
    ratio = new[0, kept] / old[0, kept]
    assert torch.allclose(ratio[old[0, kept] != 0], ratio[old[0, kept] != 0][0].expand(int((old[0, kept] != 0).sum())))
    assert torch.equal(new[[1, 3]], old[[1, 3]]) and torch.equal(edited.head.bias, trained.head.bias)
    from conceptlab import cli
    from conceptlab.models.editing import EDIT_METHODS

    assert cli.EDIT_METHODS == EDIT_METHODS  # the CLI lists them without importing torch
    with pytest.raises(ValueError, match="unknown edit method 'magic'"):
        ConceptEdit(("c0",), method="magic")


def test_the_authors_residual_recipe_trains_twenty_epochs_and_keeps_the_last(data, bank, trained):
    hybrid = pcbm(in_features=D, n_concepts=K, n_classes=data.info.n_classes, hybrid=True, bank=bank)
    report = fit(hybrid, data, "posthoc", config=TrainConfig(max_epochs=40, posthoc=PosthocConfig(lam=1e-3, residual="authors")))
    assert report.stage_epochs["residual"] == 20 and len(report.history["residual"]["train_loss"]) == 20
    assert torch.equal(hybrid.head.weight, trained.head.weight)
    assert hybrid.residual.weight.abs().sum() > 0
    assert report.history["residual"]["train_loss"][-1] < report.history["residual"]["train_loss"][0]
    assert accuracy(hybrid, data.test) >= accuracy(trained, data.test) - 0.02


def test_a_pcbm_reads_a_categorical_concept_as_its_members_and_corrects_it_whole():
    """One CAV per member; writing the one-hot value puts the true member at its "present"
    percentile and every other member at its "absent" one."""
    from tests.test_categorical_concepts import INFO, colours

    data = colours(n=1200)
    model = pcbm(in_features=3, n_concepts=5, n_classes=3,
                 bank=bank_from_labels(data.train.x, data.train.c, INFO.concept_names, examples=100, seed=0))
    fit(model, data, "posthoc", config=TrainConfig(posthoc=PosthocConfig(lam=1e-3)))
    test = data.test
    mask = torch.tensor([[True] * 4 + [False]]).expand(len(test), -1)
    bottleneck = model(test.x, Intervention(mask, test.c)).bottleneck[:, :4]
    low, high = model.intervention_low[:4], model.intervention_high[:4]
    assert torch.equal(bottleneck, torch.where(test.c[:, :4] > 0.5, high, low))
