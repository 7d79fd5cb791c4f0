"""A user's own data through the bench: tensor files (.pt, .npz) and tables (CSV, Parquet), with
every error naming the file, the column and the row."""

import json

import numpy as np
import pytest
import torch

from conceptlab.bench import load_spec, parse_spec, run_grid
from conceptlab.datasets import load_dataset
from conceptlab.settings import SettingsError

CSV = """age,cough,smoker,diabetic,risk,part
41.0,2.1,yes,1,high,train
35.5,0.2,no,0,low,train
52.0,1.9,,1,high,val
29.0,-0.3,no,0,low,test
47.5,2.4,yes,0,medium,test
"""


def _table(tmp_path, text=CSV, name="patients.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _block(path, **extra):
    return {"name": "table", "path": str(path), "features": ["age", "cough"], "concepts": ["smoker", "diabetic"],
            "task": "risk", **extra}


def test_a_table_reads_labels_missing_cells_classes_and_its_split_column(tmp_path):
    path = _table(tmp_path)
    splits = load_dataset(_block(path, classes=["low", "medium", "high"], split_column="part", standardize=False), seed=0)
    assert splits.info.concept_names == ("smoker", "diabetic") and splits.info.task_names == ("low", "medium", "high")
    assert splits.train.c.tolist() == [[1.0, 1.0], [0.0, 0.0]] and splits.train.y.tolist() == [2, 0]
    assert torch.isnan(splits.val.c[0, 0]) and splits.val.c[0, 1] == 1.0  # an empty cell is a missing label
    assert torch.allclose(splits.test.x, torch.tensor([[29.0, -0.3], [47.5, 2.4]]))


def test_a_table_is_standardized_with_the_training_splits_statistics_only(tmp_path):
    splits = load_dataset(_block(_table(tmp_path), split_column="part"), seed=0)
    raw = load_dataset(_block(_table(tmp_path), split_column="part", standardize=False), seed=0)
    mean, std = raw.train.x.mean(0), raw.train.x.std(0)
    assert torch.allclose(splits.test.x, (raw.test.x - mean) / std)
    assert torch.allclose(splits.train.x.mean(0), torch.zeros(2), atol=1e-6)


@pytest.mark.parametrize("edit, message", [
    (("41.0,2.1", "forty,2.1"), "patients.csv, column 'age', row 2: 'forty' is not a number"),
    (("52.0,1.9,,1", "52.0,,,1"), "patients.csv, column 'cough', row 4: the feature is empty"),
    (("no,0,low,test", "maybe,0,low,test"), "patients.csv, column 'smoker', row 5: 'maybe' is not a concept label"),
    (("medium,test", "medium,holdout"), "patients.csv, column 'part', row 6: 'holdout' is not train, val or test"),
])
def test_a_bad_cell_is_named_by_file_column_and_row(tmp_path, edit, message):
    path = _table(tmp_path, CSV.replace(*edit))
    with pytest.raises(ValueError, match=message):
        load_dataset(_block(path, split_column="part"), seed=0)


def test_a_task_value_outside_the_declared_classes_is_named(tmp_path):
    with pytest.raises(ValueError, match="column 'risk', row 6: 'medium' is not one of dataset.classes"):
        load_dataset(_block(_table(tmp_path), classes=["low", "high"], split_column="part"), seed=0)


@pytest.mark.parametrize("block, message", [
    (lambda p: _block(p, concepts=["smoker", "wheezing"]), "has no column\\(s\\) \\['wheezing'\\]; its columns are"),
    (lambda p: _block(p, features=["age", "risk"]), "named in more than one role"),
    (lambda p: _block(p.with_suffix(".xlsx")), "should end in .csv or .parquet"),
    (lambda p: _block(p.parent / "nowhere.csv"), "dataset.path: no file at"),
    (lambda p: _block(p, fractions=[0.5, 0.1, 0.1]), "must sum to 1"),
])
def test_a_bad_table_block_stops_when_the_config_is_read(tmp_path, block, message):
    path = _table(tmp_path)
    with pytest.raises(SettingsError, match=message):
        parse_spec({"dataset": block(path), "models": ["cem"]}, "mine")


def test_parquet_reads_like_csv(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    csv = _table(tmp_path)
    pd.read_csv(csv).to_parquet(tmp_path / "patients.parquet")
    a = load_dataset(_block(csv, split_column="part"), seed=0)
    b = load_dataset(_block(tmp_path / "patients.parquet", split_column="part"), seed=0)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_a_tensor_file_becomes_seeded_splits_with_its_names(tmp_path, suffix):
    x, c, y = torch.randn(50, 4), (torch.rand(50, 3) > 0.5).float(), torch.randint(0, 3, (50,))
    path = tmp_path / f"data{suffix}"
    if suffix == ".pt":
        torch.save({"x": x, "c": c, "y": y, "concept_names": ["a", "b", "c"], "task_names": ["p", "q", "r"]}, path)
    else:
        np.savez(path, x=x.numpy(), c=c.numpy(), y=y.numpy(), concept_names=np.array(["a", "b", "c"]),
                 task_names=np.array(["p", "q", "r"]))
    splits = load_dataset({"name": "tensors", "path": str(path)}, seed=1)
    assert splits.info.concept_names == ("a", "b", "c") and splits.info.task_names == ("p", "q", "r")
    assert [len(splits.train), len(splits.val), len(splits.test)] == [35, 5, 10]
    assert torch.equal(splits.test.x, load_dataset({"name": "tensors", "path": str(path)}, seed=1).test.x)


class Payload:
    """Any object a pickle would rebuild by running code."""


def test_a_tensor_file_that_carries_code_or_lacks_a_key_is_refused_with_its_name(tmp_path):
    crafted = tmp_path / "crafted.pt"
    torch.save({"x": torch.zeros(3, 2), "c": torch.zeros(3, 1), "y": torch.zeros(3), "extra": Payload()}, crafted)
    with pytest.raises(ValueError, match="crafted.pt is not a readable torch file of tensors"):
        load_dataset({"name": "tensors", "path": str(crafted)}, seed=0)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(ValueError, match="partial.npz has no c"):  # at config read: a SettingsError
        load_dataset({"name": "tensors", "path": str(partial)}, seed=0)
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}], dtype=object), c=np.zeros((1, 1)), y=np.zeros(1))
    with pytest.raises(ValueError, match="objects.npz is not a readable .npz of arrays"):
        load_dataset({"name": "tensors", "path": str(objects)}, seed=0)


