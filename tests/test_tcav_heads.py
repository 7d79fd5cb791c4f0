"""TCAV through every head shape: a trained single-logit binary conceptlab model explained for
both classes, with both objectives, on a planted concept whose answer is known."""

import pytest
import torch

from conceptlab.concepts import run_tcav
from conceptlab.concepts.tcav import layer_gradients, objective_value, resolve_class
from conceptlab.datasets import ConceptDataset, ConceptInfo, split_dataset
from conceptlab.models import black_box, cbm, save_model
from conceptlab.training import TrainConfig, fit, seeded

D = 6
CLASSES = ("x0 low", "x0 high")


@pytest.fixture(scope="module", params=["black_box", "cbm-logit"])
def binary_model(request):
    """A binary conceptlab model whose single task logit says 'x0 > 0' (class 1); x1..x5 are noise.

    (A sigmoid CBM is left out: its saturated concept probabilities make the task logit locally
    flat in x0 for confident inputs, so its TCAV scores are honestly weaker.)
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1500, D, generator=g)
    c = (x[:, :2] > 0).float()
    data = ConceptDataset(x, c, (x[:, 0] > 0).long(), ConceptInfo(("x0 > 0", "x1 > 0"), CLASSES))
    splits = split_dataset(data, seed=0)
    with seeded(0):
        model = black_box(in_features=D, n_classes=2, latent_dim=16, hidden=[32]) if request.param == "black_box" else cbm(in_features=D, n_concepts=2, n_classes=2, bottleneck="logit", hidden=[32])
    fit(model, splits, "joint", config=TrainConfig(max_epochs=40, device="cpu"))
    assert model.head.out_features == 1  # a binary conceptlab model: one task logit
    return model, splits.test


def _sets(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    planted = torch.randn(200, D, generator=g)
    planted[:, 0] = 2.5 + 0.3 * torch.randn(200, generator=g)  # "x0 is high": what makes class 1
    randoms = {f"random{r}": torch.randn(200, D, generator=g) for r in range(4)}
    return {"x0 high": planted}, randoms


@pytest.mark.parametrize("objective", ["logit", "loss"])
def test_both_classes_of_a_single_logit_head_get_the_known_answer(binary_model, objective):
    model, test = binary_model
    concepts, randoms = _sets()
    scores = {}
    for name in CLASSES:
        index = CLASSES.index(name)
        inputs = test.x[test.y == index][:60]
        record = run_tcav(model, ["encoder.1"], concepts, randoms=randoms, inputs=inputs, target=name, objective=objective, classes=CLASSES)[0]
        assert record["class"] == index and record["class_name"] == name
        scores[name] = record["score_mean"]
        assert record["significant"], f"{name} ({objective}): {record}"
    assert scores["x0 high"] >= 0.9  # more x0 raises class 1 ...
    assert scores["x0 low"] <= 0.1  # ... and lowers class 0


def test_class_zero_of_a_single_logit_is_the_negated_logit_and_its_own_loss(binary_model):
    model, test = binary_model
    x = test.x[:32]
    as_class = {k: layer_gradients(model, "encoder.1", x, target=k) for k in (0, 1)}
    assert torch.allclose(as_class[0], -as_class[1])
    logits = torch.tensor([[2.0], [-1.0], [40.0]], dtype=torch.float64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for k in (0, 1):
        assert torch.isclose(objective_value(logits, k, "loss"), bce(logits, torch.full_like(logits, k), reduction="sum"))
    confident = torch.tensor([[40.0]], requires_grad=True)  # sigmoid(40) == 1 in float32 and float64
    (grad,) = torch.autograd.grad(objective_value(confident, 1, "loss"), confident)
    assert grad.item() < 0  # still points the right way: the input is not dropped from the count
    loss_grads = layer_gradients(model, "encoder.1", x, target=0, objective="loss")
    assert loss_grads.abs().sum() > 0  # cross-entropy of one logit would be 0 everywhere


def test_targets_are_checked_against_the_head(binary_model):
    model, test = binary_model
    concepts, randoms = _sets()
    with pytest.raises(ValueError, match=r"out of range.*2 classes \(0=x0 low, 1=x0 high\)"):
        run_tcav(model, ["encoder.1"], concepts, randoms=randoms, inputs=test.x[:10], target=2, classes=CLASSES)
    with pytest.raises(ValueError, match=r"unknown target class 'zebra'.*0=x0 low, 1=x0 high"):
        run_tcav(model, ["encoder.1"], concepts, randoms=randoms, inputs=test.x[:10], target="zebra", classes=CLASSES)
    with pytest.raises(ValueError, match="out of range"):
        layer_gradients(model, "encoder.1", test.x[:4], target=-1)
    assert resolve_class("1", 2) == 1 and resolve_class("x0 high", 2, CLASSES) == 1
    with pytest.raises(ValueError, match="3 class names"):
        resolve_class(0, 2, ("a", "b", "c"))


def test_a_multiclass_head_uses_its_logit_and_cross_entropy():
    logits = 3 * torch.randn(5, 3, dtype=torch.float64)
    for k in range(3):
        labels = torch.full((5,), k)
        assert torch.isclose(objective_value(logits, k, "logit"), logits[:, k].sum())
        assert torch.isclose(objective_value(logits, k, "loss"), torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
    confident = torch.tensor([[60.0, 0.0, -5.0]], requires_grad=True)
    (grad,) = torch.autograd.grad(objective_value(confident, 0, "loss"), confident)
    assert grad[0, 0] < 0 and grad[0, 1] > 0  # p_0 - 1 would round to 0 here


def test_cli_accepts_both_class_names_of_a_binary_model(binary_model, tmp_path, capsys):
    from conceptlab import cli

    model, test = binary_model
    save_model(model, tmp_path / "m.pt", ConceptInfo(("x0 > 0", "x1 > 0"), CLASSES))  # the black box saves no concepts
    concepts, randoms = _sets()
    for folder, x in [("concepts/x0 high", concepts["x0 high"]), *((f"random/{k}", v) for k, v in randoms.items()),
                      ("inputs", test.x[test.y == 1][:40])]:
        (tmp_path / folder).mkdir(parents=True)
        torch.save(x, tmp_path / folder / "x.pt")
    common = ["tcav", "--model", str(tmp_path / "m.pt"), "--layers", "encoder.1", "--concepts", str(tmp_path / "concepts"),
              "--random", str(tmp_path / "random"), "--inputs", str(tmp_path / "inputs")]
    scores = {}
    for name in CLASSES:
        assert cli.main([*common, "--target", name, "--out", str(tmp_path / name)]) == 0
        scores[name] = float((tmp_path / name / "tcav.csv").read_text().splitlines()[1].split(",")[4])
    assert scores["x0 high"] >= 0.9 and scores["x0 low"] <= 0.1
    assert cli.main([*common, "--target", "5"]) == 2
    assert "out of range" in capsys.readouterr().err
