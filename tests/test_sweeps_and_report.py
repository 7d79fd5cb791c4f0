"""Sweeps select on the validation split only; `conceptlab report` re-renders and merges result folders."""

import json

import pytest

from conceptlab import cli
from conceptlab.bench import parse_spec, run_grid
from conceptlab.bench import runner as runner_module
from conceptlab.bench.report import table_rows

TINY = {
    "name": "tiny",
    "dataset": {"name": "xor", "size": 300},
    "models": ["cbm-fuzzy"],
    "seeds": 2,
    "model": {"hidden": [8], "embedding_size": 4, "latent_dim": 8},
    "train": {"max_epochs": 3, "device": "cpu"},
    "evaluation": {"intervention_policies": [], "concept_alignment": False},
}


def test_a_sweep_runs_every_point_and_records_it(tmp_path):
    spec = parse_spec({**TINY, "sweep": {"train.lr": [0.01, 0.001], "model.hidden": [[8], [4]]}})
    assert len(spec.points()) == 4 and len({p.config_hash() for p in spec.points()}) == 4
    records = run_grid([spec], tmp_path, workers=1, progress=False).records()
    assert len(records) == 4 * 2
    points = {json.dumps(r["sweep_point"], sort_keys=True) for r in records}
    assert len(points) == 4
    assert all(r["val_task_accuracy"] is not None and r["history"]["joint"]["val_loss"] for r in records)


def _record(point_lr, seed, val, test):
    spec = parse_spec({**TINY, "sweep": {"train.lr": [0.01, 0.001]}})
    point = spec.at({"train.lr": point_lr})
    return {"benchmark": "tiny", "model": "cbm-fuzzy", "seed": seed, "config_hash": point.config_hash(), "status": "ok",
            "sweep_point": {"train.lr": point_lr}, "val_task_accuracy": val, "task_accuracy": test,
            "concept_accuracy": 0.9, "concept_auc": 0.9, "concept_alignment": None, "epochs": 3, "train_seconds": 1.0}


def test_selection_reads_validation_metrics_never_test_ones():
    spec = parse_spec({**TINY, "sweep": {"train.lr": [0.01, 0.001]}})
    records = [_record(0.01, s, val=0.90, test=0.60) for s in range(2)]  # best on validation, worse on test
    records += [_record(0.001, s, val=0.80, test=0.99) for s in range(2)]
    (row,) = table_rows(records, [spec])
    assert row.chosen == {"train.lr": 0.01} and row.points == 2
    assert row.metrics["task_accuracy"][0] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="unknown selection metric"):
        table_rows(records, [spec], select="task_accuracy")


@pytest.mark.parametrize("sweep, message", [
    ({"optimizer.lr": [1]}, "sweep keys are model.KEY, train.KEY, train.intcem.KEY or train.posthoc.KEY"),
    ({"train.lr": 0.01}, r"sweep.train.lr: Input should be a valid list \(got 0.01\)"),
    ({"train.lr": []}, "give a non-empty list"),
    ({"train.lr": ["fast"]}, r"sweep.train.lr: Input should be a valid number \(got 'fast'\)"),
    ({"train.intervention_prob": [0.1]}, "sweep RandInt as model.randint"),
    ({"train.lr": [0.01, 0.01]}, r"0.01 and 0.01 give the same settings"),   # trained twice before
    ({"train.lr": [0.5, 0.5e0, 1]}, "give the same settings"),
    ({"train.seed": [0, 1]}, r"set seeds: N \(or --seeds\) instead"),
    ({"train.device": ["cpu", "auto"]}, "pass --device instead"),
])
def test_bad_sweeps_are_rejected_when_read(sweep, message):
    with pytest.raises(ValueError, match=message):
        parse_spec({**TINY, "sweep": sweep})


def test_report_merges_folders_without_training(tmp_path, monkeypatch, capsys):
    first = parse_spec(TINY)
    second = parse_spec({**TINY, "name": "other", "dataset": {"name": "dot", "size": 300}})
    run_grid([first], tmp_path / "a", workers=1, progress=False)
    run_grid([second], tmp_path / "b", workers=1, progress=False)
    monkeypatch.setattr(runner_module, "run_one", lambda plan: pytest.fail("report trained a model"))
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "merged"),
                     "--curves"]) == 0
    table = (tmp_path / "merged" / "table.md").read_text()
    assert "## tiny" in table and "## other" in table
    assert (tmp_path / "merged" / "losses.png").read_bytes()[:4] == b"\x89PNG"
    assert "4 runs from 2 folder(s)" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    specs = tmp_path / "a" / "specs.json"
    good = specs.read_text()
    for garbage in ("\x00\x01 not json", "[1, 2]", '{"tiny": {"dataset": {"name": "xor"}, "modles": []}}'):
        specs.write_text(garbage)
        assert cli.main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "r")]) == 2
        assert str(specs) in capsys.readouterr().err  # the file is named (it was not before)
    specs.write_text(good)


