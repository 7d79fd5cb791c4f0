"""`--backend ray`: the same runs as the local pool, on a local Ray instance with 2 CPUs."""

import os

import pytest

from conceptlab.bench import RunPlan, parse_spec, run_grid

ray = pytest.importorskip("ray")

TINY = {"name": "tiny", "dataset": {"name": "xor", "size": 300}, "models": ["blackbox", "cbm-fuzzy"], "seeds": 2,
        "model": {"hidden": [16], "embedding_size": 4, "latent_dim": 8}, "train": {"max_epochs": 5, "device": "cpu"},
        "evaluation": {"intervention_repeats": 1, "concept_alignment": False}}


def test_ray_and_local_backends_give_identical_results(tmp_path):
    spec = parse_spec(TINY)
    on_ray = run_grid([spec], tmp_path / "ray", workers=2, progress=False, backend="ray").records()
    local = run_grid([spec], tmp_path / "local", workers=2, progress=False).records()
    key = lambda r: (r["model"], r["seed"])  # noqa: E731
    assert len(on_ray) == len(local) == 4
    for a, b in zip(sorted(on_ray, key=key), sorted(local, key=key)):
        assert a["status"] == b["status"] == "ok"
        assert (a["task_accuracy"], a["concept_accuracy"]) == (b["task_accuracy"], b["concept_accuracy"])
        assert a["ray_node"] and "ray_node" not in b
    rerun = run_grid([spec], tmp_path / "ray", workers=2, progress=False, backend="ray")  # resumes: nothing to do
    assert len(rerun.records()) == 4


def test_a_worker_that_cannot_write_the_output_stops_the_grid(tmp_path):
    from conceptlab.bench.ray_backend import run_on_ray
    from conceptlab.bench.run import run_one

    plan = RunPlan(parse_spec(TINY), "blackbox", 0, str(tmp_path / "not-there"))
    recorded = []
    with pytest.raises(ValueError, match="cannot write to .*not-there.*storage that every node mounts"):
        run_on_ray([plan], run_one, None, 2, recorded.append)
    assert recorded == []


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_unreachable_cluster_is_named_before_any_work(tmp_path, address):
    """Ray alone retried these for minutes (ConnectionError after 178 s, or only its own warnings)."""
    import subprocess
    import sys
    import time

    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\ndataset: {name: xor, size: 300}\nmodels: [blackbox]\nseeds: 1\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "conceptlab.cli", "bench", str(config), "--out", str(tmp_path / "out"),
                             "--backend", "ray", "--address", address], capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert f"no Ray cluster answers at {address}" in result.stderr and "ray start --head" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 300  # a ceiling far above the seconds it takes, far below Ray's retries


def test_a_malformed_cluster_address_is_refused():
    from conceptlab.bench.ray_backend import check_reachable

    with pytest.raises(ValueError, match="not a cluster address"):
        check_reachable("ray://:abc")


def test_every_node_is_checked_before_any_run(tmp_path):
    """Cache, data root and versions are checked on the node itself, with messages naming what is wrong."""
    from conceptlab.bench.plan import versions
    from conceptlab.bench.ray_backend import Readiness, SharedStorageError, check_node

    own = {k: versions()[k] for k in ("conceptlab", "torch")}
    check_node(Readiness(str(tmp_path), (str(tmp_path),), (str(tmp_path),), own))  # all there
    with pytest.raises(SharedStorageError, match="cannot write to .*missing-cache"):
        check_node(Readiness(str(tmp_path), (str(tmp_path / "missing-cache"),), (), own))
    with pytest.raises(SharedStorageError, match="does not see the data root .*missing-root"):
        check_node(Readiness(str(tmp_path), (), (str(tmp_path / "missing-root"),), own))
    with pytest.raises(SharedStorageError, match=r"runs conceptlab .* \(driver: 0.0.1\)"):
        check_node(Readiness(str(tmp_path), (), (), {**own, "conceptlab": "0.0.1"}))


def test_paths_become_absolute_and_workers_get_the_tracking_variables(tmp_path, monkeypatch):
    import torch

    from conceptlab.bench.ray_backend import absolute, runtime_env
    from conceptlab.bench.worker import setup_worker

    monkeypatch.chdir(tmp_path)
    spec = parse_spec({**TINY, "name": "cub-like"})
    plan = absolute(RunPlan(spec, "blackbox", 0, "results/x"))
    assert plan.out_dir == str(tmp_path / "results" / "x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert runtime_env(None) is None  # a local instance's workers inherit this process's environment
    shipped = runtime_env("ray://head:10001")
    assert shipped["py_modules"][0].endswith("conceptlab")
    assert shipped["env_vars"] == {"MLFLOW_TRACKING_URI": "http://tracking:5000"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    setup_worker(torch.get_num_threads())
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    setup_worker(torch.get_num_threads(), hide_gpus=True)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_a_running_cluster_is_not_joined_without_an_address(tmp_path, monkeypatch):
    """A cluster running on this machine (found through RAY_ADDRESS, or /tmp/ray) used to capture
    `--backend ray`, and `--workers` then failed ("num_cpus ... must not be provided")."""
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ray_cluster import processes_of, start_node, stop_processes

    folder = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        try:
            port = start_node(folder, dict(os.environ))
        except Exception as err:  # noqa: BLE001
            pytest.skip(f"cannot start a Ray head here: {err}")
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        store = run_grid([parse_spec({**TINY, "models": ["blackbox"], "seeds": 1})], tmp_path / "out", workers=2,
                         progress=False, backend="ray")
        assert [r["status"] for r in store.records()] == ["ok"]
    finally:
        stop_processes(processes_of(folder))
        shutil.rmtree(folder, ignore_errors=True)
