"""Visual concepts, the planted-spurious-concept benchmark on a tiny CUB archive, and `conceptlab cce`."""

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from conceptlab.bench.counterfactuals import (
    METHODS,
    parse_counterfactual_spec,
    run_counterfactual_bench,
    write_counterfactual_reports,
)
from conceptlab.bench.counterfactuals import runner as counterfactual_runner
from conceptlab.cli import main
from conceptlab.concepts import CAVBank
from conceptlab.concepts.activations import layer_inputs
from conceptlab.datasets.visual_concepts import VISUAL_CONCEPTS, visual_concept
from conceptlab.models.io import save_exported
from tests.cub_fixture import build_cub


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return build_cub(tmp_path_factory.mktemp("cub"), image_labels=False)


def test_visual_concepts_are_deterministic_in_range_and_change_the_image():
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert len(VISUAL_CONCEPTS) >= 12
    for name, edit in VISUAL_CONCEPTS.items():
        edited = edit(x)
        assert edited.shape == x.shape, name
        assert edited.min() >= 0 and edited.max() <= 1, name
        assert torch.equal(edited, edit(x)), name
        assert (edited - x).abs().mean() > 0.02, name
    with pytest.raises(ValueError, match="unknown visual concept 'stars'"):
        visual_concept("stars")


def test_an_edit_at_part_strength_blends_towards_the_full_edit():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    full = visual_concept("sepia")(x)
    assert torch.allclose(visual_concept("sepia@0.5")(x), 0.5 * x + 0.5 * full)
    assert torch.equal(visual_concept("sepia@1")(x), full)
    for bad in ("sepia@0", "sepia@1.5", "sepia@half"):
        with pytest.raises(ValueError, match=r"strength .* must be a number in \(0, 1\]"):
            visual_concept(bad)


def test_edits_compose_left_to_right():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert torch.equal(visual_concept("stripes+sepia@0.5")(x), visual_concept("sepia@0.5")(visual_concept("stripes")(x)))
    with pytest.raises(ValueError, match="unknown visual concept 'stars'"):
        visual_concept("sepia+stars")


def test_spec_reads_faint_concepts_and_harder_scenarios():
    spec = parse_counterfactual_spec({"bank": {"visual": ["grayscale", "sepia"], "faint": ["blur@0.4"], "alpha": 0.5},
                           "scenarios": {"count": 2, "harder": [{"plant": "sepia@0.5", "concept": "sepia"},
                                                                {"plant": "blur@0.4"}]}})
    kinds = [(s.plant, s.concept, s.kind) for s in spec.scenario_list()]
    assert kinds == [("grayscale", "grayscale", "standard"), ("sepia", "sepia", "standard"),
                     ("sepia@0.5", "sepia", "part strength"), ("blur@0.4", "blur@0.4", "faint")]
    assert spec.bank_alpha == 0.5
    with pytest.raises(ValueError, match="not in the bank"):
        parse_counterfactual_spec({"bank": {"visual": ["grayscale"]}, "scenarios": {"harder": [{"plant": "sepia"}]}})
    with pytest.raises(ValueError, match="no scenarios"):
        parse_counterfactual_spec({"scenarios": {"count": 0}})
    assert parse_counterfactual_spec({"scenarios": {"harder": [{"plant": "grayscale@0.5", "concept": "grayscale"}]}},
                          quick=True).harder == ()  # a quick run keeps to the standard scenarios


def test_spec_rejects_unknown_keys_and_concepts():
    with pytest.raises(ValueError, match=r"solver.gamma: unknown key.*known: alpha, beta"):
        parse_counterfactual_spec({"solver": {"gamma": 1}})
    with pytest.raises(ValueError, match="dataset.mode: does not apply"):
        parse_counterfactual_spec({"dataset": {"mode": "finetune"}})
    with pytest.raises(ValueError, match=r"solver.steps: Input should be a valid integer \(got 'ten'\)"):
        parse_counterfactual_spec({"solver": {"steps": "ten"}})
    with pytest.raises(ValueError, match="unknown visual concept"):
        parse_counterfactual_spec({"bank": {"visual": ["grayscale", "stars"]}})
    with pytest.raises(ValueError, match="--root"):
        parse_counterfactual_spec({}).check_ready()
    assert parse_counterfactual_spec({}, quick=True).scenarios == 3


def test_benchmark_runs_resumes_and_reports_on_a_tiny_archive(archive, tmp_path, monkeypatch):
    raw = {"dataset": {"root": str(archive), "backbone": "resnet18", "weights": None, "image_size": 32,
                       "cache_dir": str(tmp_path / "cache")},
           "bank": {"visual": ["grayscale", "red_tint", "border"], "examples": 3},
           "scenarios": {"count": 3}, "solver": {"steps": 20}}
    spec = parse_counterfactual_spec(raw)
    out = tmp_path / "out"
    store = run_counterfactual_bench(spec, out, progress=False)
    records = store.records()
    assert len(records) == 3 * len(METHODS)
    assert {r["concept"] for r in records} == {"grayscale", "red_tint", "border"}
    bank = CAVBank.load(out / "bank.pt")
    assert [p for p, _ in bank.pairs_] == ["grayscale", "red_tint", "border"]  # attributes: too few images
    assert bank.saved_metadata["head"] == "head" and len(bank.saved_metadata["classes"]) == 3
    with_mistakes = [r for r in records if r["mistakes"]]
    for r in with_mistakes:
        assert 1 <= r["mean_rank"] <= 3 and 0 <= r["precision_at_3"] <= 1
    markdown = write_counterfactual_reports(records, spec, out)
    assert "| cce |" in markdown and (out / "table.csv").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished scenario was trained again")

    monkeypatch.setattr(counterfactual_runner, "fit_linear_head", no_training)
    assert len(run_counterfactual_bench(spec, out, progress=False).records()) == 3 * len(METHODS)


