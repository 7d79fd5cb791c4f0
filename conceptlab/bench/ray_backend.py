"""Run a benchmark grid on Ray: one task per run, on a local instance or a cluster.

The driver (the process that called ``run_grid``) is the only writer of ``runs.jsonl``: it
records a run when its task returns, so a run is recorded exactly once even when Ray retries a
task whose worker or node died. Shared artifacts (CUB features) are computed by one task before
the runs start. Checkpoints, ``--out``, the cache directory and the data root must be on storage
every node mounts at the same path: the driver makes them absolute, and on a cluster a readiness
task on every node checks them, and that the node runs the driver's conceptlab and torch, before
any run starts (a local instance is checked by the driver itself).

Without ``--address`` the grid runs on a new local instance, even when a cluster is already
running on this machine. With one, workers get the driver's conceptlab package and tracking
variables through Ray's ``runtime_env``, so they need no setup beyond Ray and the dependencies.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..processes import sigterm_as_exit
from .plan import plan_record, versions
from .spec import BenchSpec
from .worker import setup_worker

log = logging.getLogger(__name__)

RETRIES = 3  # a task whose worker or node dies is run again, up to this many times
READY_SECONDS = 600.0  # the readiness task on every node: a ceiling for a loaded machine, not an expectation
CONNECT_SECONDS = 10.0  # how long a cluster address may take to accept a connection before the bench gives up


TRACKING_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                      "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_NAME")


class SharedStorageError(RuntimeError):
    """A Ray worker cannot reach the output folder, the cache or the data, or runs other code."""


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


@dataclass(frozen=True)
class Readiness:
    """What every node must offer before a grid starts on it."""

    out_dir: str
    cache_dirs: tuple[str, ...]
    data_roots: tuple[str, ...]
    versions: dict[str, str]


def readiness(plans: list) -> Readiness:
    """The folders and versions the driver's plans need on every node."""
    datasets = [plan.spec.dataset for plan in plans]
    caches = sorted({str(d.cache_dir) for d in datasets if getattr(d, "cache_dir", None)})
    roots = sorted({str(d.root) for d in datasets if getattr(d, "root", None)})
    found = versions()
    return Readiness(plans[0].out_dir, tuple(caches), tuple(roots),
                     {k: found[k] for k in ("conceptlab", "torch")})


def check_node(ready: Readiness) -> None:
    """Raise ``SharedStorageError`` naming this node when it lacks what ``ready`` asks for."""
    import tempfile

    node = _node_name()
    for folder in (ready.out_dir, *ready.cache_dirs):  # the driver made them: a node that lacks them has its own disk
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".ray-check-"):
                pass
        except OSError as err:
            raise SharedStorageError(
                f"a Ray worker on node {node} cannot write to {folder} ({err.strerror or err}): --out and the cache "
                "directory must be on storage that every node mounts at the same path"
            ) from None
    for root in ready.data_roots:
        if not Path(root).is_dir():
            raise SharedStorageError(f"a Ray worker on node {node} does not see the data root {root}: --root must be "
                                     "on storage that every node mounts at the same path")
    found = versions()
    different = {k: (v, found[k]) for k, v in ready.versions.items() if found[k] != v}
    if different:
        said = ", ".join(f"{k} {theirs} (driver: {ours})" for k, (ours, theirs) in different.items())
        raise SharedStorageError(f"node {node} runs {said}: install the driver's versions there, or run the bench "
                                 "with --address so that Ray ships the driver's conceptlab")


def _node_name() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside Ray: this machine
        return "localhost"


def runtime_env(address: str | None) -> dict[str, Any] | None:
    """What Ray gives every worker on a cluster: the driver's conceptlab and tracking variables.

    A local instance's workers are children of this process and see its environment and
    packages already, so they get none (Ray then never waits on its runtime-env agent)."""
    if not address:
        return None
    import conceptlab

    env: dict[str, Any] = {"py_modules": [str(Path(conceptlab.__file__).parent)]}
    variables = {k: os.environ[k] for k in TRACKING_VARIABLES if k in os.environ}
    if variables:
        env["env_vars"] = variables
    return env


