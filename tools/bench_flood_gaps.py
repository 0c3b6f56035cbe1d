#!/usr/bin/env python3
"""The hostile test's flood against a live node, and the longest gap between its task's runs:
a task that ``fsync``s its line beside one that does not, with one of the worker's ``fsync``s
held up (as a busy disk does), interleaved repeat by repeat.

    .venv/bin/python tools/bench_flood_gaps.py [--repeats 3] [--forged 3000]
        [--fsync-delay-ms 650] [--tasks Counter QuickCounter]

Each measurement is what ``tests/integration/test_security_hostile.py`` does: a one-node
``--insecure`` cluster whose task runs every 200 ms, ``tools/fuzz.py``'s garbage list ten
times, then a forged JOIN and a stale claim from each of ``--forged`` addresses; the window
ends two runs after the node counted the flood. With ``--fsync-delay-ms`` (needs ``strace``),
the node's worker processes are traced for ``fsync`` only and their third ``fsync`` from the
flood's start is delayed that long (``strace -e inject=fsync:delay_enter``): what a CI disk
did once (the test failed with a 0.79 s gap). Reported per task: the longest gap in the
window (median and worst of the repeats), the slots the node counted ``skipped`` (a run still
in flight at the next due time: the overlap rule) and ``refused`` (stale), and the longest
turn the node's mailbox held its timers (``drain_ms_max``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import fuzz  # noqa: E402  (tools/fuzz.py)

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402

INTERVAL = 200  # ms


def _runs(log: Path) -> list[tuple[int, float]]:
    try:
        return [(int(p[1]), float(p[5])) for p in (x.split() for x in log.read_text().splitlines())
                if len(p) == 6]
    except FileNotFoundError:
        return []


def _workers(cluster: LocalCluster, name: str) -> list[int]:
    """The node's task workers: supervised children (``supervisor/_boot.py``) of its agent,
    itself a supervised child of the node."""
    found = []
    for pid in cluster.pids(name):
        try:
            proc = psutil.Process(pid)
            parent = proc.parent()
            if (parent is not None and "_boot.py" in " ".join(proc.cmdline())
                    and "_boot.py" in " ".join(parent.cmdline())):
                found.append(pid)
        except psutil.Error:
            pass
    return found


def measure(task_class: str, forged: int, delay_ms: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="clerk-flood-gaps-"))
    log = tmp / "runs.log"
    task = clerk.task(f"tests.integration.cluster_tasks:{task_class}", name="counter",
                      interval=INTERVAL, args={"log": str(log)})
    tracers: list[subprocess.Popen[bytes]] = []
    try:
        with LocalCluster(1, tasks=[task], insecure=True, log_level="warning") as cluster:
            name = cluster.wait_for_manager(timeout=15)
            wait_until(lambda: len(_runs(log)) >= 3, timeout=15)
            st0 = cluster.status(name)
            target = fuzz.Target(name, cluster.address(name), st0["incarnation"], st0["term"])
            if delay_ms:
                for pid in _workers(cluster, name):
                    tracers.append(subprocess.Popen(
                        ["strace", "-q", "-o", "/dev/null", "-p", str(pid), "-e", "trace=fsync",
                         "-e", f"inject=fsync:delay_enter={delay_ms * 1000}:when=3"]))
                time.sleep(0.5)  # attached
            ctx = zmq.Context()
            start = time.time()
            try:
                dealer = fuzz.flood_socket(ctx, target.address)
                fuzz.send_garbage(dealer, fuzz.garbage(target, random.Random(6)), 10)
                fuzz.forged_joins(dealer, forged)
                dealer.close(linger=0)
            finally:
                ctx.term()
            wait_until(lambda: cluster.status(name)["bad_frames"].get("join_flood", 0)
                       >= min(2000, forged - 100), timeout=60)
            n = len(_runs(log))
            wait_until(lambda: len(_runs(log)) >= n + 2, timeout=10)
            end = time.time()
            st = cluster.status(name)
            runs = [t for _, t in _runs(log) if start <= t <= end]
    finally:
        for tracer in tracers:
            tracer.terminate()
            tracer.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    edges = [start, *runs, end]
    row = next(t for t in st["tasks"] if t["name"] == "counter")
    return {"gap": max(b - a for a, b in zip(edges, edges[1:], strict=False)),
            "skipped": row["runs"]["skipped"], "refused": row["runs"]["refused"],
            "drain_ms_max": st["transport"].get("drain_ms_max", 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--forged", type=int, default=3000)
    ap.add_argument("--fsync-delay-ms", type=int, default=650)
    ap.add_argument("--tasks", nargs="+", default=["Counter", "QuickCounter"])
    args = ap.parse_args()
    if args.fsync_delay_ms and shutil.which("strace") is None:
        sys.exit("--fsync-delay-ms needs strace on the PATH (or pass --fsync-delay-ms 0)")
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in args.tasks}
    for r in range(args.repeats):
        for task in args.tasks:  # interleaved: the machine's load falls on both alike
            res = measure(task, args.forged, args.fsync_delay_ms)
            results[task].append(res)
            print(f"  repeat {r + 1} {task}: gap {res['gap']:.3f} s, skipped {res['skipped']}, "
                  f"refused {res['refused']}, drain_ms_max {res['drain_ms_max']}", flush=True)
    print(f"\n{args.forged} forged JOINs + claims, interval {INTERVAL} ms, a worker fsync "
          f"delayed {args.fsync_delay_ms} ms, {args.repeats} repeats")
    print(f"{'task':<14} {'gap median s':>12} {'gap max s':>10} {'skipped':>8} {'refused':>8} "
          f"{'drain ms max':>12}")
    for task, rows in results.items():
        gaps = [x["gap"] for x in rows]
        print(f"{task:<14} {statistics.median(gaps):>12.3f} {max(gaps):>10.3f} "
              f"{sum(x['skipped'] for x in rows):>8} {sum(x['refused'] for x in rows):>8} "
              f"{max(x['drain_ms_max'] for x in rows):>12}")
    first, *rest = args.tasks
    for task in rest:
        ratio = (statistics.median([x["gap"] for x in results[first]])
                 / statistics.median([x["gap"] for x in results[task]]))
        print(f"median gap {first} / {task}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
