"""Sweeps through Ray Tune (`search:` on `--backend ray`): a grid records what the local pool records,
random search draws the same points everywhere, and ASHA really stops trials, each recorded once."""

import json

import pytest

from conceptlab.bench import parse_spec, run_grid
from conceptlab.bench.report import table_rows
from conceptlab.settings import SettingsError

pytest.importorskip("ray.tune")

TINY = {"name": "tiny", "dataset": {"name": "xor", "size": 300}, "models": ["cbm-fuzzy"], "seeds": 2,
        "model": {"hidden": [16], "embedding_size": 4, "latent_dim": 8},
        "train": {"max_epochs": 5, "device": "cpu", "early_stopping_patience": 0},
        "evaluation": {"intervention_repeats": 1, "concept_alignment": False},
        "sweep": {"train.lr": [0.01, 0.001]}}
COMPARED = ("task_accuracy", "concept_accuracy", "val_task_accuracy", "epochs", "config_hash", "sweep_point")


def _by_key(records):
    return {(r["model"], r["seed"], r["config_hash"]): r for r in records}


def test_a_grid_search_on_tune_records_what_the_local_grid_records(tmp_path):
    spec = parse_spec({**TINY, "search": {"method": "grid"}})
    tuned = _by_key(run_grid([spec], tmp_path / "tune", workers=2, progress=False, backend="ray").records())
    local = _by_key(run_grid([parse_spec(TINY)], tmp_path / "local", workers=2, progress=False).records())
    assert tuned.keys() == local.keys() and len(tuned) == 4
    for key, record in tuned.items():
        assert record["status"] == local[key]["status"] == "ok"
        assert {m: record[m] for m in COMPARED} == {m: local[key][m] for m in COMPARED}
        assert record["ray_node"]
    assert (tmp_path / "tune" / "tune").is_dir()  # Tune's own experiment state sits beside runs.jsonl
    rerun = run_grid([spec], tmp_path / "tune", workers=2, progress=False, backend="ray")  # resumes: nothing to do
    assert len(rerun.records()) == 4


def test_asha_stops_trials_that_fall_behind_and_records_each_once(tmp_path):
    """Four learning rates, the worst of which cannot learn: with a grace of 2 epochs and
    reduction factor 2, ASHA must stop some trials before their 12 epochs, and every trial is
    recorded exactly once, as finished or stopped."""
    raw = {**TINY, "seeds": 1, "train": {**TINY["train"], "max_epochs": 12},
           "sweep": {"train.lr": [0.03, 1e-3, 1e-6, 1e-7]},
           "search": {"asha": {"grace_epochs": 2, "reduction_factor": 2}}}
    spec = parse_spec(raw)
    store = run_grid([spec], tmp_path / "out", workers=2, progress=False, backend="ray")
    records = store.records()
    assert len(records) == len(_by_key(records)) == 4
    stopped = [r for r in records if r["status"] == "stopped"]
    finished = [r for r in records if r["status"] == "ok"]
    assert stopped and finished, [(r["sweep_point"], r["status"]) for r in records]
    assert all(2 <= r["epochs"] < 12 and "stopped by ASHA" in r["error"] for r in stopped)
    assert all(r["epochs"] == 12 for r in finished)
    row = table_rows(records, [spec])[0]
    assert row.chosen["train.lr"] in {r["sweep_point"]["train.lr"] for r in finished}  # only finished points compete
    lines = (tmp_path / "out" / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["status"] in ("ok", "stopped") for line in lines)
    rerun = run_grid([spec], tmp_path / "out", workers=2, progress=False, backend="ray")  # a stopped run stays stopped
    assert len(rerun.records()) == 4


def test_random_search_draws_the_same_points_for_every_model_and_seed():
    spec = parse_spec({**TINY, "models": ["cbm-fuzzy", "blackbox"],
                       "sweep": {"train.lr": [0.1, 0.01, 0.001], "model.embedding_size": [2, 4, 8]},
                       "search": {"method": "random", "samples": 4, "seed": 3}})
    points = [p.point for p in spec.points()]
    assert len(points) == len(set(points)) == 4 and set(points) <= {p.point for p in spec.grid()}
    assert points == [p.point for p in parse_spec(spec.to_config()).points()]  # specs.json gives them back
    other = parse_spec({**spec.to_config(), "search": {"method": "random", "samples": 4, "seed": 4}})
    assert [p.point for p in other.points()] != points


def test_asha_without_the_ray_backend_is_refused_with_the_fix(tmp_path):
    spec = parse_spec({**TINY, "search": {"asha": {}}})
    with pytest.raises(ValueError, match="search.asha stops trials through Ray Tune; add --backend ray"):
        run_grid([spec], tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out" / "runs.jsonl").exists()


@pytest.mark.parametrize(("search", "message"), [
    ({"method": "random"}, "needs the number of points"),
    ({"method": "random", "samples": 3}, "the sweep has 2"),
    ({"samples": 1}, "a grid search runs every point"),
    ({"asha": {"reduction_factor": 1}}, "reduction_factor"),
    ({"asha": {"grace": 3}}, "unknown key"),
])
def test_bad_search_blocks_name_the_key(search, message):
    with pytest.raises(SettingsError, match=message):
        parse_spec({**TINY, "search": search})
    with pytest.raises(SettingsError, match="needs a sweep"):
        parse_spec({**{k: v for k, v in TINY.items() if k != "sweep"}, "search": {"method": "grid"}})
