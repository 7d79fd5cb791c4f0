"""Task metrics beyond accuracy (balanced, top-5) and class-weighted task losses, for every head shape."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conceptlab.metrics import balanced_accuracy, top_k_accuracy
from conceptlab.models.heads import task_loss
from conceptlab.training import task_class_weights


def test_balanced_accuracy_is_the_mean_recall_for_one_logit_and_for_several():
    y = torch.tensor([0, 0, 0, 1])
    assert balanced_accuracy(torch.full((4, 1), 2.0), y) == 0.5  # always class 1: recalls 0 and 1
    logits = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    assert balanced_accuracy(logits, torch.tensor([0, 1, 1, 2])) == pytest.approx((1.0 + 0.5 + 1.0) / 3)


def test_top_5_reads_one_binary_logit_as_two_classes_and_is_none_for_five_classes_or_fewer():
    assert top_k_accuracy(torch.randn(4, 1), torch.tensor([0, 1, 0, 1])) is None
    assert top_k_accuracy(torch.randn(4, 5), torch.tensor([0, 1, 2, 3])) is None
    logits = torch.arange(8.0).repeat(2, 1)  # class 7 highest, class 0 lowest
    assert top_k_accuracy(logits, torch.tensor([3, 2])) == 0.5


@pytest.mark.parametrize("outputs", [1, 3])
def test_a_class_weighted_task_loss_is_the_weighted_mean_for_every_head_shape(outputs):
    logits, y = torch.randn(6, outputs), torch.tensor([0, 1, 1, 0, 1, 0]) if outputs == 1 else torch.tensor([0, 1, 2, 2, 1, 0])
    weight = torch.tensor([2.0, 0.5]) if outputs == 1 else torch.tensor([2.0, 0.5, 1.0])
    per_sample = task_loss(logits, y, reduction="none")
    expected = (weight[y] * per_sample).sum() / weight[y].sum()
    assert torch.allclose(task_loss(logits, y, class_weight=weight), expected)
    assert torch.allclose(task_loss(logits, y, class_weight=torch.ones_like(weight)), task_loss(logits, y))
    if outputs > 1:  # the same as torch's own weighted cross-entropy
        assert torch.allclose(task_loss(logits, y, class_weight=weight), F.cross_entropy(logits, y, weight=weight))


def test_balanced_class_weights_follow_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    ours = task_class_weights(y, 3)
    theirs = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    assert torch.allclose(ours, torch.tensor(theirs, dtype=torch.float32))
    assert task_class_weights(torch.tensor([0, 0, 1]), 3)[2] == 1.0  # a class never seen


def test_task_class_weighting_reaches_the_learners_loss():
    from conceptlab.models import cbm
    from conceptlab.training import ConceptLearner, TrainConfig, recipe_stages

    config = TrainConfig(task_class_weighting=True)
    weight = torch.tensor([3.0, 1.0])
    model = cbm(in_features=2, n_concepts=2, n_classes=2, hidden=(4,))
    learner = ConceptLearner(model, recipe_stages("joint", config)[0], config, class_weight=weight)
    x, c, y = torch.randn(8, 2), (torch.rand(8, 2) > 0.5).float(), torch.tensor([0, 1] * 4)
    terms = learner.loss_terms((x, c, y), training=False)
    assert torch.allclose(terms["task"], task_loss(model(x).task_logits, y, class_weight=weight))


def test_fit_weights_the_task_by_the_training_classes_and_the_bench_reports_the_new_metrics(tmp_path):
    from conceptlab.bench import parse_spec, run_grid, write_reports

    spec = parse_spec({"dataset": {"name": "xor", "size": 300}, "models": ["cbm-logit"], "seeds": 1,
                       "train": {"max_epochs": 2, "task_class_weighting": True},
                       "evaluation": {"intervention_policies": ["random"], "intervention_repeats": 1}}, "weighted")
    records = run_grid([spec], tmp_path, workers=1, progress=False).records()
    assert records[0]["status"] == "ok" and 0 <= records[0]["task_balanced_accuracy"] <= 1
    assert records[0]["task_top5_accuracy"] is None and records[0]["config"]["train"]["task_class_weighting"] is True
    write_reports(records, [spec], tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert "| balanced accuracy |" in table and "top-5" not in table


def test_the_command_line_offers_every_selection_metric():
    from conceptlab.bench.report import SELECTABLE
    from conceptlab.cli import build_parser

    parser = build_parser()
    bench = next(a for a in parser._subparsers._group_actions[0].choices["bench"]._actions if a.dest == "select")
    assert tuple(bench.choices) == SELECTABLE
