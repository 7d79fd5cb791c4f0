import pytest
import torch

from conceptlab.datasets import ConceptInfo
from conceptlab.models import Intervention, black_box, cbm, cem, load_model, predict, save_model


@pytest.mark.parametrize(
    "model, n_bottleneck",
    [
        (cbm(in_features=5, n_concepts=3, n_classes=2), 3),
        (cbm(in_features=5, n_concepts=3, n_classes=2, bottleneck="logit"), 3),
        (cbm(in_features=5, n_concepts=3, n_classes=2, bottleneck="bool"), 3),
        (cbm(in_features=5, n_concepts=3, n_classes=2, n_extra=6), 9),
        (cem(in_features=5, n_concepts=3, n_classes=2, embedding_size=4), 12),
        (black_box(in_features=5, n_classes=2, latent_dim=9), 9),
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
    assert cbm(in_features=5, n_concepts=3, n_classes=7)(torch.randn(2, 5)).task_logits.shape == (2, 7)
    assert cem(in_features=5, n_concepts=3, n_classes=7, embedding_size=2)(torch.randn(2, 5)).task_logits.shape == (2, 7)


def test_bool_bottleneck_is_hard_and_hybrid_extras_follow_concepts():
    out = cbm(in_features=5, n_concepts=3, n_classes=2, bottleneck="bool", n_extra=2)(torch.randn(16, 5))
    assert set(out.bottleneck[:, :3].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.bottleneck[:, :3], (out.concept_probs > 0.5).float())


def test_cem_embedding_mixes_positive_and_negative_halves():
    model = cem(in_features=5, n_concepts=2, n_classes=2, embedding_size=3)
    out = model(torch.randn(4, 5))
    assert out.concept_embeddings.shape == (4, 2, 3)
    assert torch.allclose(out.bottleneck.view(4, 2, 3), out.concept_embeddings)


def test_intervention_shape_is_checked():
    with pytest.raises(ValueError, match=r"expected \(batch, n_concepts\) = \(4, 3\)"):
        cbm(in_features=5, n_concepts=3, n_classes=2)(torch.randn(4, 5), Intervention.all(torch.ones(4, 2)))
    with pytest.raises(ValueError, match="has no concepts"):
        black_box(in_features=5, n_classes=2, latent_dim=4)(torch.randn(4, 5), Intervention.all(torch.ones(4, 3)))


def test_save_and_load_roundtrip(tmp_path):
    model = cbm(in_features=5, n_concepts=3, n_classes=2, bottleneck="logit", n_extra=2)
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


@pytest.mark.parametrize("build, kwargs, name", [
    ("cbm", dict(in_features=3, n_concepts=0, n_classes=2), "n_concepts"),
    ("cem", dict(in_features=3, n_concepts=2, n_classes=0), "n_classes"),
    ("intcem", dict(in_features=0, n_concepts=2, n_classes=2), "in_features"),
    ("black_box", dict(in_features=3, n_classes=2, latent_dim=0), "latent_dim"),
    ("linear_probe", dict(in_features=3, n_classes=1.5), "n_classes"),
    ("pcbm", dict(in_features=3, n_concepts=-1, n_classes=2), "n_concepts"),
])
def test_a_builder_names_the_size_it_cannot_use(build, kwargs, name):
    from conceptlab.models import get_model

    with pytest.raises(ValueError, match=f"{name} must be a whole number >= 1"):
        get_model(build, **kwargs)


def test_every_builder_is_registered_keyword_only_and_records_its_call():
    """The registry is the one table of builders: each takes keyword arguments only, and a model
    it builds records exactly the call (minus weights files), which rebuild replays."""
    import inspect

    from conceptlab.models import list_models, registry

    assert list_models() == ["black_box", "cbm", "cem", "dcr", "intcem", "lfcbm", "linear_probe", "mixcem", "pcbm", "probcbm", "scbm", "whitening"]
    with pytest.raises(TypeError, match="positional"):
        cbm(5, 3, 2)
    for name in list_models():
        builder = registry._BUILDERS[name]
        parameters = inspect.signature(builder).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters), name
    model = cbm(in_features=5, n_concepts=3, n_classes=2, hidden=(7,), backbone_weights=None)
    assert model.build_spec == {"builder": "cbm", "kwargs": {
        "in_features": 5, "n_concepts": 3, "n_classes": 2, "bottleneck": "sigmoid", "n_extra": 0, "hidden": [7],
        "backbone": None, "categorical": [], "continuous": [], "task": "multiclass"}}
    again = registry.rebuild(model.build_spec)
    assert again.build_spec == model.build_spec and type(again) is type(model)
    with pytest.raises(ValueError, match="unknown model builder 'nope'; choose one of black_box, cbm"):
        registry.get_model("nope")


def test_a_registered_builder_of_your_own_saves_and_loads(tmp_path):
    from torch import nn

    from conceptlab.models import BlackBoxModel, register_model, registry

    @register_model("test_wide_probe")
    def wide_probe(*, in_features: int, n_classes: int, width: int = 3) -> BlackBoxModel:
        return BlackBoxModel(nn.Linear(in_features, width), latent_dim=width, n_classes=n_classes)

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model("test_wide_probe")(wide_probe)
        with pytest.raises(TypeError, match="keyword-only"):
            register_model("test_positional")(lambda in_features: None)
        model = wide_probe(in_features=4, n_classes=3, width=5)
        path = save_model(model, tmp_path / "m.pt", ConceptInfo((), ("a", "b", "c")))
        loaded, _, _ = load_model(path)
        x = torch.randn(6, 4)
        assert torch.equal(loaded(x).task_logits, model.eval()(x).task_logits)
    finally:
        registry._BUILDERS.pop("test_wide_probe")
