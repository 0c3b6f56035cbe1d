#!/usr/bin/env python3
"""Rows' run histories replicated as what changed (clerk._histdelta) against whole rows: bytes
and CPU per replication round, in process, with full histories.

    .venv/bin/python tools/bench_histdelta.py [--tasks 40 100 200 1000] [--rounds 50]
        [--repeats 5]

Each task's history is filled to its cap first (``min(HISTORY_TASK_BYTES,
HISTORY_BUDGET_BYTES / tasks)``, as the scheduler caps it), then each round 20 tasks are
dispatched and finish (one new entry each); the manager's table log (``ReplicaLog``) takes
the changed rows (``RowEncoder``'s ``put``), the member's delta is encoded in a HEARTBEAT
(``clerk._codec``), decoded and applied to a member's ``Replica``, until the member holds the
log's end. *whole*: every changed row whole (what a member of an older build gets: the rows
put without their history's identity); *patched*: the member announces ``+r`` and gets
patches from the exact positions it holds (a delta that reached the log's end). Per round:
the HEARTBEAT bytes, the manager's CPU (put, delta, encode) and the member's (decode,
apply), ``time.thread_time``; medians over interleaved repeats. Both end with the same rows
(checked).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clerk._codec import decode, encode  # noqa: E402
from clerk._control import HISTORY_BUDGET_BYTES, HISTORY_TASK_BYTES, make_entry  # noqa: E402
from clerk._messages import Heartbeat, Peer  # noqa: E402
from clerk._record import TaskRecord  # noqa: E402
from clerk._replica import Replica, ReplicaLog, row_key  # noqa: E402

PER_ROUND = 20
ME = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d", 9)


def _entry(slot: int) -> list[object]:
    return make_entry(slot=slot, due_ms=1.7e12 + slot * 100, node="n2@127.0.0.1",
                      start_ms=1.7e12 + slot * 100 + 0.4, duration_ms=0.21, outcome="ok",
                      error="", version=slot, trigger=False)


def run(tasks: int, rounds: int, patched: bool) -> tuple[float, float, float]:
    """(bytes, manager ms, member ms) per round."""
    cap = min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES // tasks)
    recs = {f"t{i:05d}": TaskRecord() for i in range(tasks)}
    for rec in recs.values():
        for s in range(50):
            rec.run_history.append(_entry(s), cap)
    log, member = ReplicaLog("L"), Replica()

    def put(name: str, rec: TaskRecord) -> None:
        log.put(row_key(name), rec.to_text(), rec.run_history.patch_view() if patched else None)

    for name, rec in recs.items():
        put(name, rec)
    log.mark_complete()
    first = log.delta(-1, 10**9, 1 if patched else 0)
    assert first is not None and member.apply(first)
    exact = {log.seq}
    names = list(recs)
    size = manager = follower = 0.0
    for r in range(rounds):
        t0 = time.thread_time()
        for k in range(PER_ROUND):
            name = names[(r * PER_ROUND + k) % tasks]
            rec = recs[name]
            rec.dispatched = rec.slot = 100 + r
            rec.run_history.append(_entry(100 + r), cap)
            put(name, rec)
        while True:
            hist = (2 if member.seq in exact else 1) if patched else 0
            d = log.delta(member.seq, 32 * 1024, hist)
            if d is None:
                break
            frames = encode(Heartbeat(ME, 1, r, 1, None, d))
            t1 = time.thread_time()
            msg = decode(frames)
            assert isinstance(msg, Heartbeat) and msg.table is not None
            assert member.apply(msg.table)
            t2 = time.thread_time()
            if d.upto == log.seq:
                exact.add(d.upto)
            manager += t1 - t0
            follower += t2 - t1
            size += sum(len(f) for f in frames)
            t0 = time.thread_time()
    assert dict(member.items()) == {k: t for k, t in log.items() if t is not None}
    return size / rounds, manager / rounds * 1e3, follower / rounds * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[40, 100, 200, 1000])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"Per round ({PER_ROUND} tasks finish; medians of {args.repeats} interleaved "
          "repeats): heartbeat bytes, manager ms (put, delta, encode), member ms (decode, apply)")
    print("tasks  | bytes whole | patched | ratio | manager whole | patched | member whole "
          "| patched")
    for tasks in args.tasks:
        got: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for rep in range(args.repeats):
            for patched in ((False, True) if rep % 2 == 0 else (True, False)):
                got[patched].append(run(tasks, args.rounds, patched))
        w = [statistics.median(x[i] for x in got[False]) for i in range(3)]
        p = [statistics.median(x[i] for x in got[True]) for i in range(3)]
        print(f"{tasks:<6} | {w[0]:>11,.0f} | {p[0]:>7,.0f} | {w[0] / p[0]:4.1f}x | "
              f"{w[1]:>13.3f} | {p[1]:>7.3f} | {w[2]:>12.3f} | {p[2]:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