def absolute(plan):
    """``plan`` with its output folder, cache directory and data root as absolute paths, which
    every node resolves alike (a relative path is relative to each worker's own directory)."""
    from ..datasets.registry import default_cache_dir

    dataset = plan.spec.dataset
    changes: dict[str, Any] = {}
    if hasattr(dataset, "cache_dir"):
        changes["cache_dir"] = str(Path(dataset.cache_dir or default_cache_dir()).resolve())
    if getattr(dataset, "root", None):
        changes["root"] = str(Path(dataset.root).resolve())
    spec = replace(plan.spec, dataset=replace(dataset, **changes)) if changes else plan.spec
    return replace(plan, spec=spec, out_dir=str(Path(plan.out_dir).resolve()))


def run_in_worker(plan, run: Callable[..., dict[str, Any]], **options: Any) -> dict[str, Any]:
    """``run(plan, **options)`` inside a Ray worker (a task or a Tune trial), set up with as many
    torch threads as CPUs the run holds and no GPU unless it asked for one; the record names the node."""
    import ray

    setup_worker(int(plan.spec.resources.cpus), hide_gpus=gpus_for(plan.spec) == 0)
    record = run(plan, **options)
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


@contextlib.contextmanager
def ray_session(plans: list, address: str | None, cpus: int | None) -> Iterator[Any]:
    """Ray started for ``plans`` (absolute paths: see :func:`absolute`), every node checked, shared
    artifacts prepared by one task; yields the ``ray`` module and shuts Ray down afterwards.

    ``address`` is None (start a local instance with ``cpus`` CPUs), "auto" or "ray://HOST:PORT".
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install -e \".[ray]\"") from None
    check_reachable(address)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                               "runtime_env": runtime_env(address)}
    if address:
        ray.init(address=address, **options)
    else:  # a new local instance, even when a cluster already runs on this machine
        ray.init(address="local", num_cpus=cpus, **options)
    try:
        ready = readiness(plans)
        for folder in ready.cache_dirs:
            Path(folder).mkdir(parents=True, exist_ok=True)
        if address:
            _check_every_node(ray, ready)
        else:  # a local instance runs on this machine, with this process's files and packages
            try:
                check_node(ready)
            except SharedStorageError as err:
                raise ValueError(str(err)) from None
        prepare = ray.remote(max_retries=RETRIES)(_prepare_task)
        for spec in {plan.spec.name: plan.spec for plan in plans}.values():
            ray.get(prepare.remote(spec.dataset))
        yield ray
    finally:
        ray.shutdown()


def run_on_ray(plans: list, run: Callable[[Any], dict[str, Any]], address: str | None, cpus: int | None,
               record: Callable[[dict[str, Any]], None]) -> None:
    """``run`` every plan as a Ray task and ``record`` each result as it returns.

    ``address`` is None (start a local instance with ``cpus`` CPUs), "auto" or "ray://HOST:PORT".
    Ctrl-C or SIGTERM cancels the tasks still queued or running.
    """
    plans = [absolute(plan) for plan in plans]
    with ray_session(plans, address, cpus) as ray:
        run_task = ray.remote(max_retries=RETRIES)(run_in_worker)
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


def _check_every_node(ray, ready: Readiness) -> None:
    """One readiness task pinned to each live node; the first problem stops the grid."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check = ray.remote(num_cpus=0)(check_node)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(ready)
            for node in nodes]
    log.info("checking storage, data and versions on %d Ray node(s)", len(nodes))
    try:
        ray.get(refs, timeout=READY_SECONDS)
    except ray.exceptions.GetTimeoutError:
        raise ValueError(f"a Ray node did not answer the readiness check within {READY_SECONDS:.0f} s: see `ray status` "
                         "for nodes without free resources or workers that cannot start") from None
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, SharedStorageError):
            raise ValueError(str(err.cause)) from None
        raise


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
