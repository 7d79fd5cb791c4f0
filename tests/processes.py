"""Helpers for tests that start, signal and watch processes."""

import signal
from pathlib import Path

from conceptlab.processes import WORKER_NAME


def with_default_sigint() -> None:
    """``preexec_fn`` for a child that must react to SIGINT as a terminal's Ctrl+C.

    A test run started in the background (``cmd &``, nohup, some CI runners) ignores SIGINT, and
    its children inherit that; Python then leaves SIGINT ignored instead of raising KeyboardInterrupt.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Children of ``pid``, their children, and so on (a pool's workers are grandchildren: they
    fork from multiprocessing's fork server)."""
    found, frontier = [], [pid]
    while frontier:
        below = [child for parent in frontier for child in children(parent)]
        found += below
        frontier = below
    return found


def workers(pid: int) -> list[int]:
    """The pool worker processes under ``pid``, found by their name (not the fork server,
    multiprocessing's resource tracker, or a short-lived process a worker forks, which inherits
    its name until it runs a program)."""
    named = set()
    for process in descendants(pid):
        try:
            name = (Path("/proc") / str(process) / "comm").read_text().strip()
        except OSError:
            continue
        if name == WORKER_NAME.decode():
            named.add(process)
    return sorted(process for process in named if not any(process in children(worker) for worker in named))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
