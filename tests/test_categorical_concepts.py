"""Categorical concepts: a group of one-hot members with a softmax, a cross-entropy term, one
correction for the whole group, and accuracy by its most probable value."""

import pytest
import torch

from conceptlab.datasets import ConceptDataset, ConceptInfo, split_dataset
from conceptlab.models import Intervention, cbm, cem, load_model, save_model
from conceptlab.training import TrainConfig, concept_loss, fit

INFO = ConceptInfo(("red", "green", "blue", "yellow", "bright"), ("a", "b", "c"),
                   {"colour": (0, 1, 2, 3), "bright": (4,)}, categorical=("colour",))


def colours(n: int = 1200, seed: int = 0):
    """A 4-way colour and a binary brightness read off noisy inputs; the class is (colour + bright) mod 3."""
    g = torch.Generator().manual_seed(seed)
    colour, bright = torch.randint(0, 4, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
    centres = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
    x = torch.cat([centres[colour], (2.0 * bright - 1).unsqueeze(1)], 1) + 0.4 * torch.randn(n, 3, generator=g)
    c = torch.cat([torch.nn.functional.one_hot(colour, 4).float(), bright.unsqueeze(1).float()], 1)
    return split_dataset(ConceptDataset(x, c, (colour + bright) % 3, INFO), seed=seed)


def test_the_info_names_categorical_groups_and_refuses_what_cannot_be_one():
    assert INFO.categorical_indices() == ((0, 1, 2, 3),)
    assert ConceptInfo.from_dict(INFO.to_dict()) == INFO
    with pytest.raises(ValueError, match="not concept groups"):
        ConceptInfo(("a", "b"), ("n", "y"), categorical=("colour",))
    with pytest.raises(ValueError, match="have one member"):
        ConceptInfo(("a", "b"), ("n", "y"), categorical=("a",))


def test_a_categorical_row_must_be_one_hot_or_wholly_missing():
    nan = float("nan")
    good = torch.tensor([[0, 1, 0, 0, 1], [nan, nan, nan, nan, 0]], dtype=torch.float32)
    ConceptDataset(torch.randn(2, 3), good, torch.tensor([0, 1]), INFO)
    with pytest.raises(ValueError, match="categorical concept 'colour': row 1 is not one-hot"):
        ConceptDataset(torch.randn(2, 3), torch.tensor([[0, 1, 0, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.float32),
                       torch.tensor([0, 1]), INFO)


@pytest.mark.parametrize("build", [
    lambda: cbm(in_features=3, n_concepts=5, n_classes=3, categorical=INFO.categorical_indices(), hidden=(8,)),
    lambda: cem(in_features=3, n_concepts=5, n_classes=3, categorical=INFO.categorical_indices(), embedding_size=4,
                latent_dim=8, hidden=(8,)),
])
def test_models_give_a_categorical_concept_a_softmax_and_save_it(build, tmp_path):
    model = build().eval()
    out = model(torch.randn(6, 3))
    assert torch.allclose(out.concept_probs[:, :4].sum(1), torch.ones(6))
    assert torch.allclose(out.concept_probs[:, 4], torch.sigmoid(out.concept_logits[:, 4]))
    loaded, info, _ = load_model(save_model(model, tmp_path / "m.pt", INFO))
    assert loaded.categorical == ((0, 1, 2, 3),) and info.categorical == ("colour",)


def test_a_hard_bottleneck_holds_one_value_of_a_categorical_concept():
    model = cbm(in_features=3, n_concepts=5, n_classes=3, bottleneck="bool", categorical=INFO.categorical_indices())
    bottleneck = model(torch.randn(20, 3)).bottleneck
    assert torch.all(bottleneck[:, :4].sum(1) == 1)


def test_the_loss_is_one_cross_entropy_per_categorical_concept_and_skips_missing_values():
    logits = torch.randn(4, 5, requires_grad=True)
    c = torch.tensor([[0, 1, 0, 0, 1], [0, 0, 0, 1, 0], [1, 0, 0, 0, 1], [0, 0, 1, 0, 0]], dtype=torch.float32)
    c[3, :4] = float("nan")
    loss = concept_loss(logits, c, categorical=INFO.categorical_indices())
    known = torch.tensor([0, 1, 2])
    ce = torch.nn.functional.cross_entropy(logits[known, :4], c[known, :4].argmax(1), reduction="sum")
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 4], c[:, 4], reduction="sum")
    assert torch.allclose(loss, (ce + bce) / (3 + 4))
    loss.backward()
    assert torch.all(logits.grad[3, :4] == 0.0) and torch.all(logits.grad[:3, :4] != 0.0)


def test_randint_corrects_a_categorical_concept_whole():
    from conceptlab.training import ConceptLearner, recipe_stages

    config = TrainConfig(intervention_prob=0.5)
    model = cem(in_features=3, n_concepts=5, n_classes=3, categorical=INFO.categorical_indices(), embedding_size=4)
    learner = ConceptLearner(model, recipe_stages("joint", config)[0], config)
    c = colours(200).train.c
    torch.manual_seed(0)
    mask = learner._intervention(c, training=True).mask
    assert torch.all(mask[:, :4] == mask[:, :1]) and 0 < mask[:, 0].float().mean() < 1


def test_accuracy_reads_a_categorical_concept_by_its_most_probable_value_and_curves_correct_it_whole():
    from conceptlab.interventions import intervention_curve
    from conceptlab.metrics import concept_accuracy

    probs = torch.tensor([[0.1, 0.6, 0.2, 0.1, 0.9], [0.4, 0.3, 0.2, 0.1, 0.2]])
    c = torch.tensor([[0, 1, 0, 0, 1], [0, 0, 1, 0, 1]], dtype=torch.float32)
    assert concept_accuracy(probs, c, INFO.categorical_indices()) == 0.5  # colour: 1 of 2; bright: 1 of 2
    data = colours(300)
    model = cbm(in_features=3, n_concepts=5, n_classes=3, categorical=INFO.categorical_indices(), hidden=(8,))
    with pytest.raises(ValueError, match="corrected as a whole: use groups=True"):
        intervention_curve(model, data.test, groups=False, repeats=1)
    assert len(intervention_curve(model, data.test, groups=True, repeats=1).accuracy_mean) == 3


def test_correcting_a_categorical_concept_brings_a_jointly_trained_cem_to_the_concepts_ceiling():
    """The task is a function of the concepts, so the concepts-only ceiling is 100 %."""
    from conceptlab.interventions import intervention_curve

    data = colours(1500)
    torch.manual_seed(0)
    model = cem(in_features=3, n_concepts=5, n_classes=3, categorical=INFO.categorical_indices(), embedding_size=8,
                latent_dim=32, hidden=(32,))
    fit(model, data, "joint", config=TrainConfig(max_epochs=60, intervention_prob=0.25, device="cpu"))
    curve = intervention_curve(model, data.test, "random", repeats=2)
    assert curve.accuracy_mean[-1] >= 0.99
    corrected = model.eval()(data.test.x, Intervention(torch.tensor([[True] * 4 + [False]]).expand(len(data.test), -1),
                                                       data.test.c))
    assert torch.allclose(corrected.concept_probs[:, :4].sum(1), torch.ones(len(data.test)))