def test_editing_the_data_file_names_new_runs_and_a_relative_path_is_read_from_the_configs_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    _table(folder)
    (folder / "mine.yaml").write_text("dataset: {name: table, path: patients.csv, features: [age, cough], "
                                      "concepts: [smoker, diabetic], task: risk}\nmodels: [cem]\n")
    monkeypatch.chdir(tmp_path)  # the bench runs elsewhere; the path still resolves from the config file
    before = load_spec(str(folder / "mine.yaml")).config_hash()
    (folder / "patients.csv").write_text(CSV.replace("41.0", "42.0"))
    assert load_spec(str(folder / "mine.yaml")).config_hash() != before


def test_a_csv_runs_through_the_bench_and_its_checkpoint_rebuilds_the_data(tmp_path):
    from conceptlab.training.runs import load_run

    rng = np.random.default_rng(0)
    rows = ["f1,f2,a,b,label"]
    for _ in range(200):
        a, b = rng.random() < 0.5, rng.random() < 0.5
        cell = "" if rng.random() < 0.2 else str(int(a))  # a fifth of concept a unknown, the test split included
        rows.append(f"{2 * a - 1 + 0.3 * rng.standard_normal():.3f},{2 * b - 1 + 0.3 * rng.standard_normal():.3f},"
                    f"{cell},{int(b)},{'yes' if a != b else 'no'}")
    path = tmp_path / "xor.csv"
    path.write_text("\n".join(rows) + "\n")
    spec = parse_spec({"dataset": {"name": "table", "path": str(path), "features": ["f1", "f2"], "concepts": ["a", "b"],
                                   "task": "label"}, "models": ["cbm-logit", "cem"], "seeds": 1,
                       "train": {"max_epochs": 30}, "evaluation": {"intervention_policies": ["random"],
                                                                   "intervention_repeats": 1}}, "mine")
    records = run_grid([spec], tmp_path / "out", workers=1, progress=False).records()
    assert [r["status"] for r in records] == ["ok", "ok"]
    for record in records:
        assert 0 < record["labelled_test_samples"] < 40  # curves on the test rows with every label known
        assert len(record["interventions"]["random"]) == 3
    run = load_run(records[0]["checkpoint"])
    assert run.data.test.info.concept_names == ("a", "b") and len(run.data.test) == 40
    assert json.loads(json.dumps(run.record.dataset))["name"] == "table"


def _image_folder(tmp_path, n=30, rows_extra=""):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = ["image,red,big,label"]
    for i in range(n):
        red, big = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        pixels = np.full((16, 16, 3), 20, dtype=np.uint8)
        side = 12 if big else 5
        pixels[2:2 + side, 2:2 + side] = (230, 30, 30) if red else (30, 30, 230)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        rows.append(f"{i:02d}.png,{int(red)},{int(big)},{'yes' if red and big else 'no'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n" + rows_extra)
    return {"name": "images", "folder": str(folder), "annotations": str(tmp_path / "labels.csv"), "concepts": ["red", "big"],
            "task": "label", "backbone": "resnet18", "weights": None, "image_size": 16, "cache_dir": str(tmp_path / "cache")}


