"""Run a benchmark grid on Ray: one task per run, on a local instance or a cluster.

The driver (the process that called ``run_grid``) is the only writer of ``runs.jsonl``: it
records a run when its task returns, so a run is recorded exactly once even when Ray retries a
task whose worker or node died. Shared artifacts (CUB features) are computed by one task before
the runs start. Checkpoints, ``--out`` and the cache directory must be on storage every node
mounts; a task that cannot write there stops the grid with a message saying so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ..processes import sigterm_as_exit
from .plan import plan_record
from .spec import BenchSpec

log = logging.getLogger(__name__)

RETRIES = 3  # a task whose worker or node dies is run again, up to this many times
CONNECT_SECONDS = 10.0  # how long a cluster address may take to accept a connection before the bench gives up


class SharedStorageError(RuntimeError):
    """A Ray worker cannot write to the output directory."""


def check_reachable(address: str | None) -> None:
    """Fail at once, naming the fix, when a cluster ``address`` does not accept connections.

    Ray itself retries an unreachable address for minutes, printing only its own warnings.
    ``ray://HOST:PORT`` (Ray Client, port 10001 by default) and ``HOST:PORT`` (the cluster's GCS,
    6379 by default) are tried with one TCP connection; ``auto`` and no address are left to Ray.

    Args:
        address: The ``--address`` given to ``conceptlab bench``, or None.
    """
    import socket

    if address is None or address == "auto":
        return
    target = address.removeprefix("ray://")
    host, colon, port = target.rpartition(":")
    if not colon:
        host, port = target, ("10001" if address.startswith("ray://") else "6379")
    if not host or not port.isdigit():
        raise ValueError(f"--address {address!r} is not a cluster address: use auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ValueError(
            f"no Ray cluster answers at {address} ({reason}): start one there (`ray start --head`, then use "
            f"ray://HOST:10001 or HOST:6379), check the host and port, or drop --address to run on a local Ray instance"
        ) from None


def _check_shared_storage(out_dir: str) -> None:
    import tempfile

    import ray

    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".ray-check-"):
            pass
    except OSError as err:
        node = ray.util.get_node_ip_address()
        raise SharedStorageError(
            f"a Ray worker on node {node} cannot write to {out_dir} ({err.strerror or err}): --out (and the cache "
            "directory) must be on storage that every node mounts at the same path"
        ) from None


def _run_task(plan, run: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``run(plan)`` inside a Ray worker, with as many torch threads as CPUs the task holds."""
    import ray
    import torch

    from ..runtime import keep_freed_memory

    _check_shared_storage(plan.out_dir)
    torch.set_num_threads(max(1, int(plan.spec.resources.cpus)))
    keep_freed_memory()
    record = run(plan)
    record["ray_node"] = ray.get_runtime_context().get_node_id()
    return record


def _prepare_task(config) -> None:
    from ..datasets.registry import prepare_shared

    prepare_shared(config, progress=False)


def gpus_for(spec: BenchSpec) -> float:
    """GPUs a run asks for: the config's ``resources.gpus``, or one when it trains on a GPU."""
    if spec.resources.gpus == 0 and spec.train.device in ("cuda", "gpu"):
        return 1.0
    return spec.resources.gpus


def run_on_ray(plans: list, run: Callable[[Any], dict[str, Any]], address: str | None, cpus: int | None,
               record: Callable[[dict[str, Any]], None]) -> None:
    """``run`` every plan as a Ray task and ``record`` each result as it returns.

    ``address`` is None (start a local instance with ``cpus`` CPUs), "auto" or "ray://HOST:PORT".
    Ctrl-C or SIGTERM cancels the tasks still queued or running.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install -e \".[ray]\"") from None
    check_reachable(address)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=cpus, **options)
    try:
        run_task = ray.remote(max_retries=RETRIES)(_run_task)
        prepare = ray.remote(max_retries=RETRIES)(_prepare_task)
        for spec in {plan.spec.name: plan.spec for plan in plans}.values():
            ray.get(prepare.remote(spec.dataset))
        refs = {run_task.options(num_cpus=plan.spec.resources.cpus, num_gpus=gpus_for(plan.spec)).remote(plan, run): plan
                for plan in plans}
        pending = list(refs)
        try:
            with sigterm_as_exit():
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    for ref in ready:
                        record(_result(ray, ref, refs[ref]))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        ray.shutdown()


def _result(ray, ref, plan) -> dict[str, Any]:
    """A task's record; a task that failed in Ray itself (not in training) becomes a failed record,
    except a worker that cannot reach the output directory, which stops the grid."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, SharedStorageError):
            raise ValueError(str(err.cause)) from None
        return _failed(plan, err)
    except ray.exceptions.RayError as err:  # the worker or its node died RETRIES + 1 times
        return _failed(plan, err)


def _failed(plan, err: Exception) -> dict[str, Any]:
    return {**plan_record(plan), "status": "failed", "error": f"{type(err).__name__}: {str(err).splitlines()[0][:500]}"}
