"""Executors on this machine: runs inline in this process, or on a pool of worker processes it owns.

Ray's executors are ``ray_backend`` (one task per run) and ``tune_backend`` (one Tune trial per
run); every executor hands each run's record to ``record`` in this process, the only writer of
``runs.jsonl``, and sets its workers up with ``worker.setup_worker``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..processes import WorkerPool, sigterm_as_exit
from .plan import RunPlan, plan_record
from .worker import setup_worker

Run = Callable[[RunPlan], dict[str, Any]]  # run.run_one: one plan in, its record out


def run_inline(plans: list[RunPlan], run: Run, record: Callable[[dict[str, Any]], None]) -> None:
    """``run`` every plan in this process, one after the other (one worker, or one GPU)."""
    for plan in plans:
        record(run(plan))


def run_on_pool(plans: list[RunPlan], run: Run, workers: int, record: Callable[[dict[str, Any]], None]) -> None:
    """``run`` the plans on a pool of ``workers`` processes this process owns (``run`` must be
    importable by name): an interruption (Ctrl-C, SIGTERM, an error) kills every worker, whose runs
    were never recorded, and so cannot hang on a worker."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    with sigterm_as_exit(), WorkerPool(workers, initializer=setup_worker, initargs=(threads,)) as pool:
        for outcome in pool.imap_unordered(run, plans):
            if outcome.error is None:
                record(outcome.value)
            else:  # the worker died during the run (a run records its own errors)
                record({**plan_record(outcome.item), "status": "failed", "error": outcome.error})
