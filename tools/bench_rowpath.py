#!/usr/bin/env python3
"""The replication of a no-op task's row per run, both ends, in process: this tree against
another, side by side.

    .venv/bin/python tools/bench_rowpath.py [--against ../main] [--tasks 140]
        [--rounds 200] [--repeats 7] [--instructions] [--old-form]

Each repeat runs, in a child process of each tree in turn (the order alternating), what the
rows of ``--tasks`` no-op tasks (as ``tools/bench_tasks.py`` (c): 100 ms, 3 nodes) go
through: per round a quarter of the tasks is dispatched, a replication round goes while their
runs are in flight (as about half of them do at 1,400 runs/s), their results come, and a
round goes again. A round: the changed rows into the manager's table log
(``RowEncoder.step``: ``TaskRecord.to_text``, ``ReplicaLog.put``), the delta for a member at
the log's end (``ReplicaLog.delta``, patches from exact positions) in a HEARTBEAT
(``clerk._codec.encode``), and at the member the HEARTBEAT decoded and applied to its
``Replica`` (``row_texts``, ``apply_hist``); a tree that has it sends the rows after the
HEARTBEAT's body (:mod:`clerk._codectail`; ``--old-form``: this tree (``before``, or
``this``) as strings inside it, so ``--against`` this same tree compares the two forms
alone). CPU per run (``time.thread_time``) of the
manager's part (encode; delta and HEARTBEAT) and of one member's, the scheduler's own
dispatch and result left out; medians over the repeats and their ratio. ``--instructions``:
the same pipeline's instructions per run counted by valgrind's callgrind (deterministic on a
shared machine; a run each of ``rounds/4`` and ``rounds`` rounds, their difference).
Instructions are not time: a float's repr is many instructions at a high rate, a check in
Python few at a low one. Rows' histories as patches at 140 tasks were 5 % fewer instructions
and 10 % more CPU (2026-12-03): decide by the CPU medians, when the machine is quiet enough
that ``before`` and ``after`` of one tree agree.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(tasks: int, rounds: int, old_form: bool = False) -> dict[str, float]:
    """Run the pipeline in this process (its tree on sys.path); CPU seconds per run."""
    from clerk._codec import decode, encode
    from clerk._messages import Heartbeat, Peer
    from clerk._replica import Replica, ReplicaLog
    from clerk._replicalog import RowEncoder
    from clerk._schedule import Scheduler
    from clerk._tasks import TaskDef

    me = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d+r", 9)
    defs = [TaskDef(name=f"t{i:04d}", target="x:Y", interval=100, timeout=5000)
            for i in range(tasks)]
    s = Scheduler(defs, random.Random(1))
    members = {f"n{i}@127.0.0.1": frozenset(x.name for x in defs) for i in range(3)}
    wall = 1764770000.0
    s.activate(wall, False, (3, "n0@127.0.0.1"))
    for rec in s.records.values():
        rec.state, rec.has_state, rec.version = {"dir": "/tmp/bench-stamps-x"}, True, 1
        rec.origin = {"term": 3, "node": "n0@127.0.0.1", "time": 1764770000000}
        rec.history = [[3, "n0@127.0.0.1", 0]]
    names = list(s.records)
    log, rep, enc = ReplicaLog("L"), Replica(), RowEncoder()
    # The rows after the HEARTBEAT's body (clerk._codectail), where the tree has that form,
    # unless --old-form: a member of this build gets it from a manager of this build.
    raw = "raw" in inspect.signature(log.delta).parameters and not old_form
    form = {"raw": True} if raw else {}
    slots = {n: s._slot_at(s.defs[n], wall * 1000) for n in names}
    exact: set[int] = set()
    spent = {"encode": 0.0, "delta": 0.0, "member": 0.0}
    clock = time.thread_time

    def round_() -> None:
        t0 = clock()
        enc.step(s, log, float("inf"))
        t1 = clock()
        spent["encode"] += t1 - t0
        while True:
            d = log.delta(rep.seq, 64 * 1024, 2 if rep.seq in exact else 1, **form)
            if d is None:
                break
            frames = encode(Heartbeat(me, 1, 1, 1, None, d))
            t2 = clock()
            msg = decode(frames)
            assert isinstance(msg, Heartbeat) and msg.table is not None
            assert rep.apply(msg.table)
            t3 = clock()
            if d.upto == log.seq:
                exact.add(d.upto)
            spent["delta"] += t2 - t1
            spent["member"] += t3 - t2
            t1 = clock()

    per = max(1, tasks // 4)
    runs = 0
    for r in range(rounds + 20):
        if r == 20:  # histories full: from here on it counts
            spent = dict.fromkeys(spent, 0.0)
            runs = 0
        batch = [names[(r * per + k) % len(names)] for k in range(per)]
        outs = {}
        for n in batch:
            slots[n] += 1
            wall_ms = s.due_ms(n, slots[n]) + 0.4
            (out,) = s._dispatch(s.defs[n], s.records[n], slots[n], wall_ms, members, [])
            outs[n] = (out, wall_ms)
        round_()
        for n in batch:
            out, wall_ms = outs[n]
            s.on_result(n, out.run_id, out.node, "ok", out.state, 0.12, "",
                        (wall_ms + 2.0) / 1000)
        runs += len(batch)
        round_()
    assert dict(rep.items()) == {k: t for k, t in log.items() if t is not None}
    return {k: v / max(1, runs) for k, v in spent.items()}


def _spawn(tree: Path, tasks: int, rounds: int, valgrind: bool = False,
           old_form: bool = False) -> str:
    cmd = [sys.executable, str(HERE / "bench_rowpath.py"), "--child", str(tree),
           "--tasks", str(tasks), "--rounds", str(rounds), *(["--old-form"] if old_form else [])]
    if valgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return out.stdout + out.stderr


def _instructions(tree: Path, tasks: int, rounds: int) -> float:
    def total(n: int) -> int:
        m = re.search(r"Collected : (\d+)", _spawn(tree, tasks, n, valgrind=True))
        assert m is not None, "valgrind did not report"
        return int(m.group(1))

    small = max(1, rounds // 4)
    return (total(rounds) - total(small)) / ((rounds - small) * max(1, tasks // 4))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", type=Path, default=None, help="another tree (before)")
    ap.add_argument("--tasks", type=int, default=140)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--instructions", action="store_true")
    ap.add_argument("--old-form", action="store_true",
                    help="this tree sends rows as strings inside the body, as before "
                         "clerk._codectail (with --against this same tree: the form alone)")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        sys.path.insert(0, str(args.child.resolve()))
        print(json.dumps(child(args.tasks, args.rounds, args.old_form)))
        return 0
    this = HERE.parent
    trees = [("before", args.against.resolve()), ("after", this)] if args.against else [
        ("this", this)]
    got: dict[str, list[dict[str, float]]] = {label: [] for label, _ in trees}
    for rep in range(args.repeats):
        for label, tree in trees if rep % 2 == 0 else trees[::-1]:
            out = _spawn(tree, args.tasks, args.rounds,
                         old_form=args.old_form and label != "after")
            got[label].append(json.loads(out.splitlines()[-1]))
    keys = ["encode", "delta", "member"]
    print(f"{args.tasks} tasks, {args.rounds} rounds of {max(1, args.tasks // 4)} runs; "
          f"us of CPU per run, medians of {args.repeats} interleaved repeats")
    print(f"{'part':<28} | " + " | ".join(f"{label:>8}" for label, _ in trees)
          + (" | ratio" if len(trees) == 2 else ""))
    rows: list[tuple[str, list[float]]] = []
    for k in keys:
        rows.append((k, [statistics.median(r[k] for r in got[label]) * 1e6
                         for label, _ in trees]))
    enc, dlt, mem = (v for _, v in rows)
    mgr = [a + b for a, b in zip(enc, dlt, strict=True)]
    rows.append(("manager (encode + delta)", mgr))
    rows.append(("manager + 2 members", [m + 2 * f for m, f in zip(mgr, mem, strict=True)]))
    for name, vals in rows:
        line = f"{name:<28} | " + " | ".join(f"{v:8.1f}" for v in vals)
        if len(vals) == 2:
            line += f" | {vals[1] / vals[0]:.2f}x"
        print(line)
    if args.instructions:
        ins = [_instructions(tree, args.tasks, args.rounds) for _, tree in trees]
        line = f"{'instructions per run (all)':<28} | " + " | ".join(
            f"{v / 1000:7.0f}k" for v in ins)
        if len(ins) == 2:
            line += f" | {ins[1] / ins[0]:.2f}x"
        print(line + "  (callgrind: the scheduler's dispatch and result included)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
