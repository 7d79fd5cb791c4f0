"""Continuous concepts (a regressed value, written as is by an intervention) and the three kinds of
task (multiclass, multilabel, regression): declared in ConceptInfo, checked on the data, trained by
every concept model, measured per kind, and refused with the fix where a part does not apply."""

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from conceptlab.bench import parse_spec, run_grid
from conceptlab.datasets import ConceptDataset, ConceptInfo, load_dataset, mixed_concepts
from conceptlab.explorer import load_explorer_model
from conceptlab.interventions import BINARY_CONCEPTS, MULTICLASS, POLICIES, check_applies, intervention_curve
from conceptlab.metrics import evaluate, regression_scores, subset_accuracy, task_accuracy
from conceptlab.models import Intervention, black_box, cbm, cem, intcem, load_model, predict, save_model
from conceptlab.models.heads import task_loss
from conceptlab.training import TrainConfig, concept_loss, fit, seeded

NAN = float("nan")
MIXED = mixed_concepts(size=600, seed=0)
TYPED = dict(in_features=6, n_concepts=6, n_classes=3, categorical=MIXED.info.categorical_indices(),
             continuous=MIXED.info.continuous_indices(), hidden=(16,))
CONCEPT_MODELS = {
    "cbm-sigmoid": lambda task="multilabel": cbm(**TYPED, task=task),
    "cbm-logit": lambda task="multilabel": cbm(**TYPED, bottleneck="logit", task=task),
    "cbm-bool": lambda task="multilabel": cbm(**TYPED, bottleneck="bool", task=task),
    "cem": lambda task="multilabel": cem(**TYPED, embedding_size=4, latent_dim=8, task=task),
}
QUICK = TrainConfig(max_epochs=3, device="cpu", early_stopping_patience=0)


def test_the_info_declares_continuous_concepts_and_the_task_and_refuses_what_cannot_be():
    info = MIXED.info
    assert info.continuous_indices() == (4,) and info.task == "multilabel"
    assert ConceptInfo.from_dict(info.to_dict()) == info
    assert "task" not in ConceptInfo(("a",), ("n", "y")).to_dict()  # a multiclass info's dict (and hash) is unchanged
    with pytest.raises(ValueError, match="not one-concept groups"):
        ConceptInfo(("a", "b"), ("n", "y"), {"g": (0, 1)}, continuous=("g",))
    with pytest.raises(ValueError, match="not one-concept groups"):
        ConceptInfo(("a", "b"), ("n", "y"), continuous=("zz",))
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        ConceptInfo(("a",), ("n", "y"), task="ranking")
    assert ConceptInfo(("a",), ("price",), task="regression").n_classes == 1  # one target is a task


@pytest.mark.parametrize(("c", "y", "info", "message"), [
    ([[2.0, 0.5]], [0], ConceptInfo(("a", "v"), ("n", "y"), continuous=("v",)), "only a concept named in ConceptInfo.continuous"),
    ([[1.0, 9.5]], [[1.0, 0.0]], ConceptInfo(("a", "v"), ("n", "y")), "c must hold concept labels in"),
    ([[1.0, 9.5]], [0], ConceptInfo(("a", "v"), ("l1", "l2"), continuous=("v",), task="multilabel"), r"shape \(N, 2\)"),
    ([[1.0, 9.5]], [[1.0, 0.5]], ConceptInfo(("a", "v"), ("l1", "l2"), continuous=("v",), task="multilabel"), "0 / 1 labels"),
    ([[1.0, 9.5]], [[1.0, 0.0]], ConceptInfo(("a", "v"), ("n", "y"), continuous=("v",)), "task='multilabel'"),
    ([[1.0, 9.5]], [0.5], ConceptInfo(("a", "v"), ("n", "y"), continuous=("v",)), "task='regression'"),
    ([[1.0, float("inf")]], [[1.0]], ConceptInfo(("a", "v"), ("t",), continuous=("v",), task="regression"), "infinite"),
])
def test_the_data_are_checked_against_their_concept_types_and_task(c, y, info, message):
    with pytest.raises(ValueError, match=message):
        ConceptDataset(torch.zeros(1, 2), torch.tensor(c), torch.tensor(y), info)


