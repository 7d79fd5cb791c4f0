"""A two-node Ray cluster on this machine; one node is killed while the grid runs.

    pip install -e ".[ray]"
    python benchmarks/ray_cluster.py [--kill-after 4]

Starts a head node (`ray start --head --num-cpus 1`) and a second node (`ray start --address
... --num-cpus 1`), both authenticating with one token (`RAY_AUTH_MODE=token`), runs `conceptlab bench xor --backend ray --address ...`, kills every process
of the second node with SIGKILL once `--kill-after` runs are recorded, and checks that the grid
still completes: every run recorded exactly once, all of them finished, runs on both nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT = 6391


def ray_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "ray" in command and "benchmarks/ray_cluster.py" not in command and "conceptlab.cli" not in command:
                pids.add(int(entry.name))
    return pids


def descendants(roots: set[int]) -> set[int]:
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in found:
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if parent in found:
                    found.add(int(entry.name))
                    changed = True
    return found


def records(out: Path) -> list[dict]:
    path = out / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kill-after", type=int, default=4, help="records written before the second node is killed")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    # every node and the driver authenticate with one token (Ray's default for clusters), here ~/.ray/auth_token
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "token"}
    subprocess.run([*ray, "stop", "--force"], capture_output=True)
    subprocess.run([*ray, "get-auth-token", "--generate"], capture_output=True, env=env)
    subprocess.run([*ray, "start", "--head", "--num-cpus", "1", "--port", str(PORT), "--include-dashboard", "false",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env)
    before = ray_pids()
    subprocess.run([*ray, "start", "--address", f"127.0.0.1:{PORT}", "--num-cpus", "1"], check=True, capture_output=True,
                   env=env)
    second = ray_pids() - before
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            start = time.perf_counter()
            bench = subprocess.Popen([sys.executable, "-m", "conceptlab.cli", "bench", "xor", "--models", "blackbox,cbm-fuzzy,cem",
                                      "--seeds", str(args.seeds), "--backend", "ray", "--address", f"127.0.0.1:{PORT}",
                                      "--out", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
            while len(records(out)) < args.kill_after and bench.poll() is None:
                time.sleep(0.5)
            victims = descendants(second)
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed_at = len(records(out))
            print(f"killed the second node ({len(victims)} processes) after {killed_at} recorded runs, "
                  f"{time.perf_counter() - start:.1f} s into the grid")
            _, err = bench.communicate(timeout=1800)
            elapsed = time.perf_counter() - start
            runs = records(out)
            keys = [(r["model"], r["seed"], r["config_hash"]) for r in runs]
            nodes = {r.get("ray_node") for r in runs}
            per_node = sorted((sum(r.get("ray_node") == n for r in runs) for n in nodes), reverse=True)
            print(f"bench exit code {bench.returncode} after {elapsed:.1f} s")
            print(f"runs recorded: {len(runs)} (expected {3 * args.seeds}), distinct: {len(set(keys))}, "
                  f"finished: {sum(r['status'] == 'ok' for r in runs)}, nodes that ran them: {len(nodes)} "
                  f"(runs per node: {per_node})")
            if bench.returncode != 0:
                print(err[-2000:])
    finally:
        subprocess.run([*ray, "stop", "--force"], capture_output=True)


if __name__ == "__main__":
    main()
