"""A two-node Ray cluster on this machine; one node is killed while the grid runs.

    pip install -e ".[ray]"
    python benchmarks/ray_cluster.py [--kill-after 4]

Starts a head node and a second node (`ray start ... --num-cpus 1` each) in a temporary folder of
their own and on free ports, both authenticating with one token (`RAY_AUTH_MODE=token`), runs
`conceptlab bench xor --backend ray --address ...`, kills every process of the second node with
SIGKILL once `--kill-after` runs are recorded, and checks that the grid still completes: every run
recorded exactly once, all of them finished, runs on both nodes. Safe on a shared machine: it
never runs `ray stop` (which stops every Ray process of the machine) and stops only the processes
of its own temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_of(folder: Path) -> set[int]:
    """Ray processes started for ``folder`` (their command lines name it), with their descendants."""
    roots = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in command:
                roots.add(int(entry.name))
    return descendants(roots)


def start_node(folder: Path, env: dict[str, str], head_port: int | None = None, cpus: int = 1) -> int:
    """Start a head node (``head_port`` None; returns its port) or a node joining the head at ``head_port``."""
    ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
             "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
             "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]
    common = ["--num-cpus", str(cpus), "--disable-usage-stats", *ports]
    if head_port is None:
        port = free_port()
        subprocess.run([*RAY, "start", "--head", "--port", str(port), f"--temp-dir={folder}", "--include-dashboard=false",
                        "--ray-client-server-port", str(free_port()), *common], check=True, capture_output=True, env=env)
        return port
    subprocess.run([*RAY, "start", "--address", f"127.0.0.1:{head_port}", *common], check=True, capture_output=True,
                   env=env)
    return head_port


def stop_processes(pids: set[int], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)


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
    # every node and the driver authenticate with one token (Ray's default for clusters), here ~/.ray/auth_token
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "token"}
    subprocess.run([*RAY, "get-auth-token", "--generate"], capture_output=True, env=env)
    folder = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        port = start_node(folder, env)
        before = processes_of(folder)
        start_node(folder, env, head_port=port)
        second = processes_of(folder) - before
        out = folder / "out"
        start = time.perf_counter()
        bench = subprocess.Popen([sys.executable, "-m", "conceptlab.cli", "bench", "xor", "--models", "blackbox,cbm-fuzzy,cem",
                                  "--seeds", str(args.seeds), "--backend", "ray", "--address", f"127.0.0.1:{port}",
                                  "--out", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env)
        while len(records(out)) < args.kill_after and bench.poll() is None:
            time.sleep(0.5)
        victims = descendants(second)
        stop_processes(victims, grace=0)
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
        stop_processes(processes_of(folder))
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
