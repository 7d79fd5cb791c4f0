"""`--backend ray`: the same runs as the local pool, on a local Ray instance with 2 CPUs."""

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
    from conceptlab.bench.runner import run_one

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
