"""Wall time of the main job (`conceptlab bench xor`) and of its `--quick` smoke run, and where it goes.

    python benchmarks/main_job.py                 # the main job once, then --quick once
    python benchmarks/main_job.py --jobs quick --repeats 3
    python benchmarks/main_job.py --config trig --jobs full

Each job runs as a user would start it (a fresh `conceptlab bench` process, fresh output folder,
default workers: one per core). Reported per job: wall time, the machine's load average just
before it started, the training and evaluation seconds summed over its runs (from `runs.jsonl`),
epochs, and per model the training milliseconds per epoch. The import time of one process
(`import conceptlab.bench.runner`) is measured too: every bench pays it before its first run.

Compare figures measured in the same invocation only: this machine's speed drifts by up to 1.6x
within a session (docs/speed.md). The JSON of every job goes to --json when given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def import_seconds() -> float:
    """Wall seconds of a fresh interpreter importing what a bench worker needs."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import conceptlab.bench.runner"], check=True)
    return time.perf_counter() - start


def run_job(config: str, quick: bool, out: Path) -> dict:
    """Run one bench in a fresh process; its wall time, load and the sums over its runs."""
    load = os.getloadavg()[0]
    command = [sys.executable, "-m", "conceptlab.cli", "bench", config, "--out", str(out), "--no-progress"]
    if quick:
        command.append("--quick")
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed, first: {failed[0].get('error')}")
    per_model: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for r in records:
        per_model[r["model"]][0] += r["train_seconds"]
        per_model[r["model"]][1] += r["epochs"]
    return {
        "job": f"bench {config}" + (" --quick" if quick else ""),
        "runs": len(records),
        "wall_seconds": round(wall, 1),
        "load_before": round(load, 2),
        "train_seconds": round(sum(r["train_seconds"] for r in records), 1),
        "eval_seconds": round(sum(r["eval_seconds"] for r in records), 1),
        "epochs": sum(r["epochs"] for r in records),
        "ms_per_epoch": {model: round(1000 * s / max(e, 1), 1) for model, (s, e) in per_model.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="xor", help="bundled benchmark or YAML path (default: xor)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each job (the median is printed)")
    parser.add_argument("--jobs", default="full,quick", help="which jobs to run: full, quick or both (default)")
    parser.add_argument("--json", type=Path, help="write every job's figures here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = args.jobs.split(",")
    if not names or set(names) - {"full", "quick"}:
        parser.error(f"--jobs takes full, quick or full,quick; got {args.jobs!r}")
    jobs = [name == "quick" for name in names]
    results = {"import_seconds": round(import_seconds(), 2), "cpus": os.cpu_count(), "jobs": []}
    with tempfile.TemporaryDirectory(prefix="conceptlab-main-job-") as scratch:
        for repeat in range(args.repeats):
            for quick in jobs:
                out = Path(scratch) / f"{'quick' if quick else 'full'}-{repeat}"
                result = run_job(args.config, quick, out)
                results["jobs"].append(result)
                print(json.dumps(result), flush=True)

    print(f"\none process importing conceptlab.bench.runner: {results['import_seconds']} s; {results['cpus']} CPUs\n")
    print("| job | runs | wall (median) | load before | training, summed | evaluation, summed | epochs |")
    print("|---|---|---|---|---|---|---|")
    for quick in jobs:
        rows = [r for r in results["jobs"] if r["job"].endswith("--quick") == quick]
        walls = [r["wall_seconds"] for r in rows]
        last = rows[-1]
        print(f"| {last['job']} | {last['runs']} | {statistics.median(walls):.1f} s ({', '.join(map(str, walls))}) | "
              f"{', '.join(str(r['load_before']) for r in rows)} | {last['train_seconds']} s | {last['eval_seconds']} s | "
              f"{last['epochs']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
