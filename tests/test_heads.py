"""The task-head convention (models.heads): one logit is a binary task, else one logit per class;
every reading of the logits agrees with the others for both head shapes."""

import pytest
import torch
import torch.nn.functional as F

from conceptlab.models.heads import (
    class_log_probs,
    class_logits,
    gradient_safe_loss,
    n_classes,
    predicted_class,
    task_loss,
    task_outputs,
    true_class_logit,
    weights_per_class,
)

HEADS = {"binary": (torch.randn(64, 1, generator=torch.Generator().manual_seed(0)), 2),
         "multiclass": (torch.randn(64, 5, generator=torch.Generator().manual_seed(1)), 5)}


@pytest.mark.parametrize("head", HEADS)
def test_every_reading_of_a_head_agrees(head):
    logits, classes = HEADS[head]
    y = torch.randint(0, classes, (64,), generator=torch.Generator().manual_seed(2))
    log_probs = class_log_probs(logits)
    assert n_classes(logits) == classes == log_probs.shape[1]
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(64))
    assert torch.equal(predicted_class(logits), log_probs.argmax(1))
    assert torch.allclose(class_logits(logits).log_softmax(1), log_probs, atol=1e-6)
    assert torch.allclose(task_loss(logits, y, reduction="none"), -log_probs.gather(1, y[:, None]).squeeze(1), atol=1e-6)
    if classes == 2:  # the true class's logit is the log-odds of the true class
        odds = log_probs.gather(1, y[:, None]).squeeze(1) - log_probs.gather(1, 1 - y[:, None]).squeeze(1)
        assert torch.allclose(true_class_logit(logits, y), odds, atol=1e-5)
    else:
        assert torch.equal(true_class_logit(logits, y), logits[torch.arange(64), y])


def test_a_threshold_moves_only_binary_decisions():
    z = torch.tensor([[0.2], [0.7], [-1.0]])
    assert predicted_class(z).tolist() == [1, 1, 0]
    assert predicted_class(z, binary_threshold=0.5).tolist() == [0, 1, 0]
    many = torch.tensor([[0.1, 0.9, 0.0]])
    assert predicted_class(many, binary_threshold=0.5).tolist() == [1]


def test_true_class_logit_keeps_extra_axes():
    stacked = torch.randn(3, 4, 1)  # e.g. one logit per candidate correction
    y = torch.tensor([1, 0, 1])
    expected = torch.where(y.bool()[:, None], stacked[..., 0], -stacked[..., 0])
    assert torch.equal(true_class_logit(stacked, y), expected)


def test_head_sizes_and_bad_class_counts():
    assert (task_outputs(2), task_outputs(7)) == (1, 7)
    with pytest.raises(ValueError, match="at least 2"):
        task_outputs(1)
    assert F.binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0])) == task_loss(
        torch.tensor([[0.0]]), torch.tensor([1]))


@pytest.mark.parametrize("head", HEADS)
def test_the_gradient_safe_loss_is_the_training_loss_and_keeps_its_gradient(head):
    logits, classes = HEADS[head]
    for target in range(classes):
        y = torch.full((64,), target)
        assert torch.allclose(gradient_safe_loss(logits, target).float(), task_loss(logits, y, reduction="none"), atol=1e-6)
    confident = (torch.tensor([[40.0]]) if classes == 2 else torch.tensor([[40.0, 0.0, 0.0, 0.0, 0.0]])).requires_grad_()
    right = 1 if classes == 2 else 0  # a confident, correct prediction
    gradient_safe_loss(confident, right).sum().backward()
    assert confident.grad.abs().sum() > 0  # the textbook form's gradient rounds to exactly 0 here
    if classes == 2:
        textbook = confident.detach().clone().requires_grad_()
        task_loss(textbook, torch.tensor([right])).backward()
        assert textbook.grad.abs().sum() == 0


def test_a_binary_linear_head_reads_as_opposite_weights_per_class():
    w = torch.tensor([[0.5, -2.0]])
    assert torch.equal(weights_per_class(w), torch.tensor([[-0.5, 2.0], [0.5, -2.0]]))
    many = torch.randn(3, 2)
    assert torch.equal(weights_per_class(many), many)