def test_a_continuous_value_and_a_regression_target_pass_with_missing_entries():
    info = ConceptInfo(("a", "v"), ("t1", "t2"), continuous=("v",), task="regression")
    data = ConceptDataset(torch.zeros(2, 2), torch.tensor([[1.0, -3.5], [NAN, NAN]]), torch.tensor([[0.5, NAN], [9.0, -2.0]]), info)
    assert data.y.dtype == torch.float32 and torch.isnan(data.y[0, 1])


@pytest.mark.parametrize("name", sorted(CONCEPT_MODELS))
def test_every_concept_model_regresses_the_continuous_concept_and_writes_its_value(name):
    with seeded(0):
        model = CONCEPT_MODELS[name]()
    fit(model, MIXED, "joint", config=QUICK)
    x = MIXED.test.x[:8]
    out = model(x)
    assert torch.equal(out.concept_probs[:, 4], out.concept_logits[:, 4])  # the value itself: no sigmoid
    assert torch.allclose(out.concept_probs[:, :4].sum(1), torch.ones(8))  # the categorical group: a softmax
    values = MIXED.test.c[:8].clone()
    values[:, 4] = torch.linspace(-3.0, 3.0, 8)
    mask = torch.zeros(8, 6, dtype=torch.bool)
    mask[:, 4] = True
    corrected = model(x, Intervention(mask, values))
    if name.startswith("cbm"):
        assert torch.equal(corrected.bottleneck[:, 4], values[:, 4])  # written as is, whatever the bottleneck
    else:  # a CEM mixes the two embeddings with the value: v * positive + (1 - v) * negative
        positive, negative = model.encode(x)[:, 4].split(4, dim=-1)
        expected = values[:, 4:5] * positive + (1 - values[:, 4:5]) * negative
        assert torch.allclose(corrected.concept_embeddings[:, 4], expected, atol=1e-6)
    with pytest.raises(ValueError, match="binary and categorical concepts must be concept labels in"):
        model(x, Intervention(torch.ones(8, 6, dtype=torch.bool), values.clamp(min=0) * 2 + 1))


def test_the_continuous_term_is_a_squared_error_and_a_missing_value_gets_no_gradient():
    logits = torch.tensor([[0.3, 1.5], [0.0, -2.0]], requires_grad=True)
    c = torch.tensor([[1.0, 2.0], [0.0, NAN]])
    loss = concept_loss(logits, c, continuous=(1,))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], c[:, 0], reduction="sum")
    assert loss.item() == pytest.approx(((bce + (1.5 - 2.0) ** 2) / 3).item())
    loss.backward()
    assert logits.grad[1, 1] == 0 and logits.grad[0, 1] != 0


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_task_losses_of_each_kind_skip_unknown_labels_and_leave_them_no_gradient(task):
    logits = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, NAN], [0.0, 1.0, 1.0]])
    loss = task_loss(logits, y, task=task)
    known = ~torch.isnan(y)
    if task == "multilabel":
        expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], y[known])
    else:
        expected = (logits[known] - y[known]).pow(2).mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert logits.grad[0, 2] == 0 and bool((logits.grad[known] != 0).all())
    with pytest.raises(ValueError, match="a regression task takes none"):
        task_loss(logits, y, class_weight=torch.ones(3), task="regression")


def test_task_metrics_of_each_kind_match_their_definitions():
    rng = np.random.default_rng(0)
    logits, labels = torch.tensor(rng.normal(size=(50, 3)), dtype=torch.float32), torch.tensor(rng.random((50, 3)) < 0.5).float()
    assert task_accuracy(logits, labels) == pytest.approx(float(((logits > 0) == (labels > 0.5)).float().mean()))
    assert subset_accuracy(logits, labels) == pytest.approx(float(((logits > 0) == (labels > 0.5)).all(1).float().mean()))
    targets = logits + 0.5 * torch.tensor(rng.normal(size=(50, 3)), dtype=torch.float32)
    mse, r2 = regression_scores(logits, targets)
    assert mse == pytest.approx(float((logits - targets).pow(2).mean()), rel=1e-5)
    assert r2 == pytest.approx(r2_score(targets.numpy(), logits.numpy()), rel=1e-5)  # the mean R^2 over targets


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_models_train_on_each_task_kind_and_are_measured_and_intervened_on_by_it(task, tmp_path):
    data = MIXED if task == "multilabel" else _regression(MIXED)
    for name in ("cbm-sigmoid", "cem"):
        with seeded(0):
            model = CONCEPT_MODELS[name](task)
        report = fit(model, data, "joint", config=QUICK)
        assert report.history["joint"]["train_loss"][-1] < report.history["joint"]["train_loss"][0]  # the task loss ran
        scores = evaluate(model, data.test)
        assert scores["concept_mse"] is not None and scores["concept_r2"] is not None
        if task == "multilabel":
            assert scores["task_top5_accuracy"] is None and 0 <= scores["task_subset_accuracy"] <= scores["task_accuracy"]
        else:
            assert scores["task_accuracy"] is None and scores["task_r2"] is not None
        curve = intervention_curve(model, data.test, "random", repeats=1)
        assert len(curve.accuracy_mean) == 4  # three groups: colour, size, striped
        loaded, info, _ = load_model(save_model(model, tmp_path / f"{name}-{task}.pt", data.info))
        assert (loaded.task, loaded.continuous, info.task) == (task, (4,), task)
        assert torch.equal(predict(loaded, data.test.x).task_logits, predict(model, data.test.x).task_logits)


