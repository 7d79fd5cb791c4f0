"""The results store: one JSON object per run in runs.jsonl, shared safely between processes.

Every write takes a file lock (``runs.jsonl.lock``, the filelock package), reads what other
processes wrote meanwhile, adds its record and replaces the file atomically; so two benches on
one output directory both keep their records, and a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..atomic import write_atomic

log = logging.getLogger(__name__)

RunKey = tuple[str, str, int, str]
RUN_FIELDS = ("benchmark", "model", "seed", "config_hash")


def run_key(record: dict[str, Any]) -> RunKey:
    """A training run: (benchmark name, model key, seed, settings hash)."""
    missing = [field for field in RUN_FIELDS if field not in record]
    if missing:
        raise ValueError(f"the record has no {', '.join(missing)} field (not a run record of this conceptlab version)")
    return record["benchmark"], record["model"], int(record["seed"]), record["config_hash"]


def read_records(path: Path, key: Callable[[dict[str, Any]], Hashable] = run_key) -> dict[Hashable, dict[str, Any]]:
    """The records of a runs.jsonl file, by ``key``; a later record of a run replaces an earlier
    one, and lines that are not JSON objects with a key are skipped with a warning."""
    records: dict[Hashable, dict[str, Any]] = {}
    if not path.exists():
        return records
    if not path.is_file():
        raise ValueError(f"{path} is not a file: it should hold the runs written by `conceptlab bench`; "
                         "move it away or use another output folder")
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):  # bytes that are not text: warned lines
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            records[key(record)] = record
        except (ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable line %d of %s: %s", number, path, err)
    return records


DONE = ("ok", "stopped")  # statuses a rerun does not train again; "failed" runs are retried


class RunStore:
    """Runs of a benchmark directory; a later record of the same run replaces an earlier one.

    ``key`` names a run from its record (default: a training run's ``run_key``).

    Args:
        path: The JSON-lines file (``runs.jsonl``).
        key: Names a run from its record (default: ``run_key``).

    Examples:
        >>> import tempfile, pathlib
        >>> from conceptlab.bench import RunStore
        >>> store = RunStore(pathlib.Path(tempfile.mkdtemp()) / "runs.jsonl")
        >>> store.add({"benchmark": "xor", "model": "cem", "seed": 0, "config_hash": "h", "status": "ok"})
        >>> len(store.records()), store.finished()
        (1, {('xor', 'cem', 0, 'h')})
    """

    def __init__(self, path: Path, key: Callable[[dict[str, Any]], Hashable] = run_key):
        self.path = Path(path)
        self.key = key
        self._lock = FileLock(str(self.path) + ".lock")
        self._records = read_records(self.path, key)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def finished(self) -> set[Hashable]:
        """Keys of the runs that completed successfully or that ASHA stopped (failed runs are retried)."""
        return {key for key, r in self._records.items() if r.get("status") in DONE}

    def add(self, record: dict[str, Any]) -> None:
        """Record one run, merged with whatever other processes wrote since this store last looked."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            records = read_records(self.path, self.key)
            records[self.key(record)] = record
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records.values()))
        self._records = records