def test_an_image_folder_with_a_csv_runs_through_the_bench_on_frozen_features(tmp_path):
    block = _image_folder(tmp_path)
    spec = parse_spec({"dataset": block, "models": ["cbm-logit"], "seeds": 1, "train": {"max_epochs": 2},
                       "evaluation": {"intervention_policies": ["random"], "intervention_repeats": 1}}, "shapes")
    records = run_grid([spec], tmp_path / "out", workers=1, progress=False).records()
    assert records[0]["status"] == "ok" and len(records[0]["interventions"]["random"]) == 3
    assert list((tmp_path / "cache").rglob("*.pt"))  # the features were extracted once and cached
    finetune = load_dataset({**block, "mode": "finetune"}, seed=0)
    image, c, y = finetune.train[0]
    assert image.shape == (3, 16, 16) and finetune.info.task_names == ("no", "yes")


def test_an_image_folder_names_the_csv_row_of_a_missing_or_repeated_file(tmp_path):
    block = _image_folder(tmp_path, rows_extra="99.png,1,0,no\n")
    with pytest.raises(ValueError, match="labels.csv, column 'image', row 32: no image file at .*99.png"):
        load_dataset(block, seed=0)
    (tmp_path / "labels.csv").write_text((tmp_path / "labels.csv").read_text().replace("99.png", "00.png"))
    with pytest.raises(ValueError, match="00.png is listed more than once"):
        load_dataset(block, seed=0)
    with pytest.raises(SettingsError, match="dataset.folder: no folder at"):
        load_dataset({**block, "folder": str(tmp_path / "elsewhere")}, seed=0)
    with pytest.raises(SettingsError, match="dataset.backbone: unknown backbone 'vgg'"):
        load_dataset({**block, "backbone": "vgg"}, seed=0)


def test_an_image_folder_takes_a_categorical_column(tmp_path):
    block = _image_folder(tmp_path)
    splits = load_dataset({**block, "concepts": ["big"], "categorical_concepts": ["red"], "mode": "finetune"}, seed=0)
    assert splits.info.concept_names == ("big", "red=0", "red=1") and splits.info.categorical == ("red",)


def test_a_categorical_column_becomes_one_categorical_concept_with_a_member_per_value(tmp_path):
    rows = ["f1,f2,colour,shiny,label"]
    rng = np.random.default_rng(0)
    for i in range(120):
        colour = ["red", "green", "blue"][i % 3]
        cell = "" if i % 10 == 0 else colour  # a tenth unknown
        rows.append(f"{rng.standard_normal():.3f},{rng.standard_normal():.3f},{cell},{i % 2},{colour}")
    path = tmp_path / "colours.csv"
    path.write_text("\n".join(rows) + "\n")
    block = {"name": "table", "path": str(path), "features": ["f1", "f2"], "concepts": ["shiny"],
             "categorical_concepts": ["colour"], "task": "label"}
    splits = load_dataset(block, seed=0)
    info = splits.info
    assert info.concept_names == ("shiny", "colour=blue", "colour=green", "colour=red")
    assert info.categorical == ("colour",) and info.concept_groups["colour"] == (1, 2, 3)
    c = torch.cat([splits.train.c, splits.val.c, splits.test.c])
    known = ~torch.isnan(c[:, 1:]).any(1)
    assert torch.all(c[known][:, 1:].sum(1) == 1) and int((~known).sum()) == 12
    spec = parse_spec({"dataset": block, "models": ["cem"], "seeds": 1, "train": {"max_epochs": 2},
                       "evaluation": {"intervention_policies": ["random"], "intervention_repeats": 1}}, "colours")
    (record,) = run_grid([spec], tmp_path / "out", workers=1, progress=False).records()
    assert record["status"] == "ok" and len(record["interventions"]["random"]) == 3  # shiny and colour: 2 groups


@pytest.mark.parametrize("write, check", [
    (lambda p: p.write_text(CSV.replace(",", ";"), encoding="utf-8-sig"), "semicolons and a byte-order mark"),
    (lambda p: p.write_text(CSV.replace(",", "\t")), "tabs"),
])
def test_a_table_saved_by_a_spreadsheet_reads_the_same(tmp_path, write, check):
    path = tmp_path / "patients.csv"
    write(path)
    splits = load_dataset(_block(path, split_column="part", standardize=False), seed=0)
    reference = load_dataset(_block(_table(tmp_path, name="plain.csv"), split_column="part", standardize=False), seed=0)
    assert torch.allclose(splits.train.x, reference.train.x), check
    assert splits.info == reference.info


@pytest.mark.parametrize("content, message", [
    (CSV.replace("age,cough", "age,age", 1), "column\\(s\\) \\['age'\\] appear more than once in the header"),
    ("", "not a readable CSV table"),
    ("age,cough,smoker,diabetic,risk,part\n", "has a header but no rows"),
])
def test_a_hostile_table_is_refused_with_its_reason(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_dataset(_block(path), seed=0)


def test_a_table_that_is_not_utf8_says_so(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(CSV.encode().replace(b"high", "h\u00e9gh".encode("latin-1")))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_dataset(_block(path), seed=0)
