#!/usr/bin/env python3
"""Start and restart times of a local cluster, and counts repeated by full restarts.

    .venv/bin/python tools/bench_restart.py                              # this checkout
    .venv/bin/python tools/bench_restart.py --base /tmp/restart-base     # side by side
    .venv/bin/python tools/bench_restart.py --trials 5 --nodes 3

Each trial is a child process (``--child``) with one checkout's ``clerk`` first on the path; with
``--base`` the trials of the two checkouts alternate (base, this, base, ...), so that the
machine's load hits both alike. A trial runs a ``LocalCluster`` of ``--nodes`` real nodes (CURVE
on, a data directory each) with a Counter task every 200 ms whose runs append their count to a
ledger, and measures:

* **fresh start**: from starting every node (empty data directories) to the first run;
* **rejoin a live cluster**: a member is killed (SIGKILL) and started again on its data
  directory: from its start to the moment its status names the manager (polled every 10 ms);
* **full restart**: every node SIGTERMed, then all started again at once: from the start to the
  first run, and the counts run twice over the stop (0 is exact);
* **staggered restart**: a member stops first (its copy of the table then falls behind), the
  rest later; it is started alone and the others 2 s later: from its start to the first run,
  and the counts run twice (the race of ``tests/integration/test_state_durable.py``).

Prints a markdown table: the median over the trials of each figure per checkout, and the ratio
this / base.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]

FIGURES = [
    ("fresh", "fresh start: to the first run (s)"),
    ("rejoin", "rejoin a live cluster: to following its manager (s)"),
    ("full", "full restart: to the first run (s)"),
    ("full_twice", "full restart: counts run twice"),
    ("staggered", "staggered restart: to the first run (s)"),
    ("staggered_twice", "staggered restart: counts run twice"),
]


def _child(nodes: int) -> dict[str, float]:
    import clerk
    from clerk.testing import LocalCluster, wait_until
    from tests.integration.cluster_tasks import Counter
    from tests.integration.task_helpers import counter_lines

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="clerk-bench-restart-") as tmp:
        log = Path(tmp) / "ledger.log"
        tasks = [clerk.task(Counter, name="ledger", interval=200, args={"log": str(log)})]

        def first_after(t: float) -> float:
            line = wait_until(lambda: next((x for x in counter_lines(log) if x.started > t),
                                           None), timeout=60, interval=0.01)
            return line.started - t

        def twice() -> int:
            seen = collections.Counter(x.count for x in counter_lines(log))
            return sum(c - 1 for c in seen.values() if c > 1)

        with LocalCluster(nodes, tasks, start=False) as cluster:
            t0 = time.time()
            cluster.start_all()
            out["fresh"] = first_after(t0)
            manager = cluster.wait_for_manager(timeout=30)
            wait_until(lambda: len(counter_lines(log)) >= 5, timeout=30)
            member = next(n for n in cluster.names if n != manager)
            cluster.kill(member)
            t0 = time.time()
            cluster.start(member)

            def follows() -> bool:
                try:
                    return cluster.status(member, timeout=0.2).get("manager") == manager
                except Exception:  # not answering yet
                    return False

            wait_until(follows, timeout=30, interval=0.01)
            out["rejoin"] = time.time() - t0
            wait_until(lambda: len(counter_lines(log)) >= 10, timeout=30)
            cluster.stop_all()
            before = twice()
            t0 = time.time()
            cluster.start_all()
            out["full"] = first_after(t0)
            wait_until(lambda: sum(x.started > t0 for x in counter_lines(log)) >= 5, timeout=60)
            out["full_twice"] = twice() - before
            manager = cluster.wait_for_manager(timeout=30)
            early = next(n for n in cluster.names if n != manager)
            cluster.stop(early)
            left = counter_lines(log)[-1].count
            wait_until(lambda: counter_lines(log)[-1].count >= left + 3, timeout=30)
            cluster.stop_all()
            before = twice()
            t0 = time.time()
            cluster.start(early)
            wait_until(lambda: time.time() > t0 + 2.0
                       or any(x.started > t0 for x in counter_lines(log)), timeout=30)
            for name in cluster.names:
                if name != early:
                    cluster.start(name)
            out["staggered"] = first_after(t0)
            wait_until(lambda: sum(x.started > t0 for x in counter_lines(log)) >= 5, timeout=60)
            out["staggered_twice"] = twice() - before
    return out


def _run_child(root: Path, nodes: int) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    proc = subprocess.run([sys.executable, str(HERE / "tools" / "bench_restart.py"), "--child",
                           "--nodes", str(nodes)], env=env, cwd=root, capture_output=True,
                          text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({root}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, help="another checkout to compare with (before)")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.nodes)))
        return 0
    roots = ([("base", args.base.resolve())] if args.base else []) + [("this", HERE)]
    got: dict[str, list[dict[str, float]]] = {label: [] for label, _ in roots}
    for i in range(args.trials):
        for label, root in roots:
            res = _run_child(root, args.nodes)
            got[label].append(res)
            print(f"trial {i + 1} {label}: " + ", ".join(f"{k}={v:.2f}" for k, v in res.items()),
                  file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"{args.nodes} nodes, {args.trials} trials per checkout, medians; load average "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the end\n")
    labels = [label for label, _ in roots]
    print("| figure | " + " | ".join(labels) + (" | this / base |" if args.base else " |"))
    print("|---|" + "---|" * (len(labels) + bool(args.base)))
    for key, title in FIGURES:
        meds: dict[str, Any] = {}
        for label in labels:
            vals = [r[key] for r in got[label]]
            meds[label] = (sum(vals) if key.endswith("twice") else statistics.median(vals))
        cells = " | ".join(f"{meds[x]:.0f} (sum)" if key.endswith("twice") else f"{meds[x]:.2f}"
                           for x in labels)
        ratio = ""
        if args.base:
            b, t = meds["base"], meds["this"]
            ratio = (f" {t / b:.2f} |" if b and not key.endswith("twice") else " |")
        print(f"| {title} | {cells} |{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
