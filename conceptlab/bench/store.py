"""The results store: one JSON object per run in runs.jsonl, rewritten atomically on every append."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..atomic import write_atomic

log = logging.getLogger(__name__)


def run_key(record: dict[str, Any]) -> tuple[str, str, int, str]:
    return record["dataset"], record["model"], int(record["seed"]), record["config_hash"]


class RunStore:
    """Runs of a benchmark directory; a later record of the same run replaces an earlier one."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._records: dict[tuple, dict[str, Any]] = {}
        if self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    self._records[run_key(record)] = record
                except (json.JSONDecodeError, KeyError) as err:
                    log.warning("skipping unreadable line %d of %s: %s", number, self.path, err)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def finished(self) -> set[tuple]:
        """Keys of the runs that completed successfully (failed runs are retried)."""
        return {key for key, r in self._records.items() if r.get("status") == "ok"}

    def add(self, record: dict[str, Any]) -> None:
        self._records[run_key(record)] = record
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self._records.values()))
