#!/usr/bin/env python3
"""The manager's scheduler per run, in process, this tree against another, in interleaved turns.

    .venv/bin/python tools/bench_sched.py --against /work/main [--repeats 7] [--runs 20000]

What the manager's scheduler does for the runs of ``tools/bench_tasks.py`` (c) at 1,400 runs/s:
140 no-op tasks every 100 ms on 3 nodes, each dispatched the default lead (20 ms) ahead and its
result back 1.5 ms after its due time. A fake wall clock jumps from one thing to do to the next
(the scheduler's ``next_deadline``, or the next result), as the manager's loop wakes for them:
``next_deadline``, ``tick`` (the due slots, their nodes, run ids, ``Dispatch`` objects),
``on_result`` (``Finished``, the history entry, the row's last run), the node's
``NodeMetrics.observe_run`` and ``take_dirty`` (what replication reads). No sockets, no
encoding of rows: the scheduler's part of the path alone, in CPU (``time.thread_time``), which
a loaded machine's scheduling moves far less than a cluster's CPU per run. Each repeat runs
each tree in its own process (the order alternating); the table gives the medians in µs of
CPU per run and their ratio. Both trees must end with the same table (checked: a digest of the
rows' JSON and the finished runs' fields, equal across trees).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _bench_ab import interleaved, print_pair

CHILD = r"""
import hashlib, heapq, json, random, sys, time
sys.path.insert(0, sys.argv[1])
from clerk._metrics import NodeMetrics
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef

runs = int(sys.argv[2])
defs = [TaskDef(name=f"t{i:04d}", target="x:Y", interval=100, timeout=5000) for i in range(140)]
s = Scheduler(defs, random.Random(7), dispatch_lead_ms=20)
members = {f"n{i}@127.0.0.1": frozenset(d.name for d in defs) for i in range(3)}
metrics = NodeMetrics([d.name for d in defs])
wall = 1764770000.0
s.activate(wall, False, (3, "n0@127.0.0.1"))
pending = []  # (wall s of the result, seq, dispatch)
seq = 0
done = 0
digest = hashlib.sha256()
t0 = time.thread_time()
while done < runs:
    nxt = s.next_deadline(wall)
    if pending and pending[0][0] <= nxt:
        at, _, d = heapq.heappop(pending)
        wall = max(wall, at)
        fin = s.on_result(d.task, d.run_id, d.node, "ok",
                          d.state if not d.init else {"n": 0}, 0.12, "", wall)
        metrics.observe_run(fin.task, fin.duration_ms, fin.lateness_ms)
        digest.update(repr((fin.task, fin.slot, fin.node, fin.outcome,
                            round(fin.round_trip_ms, 6), fin.lateness_ms)).encode())
        done += 1
    else:
        wall = max(wall, nxt)
        dispatches, finished = s.tick(wall, members)
        for d in dispatches:
            seq += 1
            heapq.heappush(pending, ((d.due_ms + 1.5) / 1000, seq, d))
            digest.update(repr((d.task, d.slot, d.node, d.init, d.timeout_ms, d.due_ms,
                                d.deadline_ms)).encode())
    s.take_dirty()
cpu = time.thread_time() - t0
for name in sorted(s.records):
    digest.update(s.records[name].to_text().encode())
print(json.dumps([cpu / runs * 1e6, digest.hexdigest()]))
"""


def _one(tree: Path, runs: int) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(runs)], check=True,
                         capture_output=True, text=True, cwd=tree)
    us, digest = json.loads(out.stdout)
    return float(us), str(digest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="another checkout (e.g. /work/main)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20000, help="runs per measurement")
    args = ap.parse_args()
    here, there = Path(__file__).resolve().parent.parent, Path(args.against).resolve()
    a, b, same = interleaved(_one, here, there, args.repeats, args.runs)
    print(f"manager scheduler, 140 no-op tasks every 100 ms on 3 nodes (next_deadline, tick, "
          f"on_result, observe_run): medians of {args.repeats} interleaved repeats, µs of CPU "
          f"per run; same table and runs: {'yes' if same else 'NO'}")
    print_pair(a, b)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
