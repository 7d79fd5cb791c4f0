"""Guarantee: results are never lost or mislabelled, whatever happens to the processes writing them."""

import json
import os
import signal
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import pytest

from conceptlab.bench.store import RunStore, run_key
from conceptlab.models import load_model

from .processes import alive, descendants, with_default_sigint, workers

TINY = """name: tiny
dataset: {name: xor, size: 300}
models: [blackbox, cbm-fuzzy]
seeds: 3
model: {hidden: [16], embedding_size: 4, latent_dim: 8}
train: {max_epochs: %d, device: cpu, early_stopping_patience: 0}
evaluation: {intervention_repeats: 1, concept_alignment: false}
"""


def _bench(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "conceptlab.cli", "bench", str(config), "--out", str(out),
                             "--no-progress", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=with_default_sigint)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]








def _add_many(path: str, tag: str, n: int) -> None:
    store = RunStore(Path(path))
    for seed in range(n):
        store.add({"benchmark": "d", "model": tag, "seed": seed, "config_hash": "h", "status": "ok"})


def test_concurrent_writers_keep_every_record(tmp_path):
    """Two processes add 25 records each to one file at once: all 50 are there afterwards."""
    path = tmp_path / "runs.jsonl"
    context = get_context("spawn")
    writers = [context.Process(target=_add_many, args=(str(path), tag, 25)) for tag in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    keys = {run_key(r) for r in RunStore(path).records()}
    assert len(keys) == 50


def test_two_benches_on_one_output_directory_both_keep_their_runs(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY % 3)
    out = tmp_path / "out"
    first, second = _bench(config, out, "--models", "blackbox", "--workers", "1"), \
        _bench(config, out, "--models", "cbm-fuzzy", "--workers", "1")
    for process in (first, second):
        _, err = process.communicate(timeout=900)
        assert process.returncode == 0, err
    records = _records(out)
    assert sorted((r["model"], r["seed"]) for r in records) == [(m, s) for m in ("blackbox", "cbm-fuzzy") for s in range(3)]
    table = (out / "table.md").read_text()  # written last by whichever finished last: both models (one before)
    assert "| blackbox |" in table and "| cbm-fuzzy |" in table


@pytest.mark.skipif(sys.platform != "linux", reason="reads worker processes from /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_bench_leaves_no_workers_and_resumes_without_loss(tmp_path, sig):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY % 20)
    out = tmp_path / "out"
    bench = _bench(config, out, "--workers", "2")
    deadline = time.monotonic() + 900  # ceilings, not expectations: a loaded machine may be ten times slower
    while not ((out / "runs.jsonl").exists() and _records(out)) and time.monotonic() < deadline:
        time.sleep(0.2)
    spawned = descendants(bench.pid)
    assert spawned, "the bench started no worker processes"
    os.kill(bench.pid, sig)
    bench.wait(300)
    deadline = time.monotonic() + 120
    while any(alive(w) for w in spawned) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(w) for w in spawned), "workers outlived the bench process"
    done_before = len(_records(out))
    assert 1 <= done_before < 6
    rerun = _bench(config, out, "--workers", "2")
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    records = _records(out)
    keys = [run_key(r) for r in records]
    assert len(keys) == len(set(keys)) == 6 and all(r["status"] == "ok" for r in records)


@pytest.mark.skipif(sys.platform != "linux", reason="reads worker processes from /proc")
def test_a_worker_killed_mid_run_fails_only_that_run(tmp_path):
    """As the out-of-memory killer would: SIGKILL one worker; its run is recorded as failed with the
    cause, the others finish, and a rerun trains only the failed one."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY % 300)  # runs of seconds: the kill below lands inside one
    out = tmp_path / "out"
    bench = _bench(config, out, "--workers", "2")
    deadline = time.monotonic() + 900
    while len(workers(bench.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    victim = workers(bench.pid)[0]
    time.sleep(1.0)  # into its first run
    os.kill(victim, signal.SIGKILL)
    _, err = bench.communicate(timeout=900)
    assert bench.returncode == 1, err
    failed = [r for r in _records(out) if r["status"] != "ok"]
    assert len(failed) == 1 and "killed by signal SIGKILL" in failed[0]["error"], failed
    assert len(_records(out)) == 6
    rerun = _bench(config, out, "--workers", "1")
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    assert "resuming: 5 finished run(s)" in err
    assert len(_records(out)) == 6 and all(r["status"] == "ok" for r in _records(out))


def test_a_record_and_its_checkpoint_always_agree(tmp_path):
    """Rerunning with other settings adds new checkpoints and never overwrites one a record points to."""
    from conceptlab.bench import parse_spec, run_grid

    def spec(epochs):
        return parse_spec({"name": "tiny", "dataset": {"name": "xor", "size": 300}, "models": ["blackbox"], "seeds": 1,
                           "model": {"hidden": [8]}, "train": {"max_epochs": epochs, "device": "cpu"},
                           "evaluation": {"intervention_policies": [], "concept_alignment": False}})

    run_grid([spec(2)], tmp_path, workers=1, progress=False)
    run_grid([spec(4)], tmp_path, workers=1, progress=False)
    records = _records(tmp_path)
    assert len(records) == 2 and len({r["checkpoint"] for r in records}) == 2
    for r in records:
        _, _, meta = load_model(r["checkpoint"])
        assert meta["config_hash"] == r["config_hash"]


def test_odd_lines_in_runs_jsonl_are_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "runs.jsonl"
    good = {"benchmark": "d", "model": "m", "seed": 0, "config_hash": "h", "status": "ok"}
    path.write_text(json.dumps(good) + "\n[1, 2, 3]\n\"text\"\n{\"benchmark\": \"d\"}\n{\"truncated\": \n")
    store = RunStore(path)
    assert [run_key(r) for r in store.records()] == [("d", "m", 0, "h")]
    warned = [r.getMessage() for r in caplog.records]
    assert sum("skipping unreadable line" in m for m in warned) == 4
    assert any("line 2" in m and "expected a JSON object" in m for m in warned)
    store.add(dict(good, seed=1))  # and the file stays usable
    assert len(RunStore(path).records()) == 2