def _regression(splits):
    """The mixed data with three real targets: the size, the colour index plus the size, and a constant-free mix."""
    info = ConceptInfo(splits.info.concept_names, ("size", "colour + size", "striped - size"), splits.info.concept_groups,
                       categorical=splits.info.categorical, continuous=splits.info.continuous, task="regression")
    parts = [ConceptDataset(p.x, p.c, torch.stack([p.c[:, 4], p.c[:, :4].argmax(1) + p.c[:, 4], p.c[:, 5] - p.c[:, 4]], 1), info)
             for p in (splits.train, splits.val, splits.test)]
    return type(splits)(*parts)


def test_a_model_of_another_task_or_concept_types_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="build the model with task='multilabel'"):
        fit(cbm(**{**TYPED, "n_classes": 3}), MIXED, "joint", config=QUICK)
    with pytest.raises(ValueError, match="continuous=info.continuous_indices()"):
        fit(cbm(**{**TYPED, "continuous": ()}, task="multilabel"), MIXED, "joint", config=QUICK)
    with pytest.raises(ValueError, match="the model predicts a multiclass task"):  # IntCEM's oracle reads class logits
        fit(intcem(in_features=6, n_concepts=6, n_classes=3, continuous=(4,), hidden=(8,)), MIXED, "intcem", config=QUICK)
    with pytest.raises(ValueError, match="a regression task has none"):
        fit(black_box(in_features=6, n_classes=3, latent_dim=4, task="regression"), _regression(MIXED), "joint",
            config=TrainConfig(max_epochs=1, task_class_weighting=True))


def test_policies_that_assume_binary_concepts_or_classes_are_refused_and_the_rest_run():
    refused = {name for name, rule in POLICIES.items() if set(rule.needs) & {BINARY_CONCEPTS, MULTICLASS}}
    assert refused == set(POLICIES) - {"random", "global-val-improvement", "concept-uncertainty"}  # the last asks the model
    for name in refused:
        with pytest.raises(ValueError, match="Policies that apply to any data: random, global-val-improvement"):
            check_applies(POLICIES[name], MIXED.info)
    binary_multilabel = ConceptInfo(("a", "b"), ("l1", "l2"), task="multilabel")
    check_applies(POLICIES["uncertainty"], binary_multilabel)  # binary concepts: fine on any task
    with pytest.raises(ValueError, match="assumes a multiclass task"):
        check_applies(POLICIES["oracle"], binary_multilabel)
    with seeded(0):
        model = CONCEPT_MODELS["cem"]()
    with pytest.raises(ValueError, match="a wrong value of|competence below 1"):
        intervention_curve(model, MIXED.test, "random", competence=0.5)


def test_lookahead_with_a_continuous_value_is_exact_for_a_linear_head():
    """ConceptEffects interpolates between setting 0 and 1; for a CBM or CEM that equals decoding."""
    for name in ("cbm-sigmoid", "cem"):
        with seeded(0):
            model = CONCEPT_MODELS[name]().eval()
        codes = model.encode(MIXED.test.x[:5])
        effects = model.concept_effects(codes)
        values = MIXED.test.c[:5]
        units = torch.eye(6, dtype=torch.bool)
        after = effects.after_each_unit(units, values, torch.ones(5, 6))
        for i in range(6):
            mask = torch.zeros(5, 6, dtype=torch.bool)
            mask[:, i] = True
            direct = model.decode(codes, Intervention(mask, values)).task_logits
            assert torch.allclose(after[:, i], direct, atol=1e-5), (name, i)


