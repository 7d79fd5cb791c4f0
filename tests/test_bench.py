import json
import re

import pytest

from conceptlab import cli
from conceptlab.bench import load_spec, parse_spec, run_grid, write_reports
from conceptlab.bench import run as run_module
from conceptlab.datasets.registry import SyntheticSettings


def _spec(models=("blackbox", "cbm-fuzzy"), seeds=2):
    return parse_spec({
        "name": "tiny",
        "dataset": {"name": "xor", "size": 300},
        "models": list(models),
        "seeds": seeds,
        "model": {"hidden": [16], "embedding_size": 4, "latent_dim": 8},
        "train": {"max_epochs": 2, "device": "cpu"},
        "reference": {"task_accuracy": {"blackbox": 99.0}},
    })


def test_bundled_configs_hold_the_paper_settings():
    spec = load_spec("trig")
    assert spec.dataset == SyntheticSettings(name="trig", size=3000)
    assert spec.seeds == 5 and len(spec.models) == 9 and spec.models[-1] == "intcem"
    t = spec.train
    assert (t.optimizer, t.lr, t.batch_size, t.max_epochs, t.early_stopping_patience, t.lr_patience) == ("adam", 0.01, 256, 500, 15, 10)
    assert spec.model.embedding_size == 128 and spec.model.randint == 0.25
    assert spec.reference["task_accuracy"]["cbm-fuzzy"] == 98.37
    quick = load_spec("trig", quick=True)
    assert quick.seeds < spec.seeds and quick.train.max_epochs < t.max_epochs
    # a smoke run measures what says the pipeline works, not the expensive extras
    assert quick.evaluation.intervention_policies == ("random", "uncertainty")
    assert quick.evaluation.intervention_competence == (1.0,) and not quick.evaluation.purity
    assert spec.evaluation.purity and len(spec.evaluation.intervention_policies) > 2


def test_grid_writes_runs_tables_and_checkpoints(tmp_path):
    spec = _spec()
    store = run_grid([spec], tmp_path, workers=1, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {r["status"] for r in lines} == {"ok"}
    for r in lines:
        for key in ("benchmark", "model", "seed", "task_accuracy", "concept_accuracy", "concept_auc",
                    "epochs", "train_seconds", "config", "versions"):
            assert key in r
        assert 0 <= r["task_accuracy"] <= 1
        assert (r["concept_accuracy"] is None) == (r["model"] == "blackbox")
    markdown = write_reports(store.records(), [spec], tmp_path)
    assert "| blackbox |" in markdown and "99.00" in markdown
    assert (tmp_path / "table.csv").read_text().startswith("benchmark,model,runs")
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 4


def test_rerun_skips_finished_runs_and_retries_failed_ones(tmp_path, monkeypatch):
    spec = _spec()
    calls, fail_once = [], [1]  # the first load of seed 1 fails
    real_load = run_module.load_dataset

    def load_or_fail_once(config, seed):
        calls.append(seed)
        if seed in fail_once:
            fail_once.remove(seed)
            raise OSError("disk went away")
        return real_load(config, seed)

    monkeypatch.setattr(run_module, "load_dataset", load_or_fail_once)
    store = run_grid([spec], tmp_path, workers=1, progress=False)
    failed = [r for r in store.records() if r["status"] == "failed"]
    assert len(calls) == 4 and len(failed) == 1  # the grid went on after the failure
    assert failed[0]["error"] == "OSError: disk went away" and failed[0]["seed"] == 1

    calls.clear()
    store = run_grid([spec], tmp_path, workers=1, progress=False)
    assert calls == [1]  # only the failed run is redone
    assert all(r["status"] == "ok" for r in store.records())

    calls.clear()
    run_grid([spec.with_overrides(max_epochs=3)], tmp_path, workers=1, progress=False)
    assert len(calls) == 4  # changed settings are new runs, not stale hits


def test_parallel_workers_give_the_same_results(tmp_path):
    spec = _spec(models=("cbm-fuzzy",), seeds=2)
    serial = run_grid([spec], tmp_path / "a", workers=1, progress=False).records()
    parallel = run_grid([spec], tmp_path / "b", workers=2, progress=False).records()
    key = lambda r: r["seed"]  # noqa: E731
    assert [r["task_accuracy"] for r in sorted(serial, key=key)] == [r["task_accuracy"] for r in sorted(parallel, key=key)]


def test_cli_reports_bad_input_in_one_line(capsys):
    assert cli.main(["bench", "mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("conceptlab: error: unknown benchmark 'mnist'") and "\n" not in err
    assert cli.main(["bench", "xor", "--models", "cbm,cem"]) == 2
    assert "unknown model key(s) ['cbm']" in capsys.readouterr().err
    assert cli.main(["bench", "xor", "--models", "cem,cem"]) == 2  # ran twice before
    assert "['cem'] listed twice" in capsys.readouterr().err
    assert cli.main(["bench", "xor", "--address", "auto"]) == 2  # silently ignored before
    assert "add --backend ray" in capsys.readouterr().err


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ValueError, match=r"^modles: unknown key"):
        parse_spec({"dataset": {"name": "xor"}, "modles": []})
    with pytest.raises(ValueError, match=r"model.width: unknown key.*known: backbone"):
        parse_spec({"dataset": {"name": "xor"}, "model": {"width": 3}})


def test_cli_bench_runs_end_to_end(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny\ndataset: {name: dot, size: 200}\nmodels: [cem]\nseeds: 1\n"
        "model: {hidden: [8], embedding_size: 2, latent_dim: 8}\ntrain: {max_epochs: 1}\n"
        "evaluation: {intervention_policies: [random, uncertainty, oracle]}\n"
    )
    assert cli.main(["bench", str(config), "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # a compact summary: the model table and the best policy; every curve and competence stays in table.md
    assert "| cem |" in printed and re.search(r"  cem: (random|uncertainty), AUC", printed) and str(tmp_path / "out" / "table.md") in printed
    assert "@competence" not in printed and "@competence=0" in (tmp_path / "out" / "table.md").read_text()
    assert len(printed.splitlines()) < 15
