#!/usr/bin/env python3
"""What the operator's facts cost: the task table with and without run history, side by side.

    .venv/bin/python tools/bench_ops.py [--tasks 10 100 1000] [--repeat 200]

For each size, every task has a state of ~200 bytes and a full history (50 runs, or what the
byte budget leaves; one run in five failed with an error line), and the script measures, on the
same rows with the history stripped and kept:

* the packed table's size (what one heartbeat carries: the codec's limit is 1 MiB);
* ``pack_table`` (the manager, at every replication) and ``unpack_table`` (a follower's
  take-over, a status request, a metrics scrape) in microseconds, median of ``--repeat``;
* the cost of one finished run's bookkeeping (``_finish`` with its history append);
* a whole metrics scrape (prometheus_client's exposition of every family) when it is installed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clerk._metrics import NodeMetrics, Sources  # noqa: E402
from clerk._schedule import Scheduler, pack_table, unpack_table  # noqa: E402
from clerk._tasks import TaskDef  # noqa: E402

NODES = {f"n{i}@10.0.0.{i}": () for i in range(1, 4)}


def build(n: int) -> Scheduler:
    defs = [TaskDef(name=f"app.tasks:Task{i}", target="x:Y", interval=1000) for i in range(n)]
    s = Scheduler(defs, random.Random(1))
    members = {node: tuple(d.name for d in defs) for node in NODES}
    wall = 1_700_000_000.0
    s.activate(wall, graceful=False)
    for k in range(60):  # 60 runs of every task: a full history
        wall += 1.0
        ds, _ = s.tick(wall, members)
        for d in ds:
            ok = random.random() > 0.2
            s.on_result(d.task, d.run_id, d.node, "ok" if ok else "error",
                        {"cursor": "x" * 180, "k": k}, 12.5,
                        "" if ok else "Traceback ...\nValueError: upstream said 503",
                        wall + 0.02)
    return s


def timed(fn: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def finish_cost(s: Scheduler, repeat: int) -> float:
    """Median microseconds of dispatch + result for one task (the history append included)."""
    name = next(iter(s.defs))
    members = {node: (name,) for node in NODES}
    samples = []
    wall = 1_700_000_100.0
    for _ in range(repeat):
        d, _ = s.trigger(name, wall, members)
        assert d is not None
        t0 = time.perf_counter()
        s.on_result(name, d.run_id, d.node, "ok", {"cursor": "x" * 180}, 1.0, "", wall)
        samples.append(time.perf_counter() - t0)
        wall += 0.001
    return statistics.median(samples) * 1e6


def scrape_cost(table: Any, n: int, repeat: int) -> float | None:
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        return None
    from clerk._metrics import _families

    metrics = NodeMetrics(f"app.tasks:Task{i}" for i in range(n))
    src = Sources(node=metrics, is_manager=lambda: True, term=lambda: 3,
                  bad_frames=Counter, worker_restarts=lambda: 0,
                  table=lambda: unpack_table(table))

    class _C:
        def collect(self) -> Any:
            return _families(src)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_C())  # type: ignore[arg-type]
    return timed(lambda: generate_latest(reg), max(5, repeat // 10))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--repeat", type=int, default=200)
    args = p.parse_args()
    rows = []
    for n in args.tasks:
        s = build(n)
        full = s.table()
        bare = {**full, "tasks": {k: {**v, "run_history": []} for k, v in full["tasks"].items()}}
        packed_full, packed_bare = pack_table(full), pack_table(bare)
        size_full = sum(len(c) for c in packed_full["chunks"])
        size_bare = sum(len(c) for c in packed_bare["chunks"])
        kept = statistics.mean(len(r.run_history) for r in s.records.values())
        rows.append((
            n, kept, size_bare, size_full,
            timed(lambda t=bare: pack_table(t), args.repeat),
            timed(lambda t=full: pack_table(t), args.repeat),
            timed(lambda t=packed_bare: unpack_table(t), args.repeat),
            timed(lambda t=packed_full: unpack_table(t), args.repeat),
            finish_cost(s, args.repeat),
            scrape_cost(packed_full, n, args.repeat),
        ))
    print("| tasks | runs kept/task | table bytes (no history -> with) | ratio | pack us "
          "(no hist -> with) | ratio | unpack us (no hist -> with) | ratio | one run's "
          "bookkeeping us | metrics scrape us |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for n, kept, sb, sf, pb, pf, ub, uf, fin, scr in rows:
        print(f"| {n} | {kept:.1f} | {sb:,} -> {sf:,} | {sf / sb:.2f}x | {pb:,.0f} -> {pf:,.0f} "
              f"| {pf / pb:.2f}x | {ub:,.0f} -> {uf:,.0f} | {uf / ub:.2f}x | {fin:.1f} | "
              f"{'-' if scr is None else f'{scr:,.0f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