CSV_HEADER = "f1,f2,f3,colour,size,striped,warm,big,price,part"


def _mixed_csv(tmp_path, n=120):
    rng = np.random.default_rng(0)
    rows = [CSV_HEADER]
    for i in range(n):
        colour, size, striped = rng.choice(["red", "blue", "green"]), rng.normal(), rng.random() < 0.5
        size_cell = "" if i % 10 == 3 else f"{size:.3f}"
        rows.append(f"{(colour == 'red') + 0.3 * rng.normal():.3f},{size + 0.1 * rng.normal():.3f},{striped + 0.2 * rng.normal():.3f},"
                    f"{colour},{size_cell},{int(striped)},{int(colour == 'red')},{int(size > 0)},{2 * size + 1:.3f},"
                    f"{'train' if i < 80 else 'val' if i < 100 else 'test'}")
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _table_block(path, **task):
    return {"name": "table", "path": str(path), "features": ["f1", "f2", "f3"], "concepts": ["striped"],
            "categorical_concepts": ["colour"], "continuous_concepts": ["size"], "split_column": "part", **task}


def test_a_table_declares_continuous_concepts_and_multilabel_or_regression_tasks(tmp_path):
    path = _mixed_csv(tmp_path)
    labels = load_dataset(_table_block(path, task_labels=["warm", "big"]), seed=0)
    info = labels.info
    assert (info.task, info.task_names, info.continuous) == ("multilabel", ("warm", "big"), ("size",))
    assert info.concept_names[-1] == "size" and torch.isnan(labels.train.c[3, -1])  # an empty cell: a missing value
    targets = load_dataset(_table_block(path, task_targets=["price"]), seed=0)
    assert targets.info.task == "regression" and targets.train.y.shape == (80, 1)
    for block, message in [
        (_table_block(path), "name the task once"),
        (_table_block(path, task="warm", task_labels=["big"]), "name the task once"),
        (_table_block(path, task_targets=["price"], classes=["a", "b"]), "a multilabel or regression task has none"),
        (_table_block(path, task_labels=["size"]), "named twice"),
    ]:
        with pytest.raises(Exception, match=message):
            load_dataset(block, seed=0)
    path.write_text(path.read_text().replace(",0.",",big.", 1))
    with pytest.raises(ValueError, match=r"mixed.csv, column '\w+', row 2"):
        load_dataset(_table_block(path, task_targets=["price"]), seed=0)


def test_the_bench_runs_a_multilabel_table_with_continuous_concepts_and_skips_policies_that_do_not_apply(tmp_path):
    spec = parse_spec({"dataset": _table_block(_mixed_csv(tmp_path), task_labels=["warm", "big"]),
                       "models": ["blackbox", "cbm-fuzzy", "cem", "pcbm"], "seeds": 1, "train": {"max_epochs": 5},
                       "evaluation": {"intervention_policies": ["random", "uncertainty"], "intervention_repeats": 1,
                                      "intervention_competence": [1.0]}}, "mine")
    records = {r["model"]: r for r in run_grid([spec], tmp_path / "out", workers=1, progress=False).records()}
    assert records["pcbm"]["status"] == "failed" and "does not handle continuous concepts" in records["pcbm"]["error"]
    for name in ("cbm-fuzzy", "cem"):
        record = records[name]
        assert record["status"] == "ok" and list(record["interventions"]) == ["random"]
        assert "uncertainty" in record["intervention_policies_skipped"]
        assert record["task_subset_accuracy"] is not None and record["concept_r2"] is not None
        assert record["concept_alignment"] is not None  # over the binary and categorical concepts
    assert records["blackbox"]["status"] == "ok"
    checkpoint = Path(records["cem"]["checkpoint"])
    with pytest.raises(ValueError, match="the explorer shows one class prediction and 0/1 corrections"):
        load_explorer_model(checkpoint)
    assert load_explorer_model(checkpoint, skip_without_concepts=True) is None  # a bench folder: skipped, with its reason logged


