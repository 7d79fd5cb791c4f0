"""Guarantee: stopping a pool of workers cannot hang, whichever signal stops it and whenever it lands.

The hang this guards against: with ``concurrent.futures``' shared call queue, a SIGTERM during a
task handoff hung the parent 2 times in 10 (a worker blocked on a lock a terminated one held).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conceptlab.processes import WorkerPool

from .processes import alive, descendants, with_default_sigint

ROOT = Path(__file__).resolve().parents[1]
DRIVER = """
import time
from conceptlab.processes import WorkerPool, sigterm_as_exit

def task(n):
    time.sleep(0.002 * (n % 3))  # short, uneven tasks: the pool is almost always handing one over
    return n

if __name__ == "__main__":
    with sigterm_as_exit(), WorkerPool(2) as pool:
        for i, outcome in enumerate(pool.imap_unordered(task, range(10**6))):
            assert outcome.error is None, outcome.error
            if i == 0:
                print("running", flush=True)
"""


def _square(n: int) -> int:
    return n * n


def _fail_on_three(n: int) -> int:
    if n == 3:
        raise ValueError("three is refused")
    return n


def _die_on_three(n: int) -> int:
    if n == 3:
        os._exit(7)
    return n


def _parent_and_name(n: int) -> tuple[int, str]:
    return os.getppid(), Path(f"/proc/{os.getpid()}/comm").read_text().strip()


def _outcomes(function, items, workers=2):
    with WorkerPool(workers) as pool:
        return {o.item: o for o in pool.imap_unordered(function, items)}


def test_every_task_comes_back_once():
    outcomes = _outcomes(_square, range(20), workers=3)
    assert {item: o.value for item, o in outcomes.items()} == {n: n * n for n in range(20)}


def test_a_raising_task_reports_its_traceback_and_the_rest_run():
    outcomes = _outcomes(_fail_on_three, range(8))
    assert "ValueError: three is refused" in outcomes[3].error
    assert all(outcomes[n].value == n and outcomes[n].error is None for n in range(8) if n != 3)


def test_a_dying_worker_costs_only_its_task():
    outcomes = _outcomes(_die_on_three, range(8))
    assert "WorkerLost" in outcomes[3].error and "code 7" in outcomes[3].error
    assert all(outcomes[n].value == n for n in range(8) if n != 3)


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server and /proc are Linux's")
def test_workers_fork_from_the_preloaded_server_and_carry_their_name():
    """The mechanism behind the faster start: workers are children of multiprocessing's fork
    server (which imported the bench's modules once), not of this process, and name themselves."""
    from conceptlab.processes import WORKER_NAME, start_worker_server

    start_worker_server(["json"])
    outcomes = _outcomes(_parent_and_name, range(4))
    parents = {o.value[0] for o in outcomes.values()}
    assert os.getpid() not in parents and len(parents) == 1  # one fork server, not this process
    assert {o.value[1] for o in outcomes.values()} == {WORKER_NAME.decode()}


def test_a_pool_needs_a_worker():
    with pytest.raises(ValueError, match="at least 1 worker"):
        WorkerPool(0)






@pytest.mark.skipif(sys.platform != "linux", reason="reads worker processes from /proc")
@pytest.mark.parametrize(("sig", "trials"), [(signal.SIGTERM, 20), (signal.SIGINT, 5), (signal.SIGKILL, 5)])
def test_a_signal_during_task_handoffs_ends_the_parent_and_every_worker(tmp_path, sig, trials):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    rng = random.Random(0)
    for trial in range(trials):
        parent = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  preexec_fn=with_default_sigint)
        try:
            assert parent.stdout.readline().strip() == "running", parent.stderr.read()
            spawned = descendants(parent.pid)  # the fork server, its workers, the resource tracker
            time.sleep(rng.uniform(0.0, 0.5))
            parent.send_signal(sig)
            parent.wait(120)  # a ceiling for a loaded machine; the hang this guards against never ends
        finally:
            if parent.poll() is None:
                parent.kill()
                for pid in descendants(parent.pid):
                    os.kill(pid, signal.SIGKILL)
        assert parent.returncode != 0, f"trial {trial}: the parent ignored {sig.name}"
        deadline = time.monotonic() + 60
        while any(alive(w) for w in spawned) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spawned and not any(alive(w) for w in spawned), f"trial {trial}: workers outlived the parent"
