#!/usr/bin/env python3
"""What a poison task (every run ``os._exit(1)``) costs a cluster, beside a healthy Counter.

    .venv/bin/python tools/bench_poison.py                    # poison, then control, 2 pairs
    .venv/bin/python tools/bench_poison.py --seconds 40 --pairs 3

Each trial runs a ``LocalCluster`` of 2 real nodes (1 worker each) with a Counter every 500 ms
and, every 100 ms, either the poison task or (the control) a Counter that writes nothing to the
disk, for ``--seconds``, poison and control interleaved. It reports, per trial:

* **slots**: the healthy Counter's slots run in the window / the slots due in it;
* **agent restarts**: agents of the 2 nodes that changed pid during the window;
* **poison error/refused**: the poison task's runs failed / held back (the manager's status);
* **cpu s**: CPU seconds (user + system) used during the window by the 2 nodes' whole process
  trees (node, agent, workers, their reaped children), read from ``/proc`` before and after.

Prints a markdown table, one row per trial.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402
from tests.integration.cluster_tasks import Counter, Poison, QuickCounter  # noqa: E402
from tests.integration.task_helpers import all_eligible, counter_lines, task_row  # noqa: E402
from tests.integration.test_worker_pool_gone import _agent  # noqa: E402


def _cpu(pids: list[int]) -> float:
    """CPU seconds of these processes and all their descendants, reaped ones included."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def trial(poison: bool, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-poison-") as scratch:
        log, other = Path(scratch) / "log", Path(scratch) / "other"
        fast = (clerk.task(Poison, name="poison", interval=100) if poison else
                clerk.task(QuickCounter, name="poison", interval=100,
                           args={"log": str(other)}))
        tasks = [clerk.task(Counter, name="count", interval=500, args={"log": str(log)}), fast]
        with LocalCluster(2, tasks=tasks) as cluster:
            manager = all_eligible(cluster, "count", timeout=30)
            all_eligible(cluster, "poison", timeout=30)
            agents: dict[str, int] = {}
            for n in cluster.names:
                found = wait_until(lambda n=n: _agent(cluster, n), timeout=10)  # type: ignore[misc]
                assert found is not None
                agents[n] = found.pid
            nodes = [cluster.procs[n].pid for n in cluster.names]
            changed: set[str] = set()
            cpu0, start = _cpu(nodes), time.time()

            def over() -> bool:
                for n in cluster.names:
                    a = _agent(cluster, n)
                    if a is not None and a.pid != agents[n]:
                        changed.add(n)
                return time.time() > start + seconds

            wait_until(over, timeout=seconds + 30, interval=0.2)
            cpu = _cpu(nodes) - cpu0
            slots = {r.slot for r in counter_lines(log)
                     if start + 0.5 <= r.started <= start + seconds}
            runs = task_row(cluster.status(manager), "poison")["runs"]
            # (agent changes: a restarted agent's CPU is lost with it; none expected)
            return {"kind": "poison" if poison else "control", "slots": len(slots),
                    "due": int((seconds - 0.5) / 0.5), "restarts": len(changed),
                    "error": runs["error"], "refused": runs["refused"], "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--pairs", type=int, default=2)
    args = ap.parse_args()
    print(f"{args.seconds:.0f} s windows, 2 nodes, pid {os.getpid()}\n")
    print("| trial | healthy slots run | agent restarts | poison error / refused | cpu s |")
    print("|---|---|---|---|---|")
    for _ in range(args.pairs):
        for poison in (True, False):
            r = trial(poison, args.seconds)
            print(f"| {r['kind']} | {r['slots']}/{r['due']} | {r['restarts']} | "
                  f"{r['error']} / {r['refused']} | {r['cpu']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