def test_report_merges_one_benchmark_split_over_folders_by_model_and_seed(tmp_path, capsys):
    """Before, the last folder's settings replaced the others': the table listed only its models."""
    two_models = {**TINY, "models": ["blackbox", "cbm-fuzzy"]}
    run_grid([parse_spec({**two_models, "models": ["blackbox"], "seeds": 1})], tmp_path / "a", workers=1, progress=False)
    run_grid([parse_spec({**two_models, "models": ["cbm-fuzzy"], "seeds": 2})], tmp_path / "b", workers=1, progress=False)
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "merged")]) == 0
    table = (tmp_path / "merged" / "table.md").read_text()
    assert "| blackbox |" in table and "| cbm-fuzzy |" in table
    assert "3 runs from 2 folder(s)" in capsys.readouterr().out


def test_tensorboard_receives_every_epoch_of_every_run(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = parse_spec(TINY)
    run_grid([spec], tmp_path, workers=1, progress=False, tracker="tensorboard")
    runs = sorted((tmp_path / "tensorboard" / "tiny").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("cbm-fuzzy-seed") for r in runs)
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    assert len(events.Scalars("val_loss")) == 3 and len(events.Scalars("train_loss")) == 3


def _retry_one(out, model: str) -> None:
    """Mark one recorded run as failed, so that the next bench trains it again (as a retry would)."""
    path = out / "runs.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    victim = next(r for r in lines if r["model"] == model and r["seed"] == 0)
    victim["status"] = "failed"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))


TRACKED = {**TINY, "models": ["cbm-fuzzy", "cbm-seq"], "seeds": 1, "sweep": {"train.lr": [0.01]}}


def test_tensorboard_holds_each_run_once_with_settings_stages_and_final_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = parse_spec(TRACKED)
    run_grid([spec], tmp_path, workers=1, progress=False, tracker="tensorboard")
    _retry_one(tmp_path, "cbm-seq")
    run_grid([spec], tmp_path, workers=1, progress=False, tracker="tensorboard")
    runs = {r.name.split("-seed")[0]: r for r in (tmp_path / "tensorboard" / "tiny").iterdir()}
    assert sorted(runs) == ["cbm-fuzzy", "cbm-seq"]
    for folder in runs.values():
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # the retry replaced the first attempt's file
    seq = EventAccumulator(str(runs["cbm-seq"]))
    seq.Reload()
    tags = set(seq.Tags()["scalars"])
    assert {"concepts/train_loss", "task/val_loss", "test/task_accuracy", "val/task_accuracy", "epochs"} <= tags
    assert len(seq.Scalars("task/val_loss")) == 3 and len(seq.Scalars("concepts/val_loss")) == 3
    hparams = (runs["cbm-seq"] / "hparams.yaml").read_text()
    assert "train.lr" in hparams and "sweep.train.lr" in hparams and "tag.config_hash" in hparams


def test_mlflow_holds_each_run_once_with_params_tags_and_final_metrics(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = parse_spec(TRACKED)
    run_grid([spec], tmp_path, workers=1, progress=False, tracker="mlflow")
    _retry_one(tmp_path, "cbm-fuzzy")
    run_grid([spec], tmp_path, workers=1, progress=False, tracker="mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["model"] for r in runs) == ["cbm-fuzzy", "cbm-seq"]  # the retry left one run, not two
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"benchmark", "model", "seed", "config_hash"} <= set(run.data.tags)
        assert run.data.params["train.lr"] == "0.01" and run.data.params["sweep.train.lr"] == "0.01"
        assert {"test/task_accuracy", "val/task_accuracy", "epochs"} <= set(run.data.metrics)
    seq = next(r for r in runs if r.data.tags["model"] == "cbm-seq")
    assert {"concepts/train_loss", "task/val_loss"} <= set(seq.data.metrics)


def test_a_missing_tracker_package_is_named_before_any_run(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert cli.main(["bench", "xor", "--logger", "mlflow", "--out", "/tmp/never-written-by-this-test"]) == 2
    assert "pip install mlflow" in capsys.readouterr().err


def test_a_rerun_with_other_models_keeps_the_first_models_in_the_report(tmp_path):
    from conceptlab.bench.runner import record_specs, recorded_specs

    base = {"name": "tiny", "dataset": {"name": "xor", "size": 300}, "models": ["cbm-fuzzy", "blackbox"], "seeds": 2}
    record_specs([parse_spec(base)], tmp_path)
    record_specs([parse_spec({**base, "models": ["cem"], "seeds": 1})], tmp_path)
    (spec,) = recorded_specs(tmp_path)
    assert spec.models == ("cbm-fuzzy", "blackbox", "cem") and spec.seeds == 2
    record_specs([parse_spec({**base, "dataset": {"name": "xor", "size": 400}, "models": ["cem"]})], tmp_path)
    (spec,) = recorded_specs(tmp_path)
    assert spec.models == ("cem",)  # other settings: the new benchmark replaces the old one
