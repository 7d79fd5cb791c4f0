"""Reading a trained run back (training.runs): one decoder of checkpoint records, used by
`conceptlab intervene` and the explorer."""

import pytest
import torch

from conceptlab import cli
from conceptlab.datasets import load_dataset
from conceptlab.datasets.registry import dataset_settings
from conceptlab.info import ConceptInfo
from conceptlab.models import cbm, save_model
from conceptlab.training.runs import RunRecord, load_run

XOR = {"name": "xor", "size": 200}


def _saved(tmp_path, **metadata):
    data = load_dataset(dataset_settings(XOR), seed=3)
    model = cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]).eval()
    return model, save_model(model, tmp_path / "m.pt", data.info, **metadata), data


def test_a_bench_checkpoint_gives_back_its_model_record_and_exact_data(tmp_path):
    model, path, data = _saved(tmp_path, dataset=XOR, seed=3, evaluation={"binary_threshold": 0.5}, bench="b",
                               model_key="cbm-fuzzy", config_hash="abc")
    run = load_run(path)
    assert run.record == RunRecord(XOR, 3, 0.5, "b", "cbm-fuzzy", {"config_hash": "abc"})
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(run.data, part).x, getattr(data, part).x)
    assert torch.equal(run.model(data.test.x).task_logits, model(data.test.x).task_logits)
    assert run.data.image_paths == [] and not run.model.training


def test_records_without_data_or_with_other_data_are_refused_with_the_fix(tmp_path):
    _, path, _ = _saved(tmp_path)
    with pytest.raises(ValueError, match=r"does not record the dataset.*save_model\(\.\.\., dataset="):
        load_run(path)
    with pytest.raises(ValueError, match="generated, not read"):
        save_model(cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]), tmp_path / "x.pt", load_dataset(dataset_settings(XOR), seed=0).info,
                   dataset=XOR, seed=0)
        load_run(tmp_path / "x.pt", data_root=tmp_path)
    other = save_model(cbm(in_features=2, n_concepts=3, n_classes=2, hidden=[4]), tmp_path / "o.pt", ConceptInfo(("a", "b", "c"), ("no", "yes")),
                       dataset=XOR, seed=0)
    with pytest.raises(ValueError, match="the data do not match the model"):
        load_run(other)


def test_intervene_reads_runs_through_load_run(tmp_path, capsys):
    _, path, _ = _saved(tmp_path, dataset=XOR, seed=3)
    assert cli.main(["intervene", str(path), "--repeats", "1", "--out", str(tmp_path / "out")]) == 0
    assert "test split of xor seed 3" in capsys.readouterr().out
    _, bare, _ = _saved(tmp_path)
    assert cli.main(["intervene", str(bare)]) == 2
    assert "does not record the dataset" in capsys.readouterr().err
