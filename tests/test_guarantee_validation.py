"""Guarantee: settings are checked when they are read, and every bad input gets an error that names it."""

import numpy as np
import pytest
import torch

from conceptlab import cli
from conceptlab.bench import load_spec, parse_spec
from conceptlab.bench import runner as runner_module
from conceptlab.datasets import ConceptDataset, ConceptInfo, split_dataset, xor
from conceptlab.models import Intervention, cbm
from conceptlab.training import TrainConfig, fit


def _config(tmp_path, text, dataset="{name: xor, size: 200}"):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: c\ndataset: {dataset}\nmodels: [blackbox]\nseeds: 1\n{text}")
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("dataset: {name: xor, sise: 200}", r"dataset.sise: unknown key.*known: hidden_concepts, kept_concept_groups, missing_concept_labels, name, size"),
    ("train: {max_epochs: '3'}\n", r"train.max_epochs: Input should be a valid integer \(got '3'\)"),
    ("train: {max_epochs: three}\n", r"train.max_epochs: Input should be a valid integer \(got 'three'\)"),
    ("train: {concept_class_weighting: 'no'}\n", r"train.concept_class_weighting: Input should be a valid boolean"),
    ("train: {lr: fast}\n", r"train.lr: Input should be a valid number"),
    ("train: {optimizer: rmsprop}\n", r"train.optimizer: Input should be 'adam' or 'sgd'"),
    ("evaluation: {intervention_repeats: 0}\n", r"evaluation.intervention_repeats: Input should be greater than 0"),
])
def test_bad_settings_fail_before_any_run_and_name_the_file_and_key(tmp_path, monkeypatch, text, message):
    ran = []
    monkeypatch.setattr(runner_module, "run_one", lambda plan: ran.append(plan))
    if text.startswith("dataset:"):
        path = _config(tmp_path, "", dataset=text.removeprefix("dataset: "))
    else:
        path = _config(tmp_path, text)
    with pytest.raises(ValueError, match=message) as caught:
        load_spec(path)
    assert str(caught.value).startswith(path)
    assert cli.main(["bench", path, "--out", str(tmp_path / "out")]) == 2
    assert ran == []


def test_yaml_floats_without_a_dot_are_floats_and_booleans_are_strict(tmp_path):
    spec = load_spec(_config(tmp_path, "train: {lr: 1e-3, concept_class_weighting: true}\n"))
    assert spec.train.lr == 0.001 and spec.train.concept_class_weighting is True


@pytest.mark.parametrize("top, message", [
    ("seeds: two", r"seeds: Input should be a valid integer \(got 'two'\)"),
    ("models: cem", r"models: Input should be a valid tuple \(got 'cem'\)"),
    ("models: [cbm]", r"unknown model key\(s\) \['cbm'\]"),
    ("seeds: 0", r"seeds: Input should be greater than 0"),
])
def test_top_level_values_get_clear_errors(tmp_path, top, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"dataset: {{name: xor}}\n{top}\n")
    with pytest.raises(ValueError, match=message):
        load_spec(str(path))


def test_a_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("dataset: {name: xor}\ntrain:\n  lr: 0.01\n   max_epochs: 3\n")
    with pytest.raises(ValueError, match=r"broken.yaml, line 4, column 14: not valid YAML"):
        load_spec(str(path))


def test_equal_settings_hash_equally():
    short = parse_spec({"dataset": {"name": "xor"}})
    explicit = parse_spec({"dataset": {"name": "xor", "size": 3000}, "train": {"lr": 0.01}})
    assert short.config_hash() == explicit.config_hash()
    assert parse_spec({"dataset": {"name": "xor", "size": 2000}}).config_hash() != short.config_hash()


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers: must be at least 1"),
    (["--workers", "-2"], "--workers: must be at least 1"),
    (["--seeds", "two"], "--seeds: expected a whole number"),
])
def test_bad_command_line_numbers_are_usage_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["bench", "xor", *flags])
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_an_empty_model_list_is_an_error(capsys):
    assert cli.main(["bench", "xor", "--models", ""]) == 2
    assert "no model keys given" in capsys.readouterr().err


