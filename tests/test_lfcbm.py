"""Label-free CBMs on synthetic embeddings with planted concept directions: every filter removes
the decoy it is for, the projection recovers the planted concepts without reading a concept label,
and the fitted model intervenes, saves and explains like any other."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conceptlab.datasets import ConceptDataset, planted_embeddings
from conceptlab.datasets.planted import DECOYS
from conceptlab.interventions import intervention_curve
from conceptlab.models import ConceptModel, Intervention, load_model, predict, save_model
from conceptlab.training import LabelFreeConfig, fit_label_free
from conceptlab.training.labelfree import cubed_cosine_similarity


def _embeddings(data) -> dict:
    return dict(image_embeddings=data.image_embeddings[:2], text_embeddings=data.text_embeddings,
                concept_names=data.concept_names, class_text_embeddings=data.class_text_embeddings)


@pytest.fixture(scope="module")
def fitted():
    data = planted_embeddings(size=3000, seed=0)
    model, report = fit_label_free(data.splits.train, data.splits.val, **_embeddings(data))
    return data, model, report


def test_each_filter_removes_its_decoy_and_every_planted_concept_stays(fitted):
    data, _, report = fitted
    near_copy, class_name, never, invisible = DECOYS
    assert report.removed[class_name].startswith("text similar to a class name")
    assert report.removed[never].startswith("never strongly present")
    assert report.removed[invisible].startswith("not interpretable")
    # of c1 and its near-copy exactly one stays, the other is removed as too similar
    assert ("c1" in report.removed) != (near_copy in report.removed)
    planted = {"c1" if name == near_copy else name for name in report.concepts}
    assert planted == set(data.splits.info.concept_names)
    assert all(value > 0.45 for value in report.similarity)


def test_the_axes_recover_the_planted_concepts_and_the_head_is_sparse(fitted):
    data, model, report = fitted
    splits = data.labelled_as(report.concepts)
    out = predict(model, splits.test.x)
    per_axis = ((out.concept_logits > 0).float() == splits.test.c).float().mean(0)
    assert per_axis.min() > 0.95, per_axis
    assert out.task_logits.argmax(1).eq(splits.test.y).float().mean() > 0.8
    assert report.head.converged and 0 < int((model.head.weight.abs() > 1e-6).sum()) <= model.head.weight.numel()


def test_fitting_never_reads_a_concept_label():
    data = planted_embeddings(size=1000, seed=1)
    train, val = data.splits.train, data.splits.val
    blind = [ConceptDataset(part.x, torch.full_like(part.c, float("nan")), part.y, part.info) for part in (train, val)]
    fits = [fit_label_free(*parts, **_embeddings(data))[0] for parts in ((train, val), blind)]
    assert torch.equal(fits[0].projection.weight, fits[1].projection.weight)
    assert torch.equal(fits[0].head.weight, fits[1].head.weight)


def test_corrections_write_training_percentiles_and_effects_match_decoding(fitted, tmp_path):
    data, model, report = fitted
    splits = data.labelled_as(report.concepts)
    codes = model.encode(splits.test.x[:40])
    everything = Intervention.all(splits.test.c[:40])
    corrected = model.decode(codes, everything).bottleneck
    assert torch.equal(corrected, torch.where(splits.test.c[:40] > 0.5, model.intervention_high, model.intervention_low))
    partial = Intervention(torch.rand(40, model.n_concepts) < 0.5, splits.test.c[:40])
    for intervention in (None, partial):
        closed, decoded = model.concept_effects(codes, intervention), ConceptModel.concept_effects(model, codes, intervention)
        assert torch.allclose(closed.to_one, decoded.to_one, atol=1e-4)
        assert torch.allclose(closed.to_zero, decoded.to_zero, atol=1e-4)
    curve = intervention_curve(model, splits.test, "random", groups=False, repeats=2)
    assert curve.accuracy_mean[-1] >= curve.accuracy_mean[0] - 0.01
    loaded, _, _ = load_model(save_model(model, tmp_path / "lfcbm.pt", splits.info))
    assert torch.equal(predict(loaded, splits.test.x).task_logits, predict(model, splits.test.x).task_logits)


def test_the_cubed_cosine_similarity_ignores_shift_and_positive_scale_and_reads_sign():
    values = torch.randn(200, 3)
    assert torch.allclose(cubed_cosine_similarity(values, 3 * values + 5), torch.ones(3), atol=1e-5)
    assert torch.allclose(cubed_cosine_similarity(values, -values), -torch.ones(3), atol=1e-5)


def test_bad_inputs_and_an_emptied_concept_set_are_refused_with_what_to_do(fitted):
    data, _, _ = fitted
    train, val = data.splits.train, data.splits.val
    given = _embeddings(data)
    images = given["image_embeddings"]
    with pytest.raises(ValueError, match="one name per row"):
        fit_label_free(train, val, **{**given, "concept_names": data.concept_names[:-1]})
    with pytest.raises(ValueError, match="one row per image"):
        fit_label_free(train, val, **{**given, "image_embeddings": (images[0][:-1], images[1])})
    with pytest.raises(ValueError, match="share their width"):
        fit_label_free(train, val, **{**given, "text_embeddings": data.text_embeddings[:, :-1], "class_text_embeddings": None})
    with pytest.raises(ValueError, match="no concept is left.*lower the matching cutoff"):
        fit_label_free(train, val, **given, config=replace(LabelFreeConfig(), clip_cutoff=0.99))


def test_a_saved_label_free_cbm_opens_in_the_explorer_from_the_dataset_it_records(fitted, tmp_path):
    pytest.importorskip("fastapi")
    from conceptlab.explorer import Corrections, Explorer, load_explorer_model

    data, model, report = fitted
    splits = data.labelled_as(report.concepts)
    path = save_model(model, tmp_path / "lfcbm.pt", splits.info,
                      dataset={"name": "planted", "size": 3000, "labelled_as": list(report.concepts)}, seed=0)
    loaded = load_explorer_model(path)
    explorer = Explorer([loaded])
    assert torch.equal(explorer.data(loaded.name).test.c, splits.test.c)  # the planted labels of the kept concepts
    view = explorer.view(loaded.name, 0, Corrections({}))
    assert view.true_class == int(splits.test.y[0])
    _, stepped = explorer.next_step(loaded.name, 0, Corrections({}), policy="cctp")
    assert len(stepped.values) == 1
    assert "concept-uncertainty" not in explorer.policies(loaded.name)


def test_the_bench_key_fits_on_planted_data_evaluates_the_kept_concepts_and_refuses_other_data(tmp_path):
    from conceptlab.bench import parse_spec, run_grid

    spec = parse_spec({"dataset": {"name": "planted", "size": 3000}, "models": ["lfcbm"], "seeds": 1,
                       "evaluation": {"intervention_policies": ["random"], "intervention_repeats": 1}}, "p")
    (record,) = run_grid([spec], tmp_path / "p", workers=1, progress=False).records()
    assert record["status"] == "ok" and record["concept_accuracy"] > 0.95 and record["stage_epochs"]["projection"] > 0
    assert len(record["interventions"]["random"]) == 7  # six kept concepts corrected one by one
    pytest.importorskip("fastapi")
    from conceptlab.explorer import Corrections, Explorer, load_explorer_model

    loaded = load_explorer_model(Path(record["checkpoint"]))  # the record says which concepts the labels follow
    assert Explorer([loaded]).view(loaded.name, 0, Corrections({})) is not None
    other = parse_spec({"dataset": {"name": "xor", "size": 200}, "models": ["lfcbm"], "seeds": 1}, "x")
    (refused,) = run_grid([other], tmp_path / "x", workers=1, progress=False).records()
    assert refused["status"] == "failed" and "only the planted dataset" in refused["error"]
