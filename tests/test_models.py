import pytest
import torch

from conceptlab.datasets import ConceptInfo
from conceptlab.models import Intervention, black_box, cbm, cem, load_model, predict, save_model


@pytest.mark.parametrize(
    "model, n_bottleneck",
    [
        (cbm(5, 3, 2), 3),
        (cbm(5, 3, 2, "logit"), 3),
        (cbm(5, 3, 2, "bool"), 3),
        (cbm(5, 3, 2, n_extra=6), 9),
        (cem(5, 3, 2, embedding_size=4), 12),
        (black_box(5, 2, 9), 9),
    ],
)
def test_binary_models_share_one_output_type(model, n_bottleneck):
    out = model(torch.randn(8, 5))
    assert out.task_logits.shape == (8, 1)
    assert out.bottleneck.shape == (8, n_bottleneck)
    if model.n_concepts:
        assert out.concept_logits.shape == out.concept_probs.shape == (8, 3)
        assert torch.allclose(out.concept_probs, torch.sigmoid(out.concept_logits))
    else:
        assert out.concept_logits is None and out.concept_probs is None


def test_multiclass_heads_have_one_logit_per_class():
    assert cbm(5, 3, 7)(torch.randn(2, 5)).task_logits.shape == (2, 7)
    assert cem(5, 3, 7, embedding_size=2)(torch.randn(2, 5)).task_logits.shape == (2, 7)


def test_bool_bottleneck_is_hard_and_hybrid_extras_follow_concepts():
    out = cbm(5, 3, 2, "bool", n_extra=2)(torch.randn(16, 5))
    assert set(out.bottleneck[:, :3].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.bottleneck[:, :3], (out.concept_probs > 0.5).float())


def test_cem_embedding_mixes_positive_and_negative_halves():
    model = cem(5, 2, 2, embedding_size=3)
    out = model(torch.randn(4, 5))
    assert out.concept_embeddings.shape == (4, 2, 3)
    assert torch.allclose(out.bottleneck.view(4, 2, 3), out.concept_embeddings)


def test_intervention_shape_is_checked():
    with pytest.raises(ValueError, match=r"expected \(batch, n_concepts\) = \(4, 3\)"):
        cbm(5, 3, 2)(torch.randn(4, 5), Intervention.all(torch.ones(4, 2)))
    with pytest.raises(ValueError, match="has no concepts"):
        black_box(5, 2, 4)(torch.randn(4, 5), Intervention.all(torch.ones(4, 3)))


def test_save_and_load_roundtrip(tmp_path):
    model = cbm(5, 3, 2, "logit", n_extra=2)
    model.calibrate_interventions(torch.randn(100, 3))
    info = ConceptInfo(("a", "b", "c"), ("no", "yes"))
    path = save_model(model, tmp_path / "m.pt", info, seed=3)
    loaded, loaded_info, meta = load_model(path)
    x = torch.randn(6, 5)
    iv = Intervention(torch.rand(6, 3) > 0.5, torch.rand(6, 3).round())
    assert torch.allclose(predict(model, x, iv).task_logits, predict(loaded, x, iv).task_logits)
    assert loaded_info == info and meta == {"seed": 3}


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "missing.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a conceptlab model file"):
        load_model(tmp_path / "other.pt")


@pytest.mark.parametrize("build, args, name", [
    ("cbm", (3, 0, 2), "n_concepts"), ("cem", (3, 2, 0), "n_classes"), ("intcem", (0, 2, 2), "in_features"),
    ("black_box", (3, 2, 0), "latent_dim"), ("linear_probe", (3, 1.5), "n_classes"), ("pcbm", (3, -1, 2), "n_concepts"),
])
def test_a_builder_names_the_size_it_cannot_use(build, args, name):
    import conceptlab.models as models

    with pytest.raises(ValueError, match=f"{name} must be a whole number >= 1"):
        getattr(models, build)(*args)