def test_a_tensor_file_declares_concept_types_and_the_task(tmp_path):
    info = MIXED.info
    parts = (MIXED.train, MIXED.val, MIXED.test)
    torch.save({"x": torch.cat([p.x for p in parts]), "c": torch.cat([p.c for p in parts]), "y": torch.cat([p.y for p in parts]),
                "concept_names": list(info.concept_names), "task_names": list(info.task_names),
                "concept_groups": {g: list(m) for g, m in info.concept_groups.items()}, "categorical": ["colour"],
                "continuous": ["size"], "task": "multilabel"}, tmp_path / "mixed.pt")
    loaded = load_dataset({"name": "tensors", "path": str(tmp_path / "mixed.pt")}, seed=0)
    assert loaded.info == info and loaded.train.y.shape == (420, 3)
    torch.save({"x": torch.zeros(4, 2), "c": torch.zeros(4, 1), "y": torch.zeros(4, 2), "task": "multilabel",
                "categorical": ["nope"]}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad.pt: categorical names \['nope'\]"):
        load_dataset({"name": "tensors", "path": str(tmp_path / "bad.pt")}, seed=0)


def test_scores_of_0_1_labels_refuse_a_continuous_column_and_name_it():
    from conceptlab.metrics import concept_alignment_score, oracle_impurity_score

    c = MIXED.test.c
    with pytest.raises(ValueError, match=r"CAS scores 0/1 concept labels, but concept column\(s\) \[4\]"):
        concept_alignment_score([c[:, i:i + 1] for i in range(6)], c)
    with pytest.raises(ValueError, match=r"impurity scores 0/1 concept labels, but concept column\(s\) \[4\]"):
        oracle_impurity_score(c.unsqueeze(-1), c)


def test_a_regression_sweep_is_chosen_by_validation_r2_and_an_accuracy_that_no_run_has_is_refused(tmp_path):
    from conceptlab.bench.report import SELECTABLE, table_rows
    from conceptlab.cli import build_parser

    spec = parse_spec({"dataset": _table_block(_mixed_csv(tmp_path), task_targets=["price"]), "models": ["cbm-fuzzy"],
                       "seeds": 1, "train": {"max_epochs": 3}, "sweep": {"train.lr": [0.01, 1e-6]},
                       "evaluation": {"intervention_policies": ["random"], "intervention_repeats": 1,
                                      "intervention_competence": [1.0]}}, "prices")
    records = run_grid([spec], tmp_path / "out", workers=1, progress=False).records()
    assert all(r["status"] == "ok" and r["task_accuracy"] is None and r["val_task_r2"] is not None for r in records)
    best = max(records, key=lambda r: r["val_task_r2"])
    assert table_rows(records, [spec], select="val_task_r2")[0].chosen == best["sweep_point"]
    with pytest.raises(ValueError, match="no run records val_task_accuracy.*--select val_task_r2"):
        table_rows(records, [spec])
    from conceptlab.bench.report import terminal_summary
    assert "| model | task R^2 x 100 |" in terminal_summary(records, [spec], tmp_path / "out", select="val_task_r2")
    select = next(a for a in build_parser()._subparsers._group_actions[0].choices["report"]._actions if a.dest == "select")
    assert tuple(select.choices) == SELECTABLE  # the command line offers exactly what the report can select by


def test_intcem_trains_its_policy_with_a_categorical_and_a_continuous_concept():
    """A multiclass version of the mixed data (the class: which of the three labels hold, as a
    number): trajectories run, the policy loss is positive and the policy's weights move."""
    info = ConceptInfo(MIXED.info.concept_names, tuple(f"pattern {i}" for i in range(8)), MIXED.info.concept_groups,
                       categorical=MIXED.info.categorical, continuous=MIXED.info.continuous)
    weights = torch.tensor([1, 2, 4])
    splits = type(MIXED)(*(ConceptDataset(p.x, p.c, (p.y.long() * weights).sum(1), info)
                           for p in (MIXED.train, MIXED.val, MIXED.test)))
    with seeded(0):
        model = intcem(in_features=6, n_concepts=6, n_classes=8, units=info.group_matrix(), categorical=info.categorical_indices(),
                       continuous=info.continuous_indices(), embedding_size=4, latent_dim=8, hidden=(16,), policy_hidden=(16,))
    start = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
    report = fit(model, splits, "intcem", config=TrainConfig(max_epochs=3, device="cpu", early_stopping_patience=0,
                                                            intervention_prob=0.25))
    history = report.history["intcem"]
    assert min(history["trajectory_samples"]) > 0 and all(loss > 0 for loss in history["policy_loss"])
    assert all(not torch.equal(p.detach(), start[name]) for name, p in model.policy.named_parameters() if p.ndim > 1)
    curve = intervention_curve(model, splits.test, "learned", repeats=1)
    assert len(curve.accuracy_mean) == 4
