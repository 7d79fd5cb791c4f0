"""The benchmark grid on both backends, same machine, same run: wall time and identical results.

    pip install -e ".[ray]"
    python benchmarks/ray_backend.py [xor trig dot] [--workers 2]

Runs `conceptlab bench` twice into temporary folders, first with the local process pool, then
with a local Ray instance of the same number of CPUs, and compares wall times and accuracies.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bench(targets: list[str], out: Path, workers: int, backend: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "conceptlab.cli", "bench", *targets, "--out", str(out), "--workers", str(workers),
                    "--backend", backend, "--no-progress"], check=True, capture_output=True)
    return time.perf_counter() - start


def accuracies(out: Path) -> dict[tuple, float]:
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    return {(r["benchmark"], r["model"], r["seed"]): r["task_accuracy"] for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", default=["xor", "trig", "dot"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = bench(args.targets, Path(tmp) / "local", args.workers, "local")
        ray = bench(args.targets, Path(tmp) / "ray", args.workers, "ray")
        a, b = accuracies(Path(tmp) / "local"), accuracies(Path(tmp) / "ray")
    same = a == b
    print(f"{' '.join(args.targets)}: {len(a)} runs, {args.workers} workers / CPUs")
    print(f"local process pool: {local:.1f} s")
    print(f"local Ray instance: {ray:.1f} s  (overhead {100 * (ray / local - 1):+.1f}%)")
    print(f"identical task accuracies: {same}")


if __name__ == "__main__":
    main()