def test_an_unwritable_output_fails_before_training_once(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(runner_module, "run_one", lambda plan: ran.append(plan))
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert cli.main(["bench", "xor", "--out", str(blocked / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("cannot write results to") == 1 and ran == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_gpu_fails_before_training(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(runner_module, "run_one", lambda plan: ran.append(plan))
    assert cli.main(["bench", "xor", "--device", "cuda", "--out", "/tmp/never-written"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err and ran == []


def test_non_finite_inputs_empty_splits_and_duplicate_names_are_rejected():
    info = ConceptInfo(("a", "b"), ("no", "yes"))
    for bad in (float("inf"), float("-inf"), float("nan")):
        x = torch.zeros(4, 3)
        x[2, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite values in 1 row"):
            ConceptDataset(x, torch.zeros(4, 2), torch.zeros(4), info)
    with pytest.raises(ValueError, match=r"concept_names must be unique; \['a'\]"):
        ConceptInfo(("a", "a"), ("no", "yes"))
    data = ConceptDataset(torch.randn(20, 2), torch.zeros(20, 2), torch.zeros(20), info)
    no_val = split_dataset(data, (0.9, 0.0, 0.1))
    with pytest.raises(ValueError, match="the validation split is empty"):
        fit(cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]), no_val, config=TrainConfig(max_epochs=1))
    no_train = split_dataset(data, (0.0, 0.5, 0.5))
    with pytest.raises(ValueError, match="the training split is empty"):
        fit(cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]), no_train, config=TrainConfig(max_epochs=1))
    with pytest.raises(ValueError, match="takes inputs of 7 features but the data's x has 2"):
        fit(cbm(in_features=7, n_concepts=2, n_classes=2, hidden=[4]), split_dataset(data), config=TrainConfig(max_epochs=1))
    # an empty dataset is a legal value (a split may be empty); what needs samples says so
    from conceptlab.interventions import intervention_curve

    with pytest.raises(ValueError, match="the data has no samples"):
        intervention_curve(cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]), no_val.val)


def test_a_runs_file_that_is_a_folder_or_binary_is_named(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(runner_module, "run_one", lambda plan: ran.append(plan))
    out = tmp_path / "out"
    (out / "runs.jsonl").mkdir(parents=True)
    assert cli.main(["bench", "xor", "--out", str(out), "--no-progress"]) == 2
    assert "runs.jsonl is not a file" in capsys.readouterr().err and ran == []
    assert cli.main(["report", str(out)]) == 2
    assert "runs.jsonl is not a file" in capsys.readouterr().err
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "runs.jsonl").write_bytes(bytes(range(256)) * 4)
    from conceptlab.bench.store import read_records

    assert read_records(binary / "runs.jsonl") == {}  # every line skipped with a warning, no UnicodeDecodeError


def test_interventions_are_checked_and_converted():
    model = cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]).eval()
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"values of binary and categorical concepts must be concept labels in \[0, 1\]"):
        model(x, Intervention(torch.ones(3, 2, dtype=torch.bool), torch.full((3, 2), 2.0)))  # the model knows the types
    with pytest.raises(ValueError, match="must be finite concept labels"):
        Intervention(torch.ones(3, 2, dtype=torch.bool), torch.full((3, 2), float("inf")))
    with pytest.raises(ValueError, match="6 intervened concept label\\(s\\) are missing"):
        Intervention(torch.ones(3, 2, dtype=torch.bool), torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="must hold booleans"):
        Intervention(torch.full((3, 2), 0.5), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="tensor, numpy array or nested list"):
        Intervention("everything", torch.zeros(3, 2))
    from_lists = Intervention([[True, False]] * 3, np.ones((3, 2)))
    assert from_lists.mask.dtype == torch.bool and from_lists.values.dtype == torch.float32
    assert torch.equal(model(x, from_lists).bottleneck[:, 0], torch.ones(3))
    with pytest.raises(ValueError, match=r"expected \(batch, n_concepts\) = \(3, 2\)"):
        model(x, Intervention(torch.ones(3, 3, dtype=torch.bool), torch.ones(3, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_an_intervention_on_another_device_is_moved():
    model = cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]).cuda().eval()
    out = model(torch.randn(3, 2, device="cuda"), Intervention.all(torch.ones(3, 2)))
    assert out.bottleneck.device.type == "cuda"


def test_intervene_refuses_a_checkpoint_whose_data_does_not_match(tmp_path, capsys):
    from conceptlab.models import save_model

    model = cbm(in_features=2, n_concepts=3, n_classes=2, hidden=[4])
    save_model(model, tmp_path / "m.pt", ConceptInfo(("a", "b", "c"), ("no", "yes")), dataset={"name": "xor"}, seed=0)
    assert cli.main(["intervene", str(tmp_path / "m.pt")]) == 2
    assert "the data do not match the model" in capsys.readouterr().err
    save_model(cbm(in_features=5, n_concepts=2, n_classes=2, hidden=[4]), tmp_path / "w.pt", xor(size=100).info, dataset={"name": "xor"}, seed=0)
    assert cli.main(["intervene", str(tmp_path / "w.pt")]) == 2
    assert "takes inputs of 5 features" in capsys.readouterr().err


def test_a_corrupt_image_in_an_example_folder_names_the_file(tmp_path):
    from PIL import Image

    from conceptlab.concepts.examples import example_sets

    folder = tmp_path / "concepts" / "stripes"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*broken.jpg"):
        example_sets(tmp_path / "concepts", 16)