def test_linear_head_probe_learns_separable_classes():
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(30)
    x = torch.randn(90, 8, generator=generator) + 3 * nn.functional.one_hot(y, 8).float()
    head = counterfactual_runner.fit_linear_head(x, y, 3, weight_decay=1e-3)
    assert (head(x).argmax(1) == y).float().mean() > 0.95


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Sequential(OrderedDict(backbone=backbone, fc=nn.Linear(8, 3))).eval()


def test_cli_explains_images_and_writes_figures(archive, tmp_path, capsys):
    from conceptlab.datasets.cub import load_cub
    from conceptlab.datasets.transforms import image_transform

    model = _tiny_model()
    images = load_cub(archive, val_fraction=0.0).train
    x = torch.stack([image_transform(32)(images[i][0]) for i in range(len(images))])
    save_exported(model, x[:1], tmp_path / "model.pt2")  # a torch.export program: no pickle
    pairs, sets = [], {}
    for name in ("grayscale", "red_tint"):
        sets[name] = layer_inputs(model, "fc", visual_concept(name)(x[:6]))
        sets[f"{name}:neg"] = layer_inputs(model, "fc", x[6:])
        pairs.append((name, f"{name}:neg"))
    CAVBank().fit(sets, pairs).save(tmp_path / "bank.pt", head="fc", classes=["a", "b", "c"], image_size=32)
    paths = [str(p) for p in images.paths[:2]]
    code = main(["cce", "--model", str(tmp_path / "model.pt2"), "--bank", str(tmp_path / "bank.pt"), "--images", *paths,
                 "--target", "b", "--out", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "add:" in printed and "remove:" in printed
    records = json.loads((tmp_path / "out" / "cce.json").read_text())
    assert len(records) == 2 and records[0]["target"] == "b"
    assert all((tmp_path / "out" / f"{images.paths[i].stem}.png").is_file() for i in range(2))
    assert main(["cce", "--model", str(tmp_path / "model.pt2"), "--bank", str(tmp_path / "bank.pt"),
                 "--images", paths[0], "--target", "zebra"]) == 2
    assert "unknown target class 'zebra'" in capsys.readouterr().err
    assert main(["cce", "--model", str(tmp_path / "model.pt2"), "--bank", str(tmp_path / "bank.pt"),
                 "--images", str(tmp_path / "nope.jpg"), "--target", "1"]) == 2
    assert "no image at" in capsys.readouterr().err
    for flag, value in (("--alpha", "nan"), ("--alpha", "-1"), ("--beta", "inf"), ("--lr", "-1")):  # printed p = nan before
        assert main(["cce", "--model", str(tmp_path / "model.pt2"), "--bank", str(tmp_path / "bank.pt"),
                     "--images", paths[0], "--target", "1", flag, value, "--out", str(tmp_path / "bad")]) == 2
        assert flag[2:] in capsys.readouterr().err and not (tmp_path / "bad" / "cce.json").exists()


def test_bench_cli_asks_for_the_images_and_runs_cce_alone(capsys):
    assert main(["bench", "cce"]) == 2
    assert "pass --root PATH" in capsys.readouterr().err
    assert main(["bench", "cce", "xor"]) == 2
    assert "on its own" in capsys.readouterr().err
    assert main(["bench", "cce", "--root", "/nonexistent", "--seeds", "2"]) == 2
    assert "--seeds do not apply" in capsys.readouterr().err


def test_explain_images_is_the_library_side_of_the_command(archive, tmp_path):
    from conceptlab.concepts import explain_images
    from conceptlab.datasets.cub import load_cub
    from conceptlab.datasets.transforms import image_transform

    model = _tiny_model()
    images = load_cub(archive, val_fraction=0.0).train
    x = torch.stack([image_transform(32)(images[i][0]) for i in range(len(images))])
    sets = {"grayscale": layer_inputs(model, "fc", visual_concept("grayscale")(x[:6])),
            "grayscale:neg": layer_inputs(model, "fc", x[6:])}
    bank = CAVBank().fit(sets, [("grayscale", "grayscale:neg")])
    with pytest.raises(ValueError, match="does not say which layer's input"):
        explain_images(model, bank, images.paths[0], target=1)
    bank.saved_metadata = {"head": "fc", "classes": ["a", "b", "c"], "image_size": 32}  # as CAVBank.load gives it
    found = explain_images(model, bank, images.paths[0].parent, target="c", steps=20)
    assert found.head == "fc" and found.target == 2 and found.class_name(2) == "c" and found.images.shape[-1] == 32
    assert len(found.files) == found.result.weights.shape[0] == found.images.shape[0] > 0
