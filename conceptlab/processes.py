"""Worker processes this process owns outright, and signals turned into ordinary exits.

``concurrent.futures.ProcessPoolExecutor`` feeds its workers through one shared call queue guarded
by a lock. A worker terminated while it held that lock leaves the others blocked on it for ever,
and the parent then waits for them at interpreter exit: a SIGTERM could hang a bench. Here every
worker has a pipe of its own and is handed one task at a time, and a parent that stops early
kills (SIGKILL) every worker and reaps it, so there is nothing shared that a killed process could
leave locked. Workers also die with their parent (SIGKILL on Linux, a watchdog elsewhere).

Where the platform has one, workers fork from multiprocessing's fork server, which imports the
modules named in :func:`start_worker_server` once, while the parent imports its own: a spawned
worker paid those imports again (about 7 s for torch and Lightning on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .clib import libc

STOP_SECONDS = 10.0  # a finished pool's workers get this long to exit by themselves before they are killed
WORKER_NAME = b"conceptlab-wkr"  # a worker's name in ps, top and /proc/PID/comm (at most 15 bytes)


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def start_worker_server(modules: list[str]) -> None:
    """Start the fork server that :class:`WorkerPool` workers come from, importing ``modules``
    there in the background; call it before this process's own heavy imports so that both run at
    once. Without the call the server starts with the first pool and imports nothing ahead.

    Args:
        modules: Importable module names every worker needs (e.g. the one defining its task).
    """
    if _start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    multiprocessing.set_forkserver_preload(modules)
    forkserver.ensure_running()


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` in the main thread for the block, so that cleanup code
    (cancelling queued work, stopping workers) runs as it does for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Outcome:
    """What became of one task: its ``value``, or an ``error`` (a traceback, or how its worker died)."""

    item: Any
    value: Any = None
    error: str | None = None


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection


class WorkerPool:
    """A fixed number of worker processes, each fed one task at a time over its own pipe.

    Use it as a context manager: leaving the block normally lets idle workers exit; leaving it by
    an exception (Ctrl-C, SIGTERM under :func:`sigterm_as_exit`, an error) kills every worker at
    once. A task whose worker dies (killed, out of memory) comes back as an :class:`Outcome` with
    an error, and a fresh worker takes the next task.

    Args:
        workers: How many worker processes run at once (at least 1).
        initializer: Called in each worker before its first task, with ``initargs``.
        initargs: Arguments for ``initializer``.
    """

    def __init__(self, workers: int, *, initializer: Callable[..., None] | None = None, initargs: tuple = ()):
        if workers < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, not {workers}")
        self.workers = workers
        self.initializer = initializer
        self.initargs = initargs
        self._context = multiprocessing.get_context(_start_method())
        self._started: list[_Worker] = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(kill=kind is not None)

    def imap_unordered(self, function: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Outcome]:
        """Run ``function(item)`` for every item in the workers; yield each outcome as it arrives.

        ``function`` must be importable by name (a module-level function) and its results picklable.
        """
        queue = deque(items)
        idle = [self._start() for _ in range(min(self.workers, len(queue)))]
        busy: dict[_Worker, Any] = {}
        while queue or busy:
            while idle and queue:
                worker, item = idle.pop(), queue.popleft()
                try:
                    worker.connection.send((function, item))
                except OSError:  # it died while idle: the task never started, so it goes back in line
                    queue.appendleft(item)
                    self._retire(worker)
                    idle.append(self._start())
                    continue
                busy[worker] = item
            handles = [w.connection for w in busy] + [w.process.sentinel for w in busy]
            ready = set(wait(handles))
            for worker in [w for w in busy if w.connection in ready or w.process.sentinel in ready]:
                item = busy.pop(worker)
                answer = _receive(worker)
                if answer is None:
                    self._retire(worker)
                    if queue:
                        idle.append(self._start())
                    yield Outcome(item, error=_death_message(worker.process))
                    continue
                idle.append(worker)
                succeeded, value = answer
                yield Outcome(item, value=value) if succeeded else Outcome(item, error=value)

    def close(self, kill: bool = False) -> None:
        """Stop every worker: ask idle ones to exit (``kill=False``), then kill whatever is left.

        Signals that would interrupt this (a second Ctrl-C or SIGTERM) wait until it is done.
        """
        blocked = {signal.SIGINT, signal.SIGTERM}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if hasattr(signal, "pthread_sigmask") else None
        try:
            if not kill:
                for worker in self._started:
                    with contextlib.suppress(OSError):
                        worker.connection.send(None)
                deadline = time.monotonic() + STOP_SECONDS
                for worker in self._started:
                    worker.process.join(max(0.0, deadline - time.monotonic()))
            for worker in self._started:
                self._retire(worker)
            self._started.clear()
        finally:
            if previous is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child_end, os.getpid(), self.initializer, self.initargs),
                                        name=f"conceptlab-worker-{len(self._started)}")
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        self._started.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        if worker.process.exitcode is None:
            worker.process.kill()
        worker.process.join()
        worker.connection.close()


def _receive(worker: _Worker) -> tuple[bool, Any] | None:
    """The worker's answer, or None when it died without one."""
    try:
        if worker.connection.poll():
            return worker.connection.recv()
    except (EOFError, OSError):
        pass
    return None


def _death_message(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name}"
        if code == -signal.SIGKILL:
            how += " (often the kernel's out-of-memory killer: try fewer --workers)"
    else:
        how = f"exited with code {code}"
    return f"WorkerLost: the worker process running this task {how} before it answered"


def _serve(connection: Connection, owner: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """A worker's loop: receive (function, item), send back (True, result) or (False, traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    exit_with_parent(owner)
    _name_this_process(WORKER_NAME)
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            task = connection.recv()
        except EOFError:
            return
        if task is None:
            return
        function, item = task
        try:
            answer = (True, function(item))
        except Exception:
            answer = (False, traceback.format_exc())
        try:
            connection.send(answer)
        except Exception as err:  # e.g. a result that cannot be pickled
            connection.send((False, f"{type(err).__name__}: the task's result could not be sent back: {err}"))


def _name_this_process(name: bytes) -> None:
    if platform.system() == "Linux":
        pr_set_name = 15
        libc().prctl(pr_set_name, name)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:  # no /proc: the signal answered, so it runs
        return False


def exit_with_parent(owner: int) -> None:
    """End this process as soon as ``owner`` (the process that asked for it) is gone.

    On Linux the kernel delivers SIGKILL on the death of the direct parent (prctl
    PR_SET_PDEATHSIG): ``owner`` itself for a spawned worker, the fork server for a forked one,
    which exits when ``owner`` does. A watchdog thread also checks every second that the direct
    parent is unchanged and ``owner`` runs, which covers other platforms and an owner that died
    before the prctl call. Without it, a killed bench left its workers training runs nobody records.
    """
    parent = os.getppid()
    if platform.system() == "Linux":
        pr_set_pdeathsig = 1
        libc().prctl(pr_set_pdeathsig, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent and not _gone(owner):
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
