#!/usr/bin/env python
"""Quorum mode's write path on a real local cluster: the commit latency of the manager's
writes, and the start lateness of runs beside the default mode (issue 10).

    .venv/bin/python tools/bench_quorum.py [--seconds 30] [--nodes 5] [--voters 3]
                                           [--tasks 5] [--interval 100]

Two clusters of ``--nodes`` nodes are up at once (so the machine's load hits both alike): one
in the default mode, one in quorum mode (the first ``--voters`` nodes vote; each keeps its
voter file in its data directory, fsynced). Each runs ``--tasks`` Stamp tasks every
``--interval`` ms (tools/_bench_tasks.py: every run logs its start and its slot's due time).

* **commit ms**: the quorum manager's write latency, from ``quorum_write`` to the
  ``WriteCommitted`` of a majority (its own fsynced vote and another voter's, one round
  trip): sampled from its status (``write_ahead.commit_ms``, the last 64 commits) every
  ``64 / writes per second`` seconds, so the samples barely overlap.
* **lateness ms**: a run's start minus its slot's due time, as the task sees it
  (``clerk.current_run().due``): the reservations are written ``lead`` ahead of the due time,
  so quorum mode should not add a commit to it; the EXECUTEs that had to wait for one anyway
  are counted (``held for a commit``).

Prints a markdown table: median and p99 per mode and the quorum/default ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_lateness import STAMP, read_stamps  # noqa: E402  (the Stamp task's files)

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--voters", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--interval", type=int, default=100)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory(prefix="bench-quorum-") as tmp:
        dirs = {m: Path(tmp) / m for m in ("default", "quorum")}
        for d in dirs.values():
            d.mkdir()
        clusters = {}
        for mode, d in dirs.items():
            tasks = [clerk.task(STAMP, name=f"t{i}", interval=args.interval, timeout=5000,
                                args={"dir": str(d)}) for i in range(args.tasks)]
            kw = {"voters": args.voters} if mode == "quorum" else {}
            clusters[mode] = LocalCluster(args.nodes, tasks=tasks, log_level="warning",
                                          **kw)  # type: ignore[arg-type]
        try:
            for c in clusters.values():
                c.__enter__()
            managers = {m: c.wait_for_manager(timeout=60) for m, c in clusters.items()}
            for d in dirs.values():
                wait_until(lambda d=d: len({s[0] for s in read_stamps(d)}) >= args.tasks,
                           timeout=60, interval=0.1)
            writes_per_s = 2 * args.tasks * 1000 / args.interval  # a reservation + a result
            every = max(0.5, 64 / writes_per_s)
            commits: list[float] = []
            lead: list[float] = []
            held = (0, 0)
            takeovers = 0
            w0 = time.time()
            while time.time() - w0 < args.seconds:
                time.sleep(every)
                qc = clusters["quorum"]
                boss = qc.status(managers["quorum"], timeout=5).get("manager")
                if boss and boss != managers["quorum"]:  # (a takeover: count it, follow it)
                    takeovers += 1
                    managers["quorum"] = boss
                st = qc.status(boss or managers["quorum"], timeout=5)
                wa = st.get("write_ahead") or {}
                commits += wa.get("commit_ms", [])
                if "lead_ms" in wa:
                    lead.append(wa["lead_ms"])
                    held = (wa.get("dispatched_at_once", 0), wa.get("dispatched_late", 0))
            w1 = time.time()
        finally:
            for c in clusters.values():
                c.close()
        late = {m: [(t - due) * 1000 for _n, _s, t, due in read_stamps(d) if w0 <= t < w1]
                for m, d in dirs.items()}
    print(f"{args.nodes} nodes ({args.voters} voters in quorum mode), {args.tasks} tasks every "
          f"{args.interval} ms, {w1 - w0:.0f} s; both clusters up at once\n")
    print("| measure | default | quorum | quorum/default |")
    print("|---|--:|--:|--:|")
    for name, q in (("median", 0.5), ("p99", 0.99)):
        d, qv = pct(late["default"], q), pct(late["quorum"], q)
        print(f"| lateness {name} ms | {d:.2f} | {qv:.2f} | {qv / d if d else float('nan'):.2f} |")
    print(f"| runs | {len(late['default'])} | {len(late['quorum'])} | |")
    print(f"| commit median ms | | {pct(commits, 0.5):.2f} | |")
    print(f"| commit p99 ms | | {pct(commits, 0.99):.2f} | |")
    print(f"| commits sampled | | {len(commits)} | |")
    if lead:
        print(f"| reservation lead ms (median) | | {statistics.median(lead):.1f} | |")
    print(f"| EXECUTEs sent at once / held for a commit | | {held[0]} / {held[1]} | |")
    print(f"| takeovers seen during the run | | {takeovers} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
