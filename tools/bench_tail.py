#!/usr/bin/env python3
"""Where the slowest runs lose their time: per-run timestamps across processes at a rate.

    .venv/bin/python tools/bench_tail.py                     # 2,000 runs/s, 20 s window
    .venv/bin/python tools/bench_tail.py --rate 1600 --window 30
    .venv/bin/python tools/bench_tail.py --against ../main   # another tree's cluster after

Runs tools/bench_tasks.py (c)'s cluster (3 nodes, CURVE on, 2 workers each, ``Stamp`` tasks
every 100 ms: ``rate / 10`` tasks) with ``tools/_hoptrace`` on its processes' ``PYTHONPATH``,
which writes ``perf_counter_ns`` timestamps (one clock for every process) at the run path's
functions in the manager, the agents and the workers. Each run is followed by its run id from
the manager's dispatch to the worker's start, and its path is put on one axis: milliseconds
relative to its due time (converted with each process's wall clock at its first trace line).

For the runs that started late (``--late`` ms, default the p98 of the window) the table gives
the median of each step relative to the due time beside that of all runs, and sorts each late
run by the first step that was already past its due time:

* ``dispatched late``: the manager sent it after its due time (a slot deferred to its due
  time, or the manager's loop late);
* ``reached the node late``: sent ahead, but the node's executor got it after its due time
  (the wire, or the node's loop busy);
* ``queued past due``: in the executor's queue at its due time: both workers held runs (whose
  due times are reported: later than this run's = a worker held a later run);
* ``reached the worker late``: handed to a worker before its due time that read it after;
* ``started late``: the worker had it before its due time and started late (its wake-up:
  the CPU's run queue).

Also: the GC pauses and the agents' loop turns (poll return to the next poll) that overlap a
late run's last 20 ms before its start. The tracer costs ~2-4 µs an event: a traced run is a
little slower than an untraced one (compare trees in one run, not with bench_tasks).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS.parent))
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS / "_hoptrace"))  # (LocalCluster passes sys.path to the nodes)

from _bench_lateness import STAMP, pct, read_stamps, source_tree  # noqa: E402
from bench_hops import traced  # noqa: E402

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402

CLASSES = ["dispatched late", "reached the node late", "queued past due",
           "reached the worker late", "started late"]


@dataclass
class Run:
    rid: str
    due: float = 0.0  # wall ms
    agent: str = ""
    dispatch: float | None = None  # these: ms relative to the due time
    sub: float | None = None
    queued: int = 0
    busy: int = 0
    take: float | None = None
    wid: int = -1
    done: float | None = None
    w_in: float | None = None
    hold_in: float | None = None
    start: float | None = None  # lateness (ms)
    worker: str = ""
    abs_sub: float = 0.0  # shared clock, ms
    abs_take: float = 0.0
    abs_done: float = 0.0
    abs_start: float = 0.0
    notes: list[str] = field(default_factory=list)
    why: str = "-"  # why it stayed queued at its submit, per worker (sitecustomize)


Trace = dict[str, list[tuple[int, str, str]]]


def read(d: Path) -> tuple[Trace, dict[str, int]]:
    ev: Trace = collections.defaultdict(list)
    offset: dict[str, int] = {}  # wall_ns - t_ns per process
    for f in d.glob("*.trace"):
        for line in f.read_text().splitlines():
            parts = line.split(" ", 3)
            if len(parts) < 3:
                continue
            pid, name, t = parts[0], parts[1], int(parts[2])
            extra = parts[3] if len(parts) > 3 else ""
            if name == "clock":
                offset.setdefault(pid, int(extra) - t)
                continue
            ev[pid].append((t, name, extra))
    for v in ev.values():
        v.sort()
    return ev, offset


def runs_of(ev: Trace, offset: dict[str, int]) -> dict[str, Run]:
    runs: dict[str, Run] = {}

    def get(rid: str) -> Run:
        r = runs.get(rid)
        if r is None:
            r = runs[rid] = Run(rid)
        return r

    # Pass 1: due times (x_sub) and where each run went.
    for pid, evs in ev.items():
        for t, name, x in evs:
            if name == "x_sub":
                rid, due, q, b, *why = x.split()
                r = get(rid)
                r.why = why[0] if why else "-"
                r.due, r.agent, r.queued, r.busy = float(due), pid, int(q), int(b)
                r.abs_sub = t / 1e6
    for pid, evs in ev.items():
        off = offset.get(pid)
        if off is None:
            continue

        def rel(t: int, r: Run, off: int = off) -> float:
            return (t + off) / 1e6 - r.due

        current: Run | None = None
        for t, name, x in evs:
            if name == "x_sub":
                r = runs[x.split()[0]]
                r.sub = rel(t, r)
            elif name == "x_take" and x.split()[0] not in runs:
                continue  # (its x_sub was lost: a process's last lines at the stop)
            elif name == "dispatch" and x in runs:
                r = runs[x]
                if r.dispatch is None:
                    r.dispatch = rel(t, r)
            elif name == "x_take":
                rid, wid = x.split()
                r = runs[rid]
                r.take, r.wid, r.abs_take = rel(t, r), int(wid), t / 1e6
            elif name == "x_done" and x in runs:
                r = runs[x]
                r.done, r.abs_done = rel(t, r), t / 1e6
            elif name == "w_run" and x in runs:
                current = runs[x]
                current.worker = pid
                current.w_in = rel(t, current)
            elif name == "hold_in" and current is not None:
                current.hold_in = rel(t, current)
            elif name == "hold_out" and current is not None:
                current.start = float(x) * 1000 - current.due
                current.abs_start = t / 1e6
                current = None
    return {k: r for k, r in runs.items() if r.due}


def classify(r: Run) -> str:
    if r.dispatch is not None and r.dispatch > 0:
        return CLASSES[0]
    if r.sub is not None and r.sub > 0:
        return CLASSES[1]
    if r.take is not None and r.take > 0:
        return CLASSES[2]
    if r.w_in is not None and r.w_in > 0:
        return CLASSES[3]
    return CLASSES[4]


def med(xs: list[float | None]) -> str:
    v = [x for x in xs if x is not None]
    return f"{statistics.median(v):8.2f}" if v else "       -"


def report(label: str, d: Path, w0: float, w1: float, late_ms: float | None) -> str:
    ev, offset = read(d)
    runs = runs_of(ev, offset)
    inwin = [r for r in runs.values() if r.start is not None and w0 * 1000 <= r.due + r.start
             < w1 * 1000 and r.sub is not None and r.take is not None and r.w_in is not None]
    if not inwin:
        return f"{label}: no runs traced in the window"
    lat = [r.start for r in inwin if r.start is not None]
    limit = late_ms if late_ms is not None else pct(lat, 98)
    late = [r for r in inwin if r.start is not None and r.start >= limit]
    out = [f"{label}: {len(inwin)} runs; lateness median {statistics.median(lat):.2f} ms, "
           f"p98 {pct(lat, 98):.2f}, p99 {pct(lat, 99):.2f}, max {max(lat):.2f}; "
           f"late = >= {limit:.2f} ms: {len(late)} runs",
           f"  {'step (ms after due; median)':<34} {'all':>8} {'late':>8}"]
    steps: list[tuple[str, Any]] = [
        ("manager dispatched", lambda r: r.dispatch), ("executor got it (submit)", lambda r: r.sub),
        ("handed to a worker", lambda r: r.take), ("worker read it", lambda r: r.w_in),
        ("worker holds until due", lambda r: r.hold_in), ("started (lateness)", lambda r: r.start),
        ("DONE read by the agent", lambda r: r.done)]
    for name, f in steps:
        out.append(f"  {name:<34} {med([f(r) for r in inwin])} {med([f(r) for r in late])}")
    out.append(f"  {'queued ahead at submit':<34} {med([r.queued - 1 for r in inwin])} "
               f"{med([r.queued - 1 for r in late])}")
    out.append(f"  {'busy workers at submit':<34} {med([r.busy for r in inwin])} "
               f"{med([r.busy for r in late])}")
    manager = max(ev, key=lambda p: sum(1 for e in ev[p] if e[1] == "dispatch"))
    for where, rs in (("all nodes", late),
                      ("the manager's node", [r for r in late if r.agent == manager]),
                      ("the other nodes", [r for r in late if r.agent != manager])):
        by = collections.Counter(classify(r) for r in rs)
        out.append(f"  late runs on {where} ({len(rs)}) by the first step past due: "
                   + "; ".join(f"{c} {by[c]}" for c in CLASSES if by[c]))
    # Queued past due: what the agent's workers held at the run's due time.
    per_agent: dict[str, list[Run]] = collections.defaultdict(list)
    for r in runs.values():
        if r.take is not None:
            per_agent[r.agent].append(r)
    later = earlier = 0
    waits: list[float] = []
    for r in late:
        if classify(r) != CLASSES[2]:
            continue
        due_abs = r.abs_sub - r.sub if r.sub is not None else 0.0
        for o in per_agent[r.agent]:
            if o is r or not o.abs_take:
                continue
            end = o.abs_done or o.abs_take + 1e9
            if o.abs_take <= due_abs < end:
                if o.due > r.due:
                    later += 1
                else:
                    earlier += 1
                if o.start is not None:
                    waits.append(o.due - r.due)
    whys = collections.Counter(r.why for r in late if classify(r) == CLASSES[2])
    out.append("  queued past due: why it stayed queued at its submit (per worker): "
               + "; ".join(f"{k} {v}" for k, v in whys.most_common(6)))
    if later + earlier:
        out.append(f"  queued past due: the workers held, at its due time, {later} runs due "
                   f"later than it and {earlier} due earlier (or equal); held run's due minus "
                   f"this run's: median {statistics.median(waits):.2f} ms")
    # Stalls: GC pauses and loop turns overlapping late runs' last 20 ms.
    gcs: dict[str, list[tuple[float, float, str]]] = collections.defaultdict(list)
    turns: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for pid, evs in ev.items():
        open_gc: tuple[float, str] | None = None
        last_out: float | None = None
        for t, name, x in evs:
            if name == "gc":
                phase, gen = x.split()
                if phase == "start":
                    open_gc = (t / 1e6, gen)
                elif open_gc is not None:
                    gcs[pid].append((open_gc[0], t / 1e6, open_gc[1]))
                    open_gc = None
            elif name == "poll_out":
                last_out = t / 1e6
            elif name == "poll_in" and last_out is not None:
                turns[pid].append((last_out, t / 1e6))
                last_out = None
    gc_hit: collections.Counter[str] = collections.Counter()
    long_turn = 0
    turn_lens: list[float] = []
    for r in late:
        a, b = r.abs_start - 20, r.abs_start
        for pid in (r.agent, r.worker):
            for s, e, gen in gcs.get(pid, []):
                if s < b and e > a and e - s > 0.5:
                    gc_hit[f"{'agent' if pid == r.agent else 'worker'} gen{gen}"] += 1
        ts = turns.get(r.agent, [])
        starts = [s for s, _ in ts]
        i = bisect.bisect_left(starts, a)
        longest = max((e - s for s, e in ts[max(0, i - 1):bisect.bisect_right(starts, b)]
                       if e > a), default=0.0)
        turn_lens.append(longest)
        if longest > 5:
            long_turn += 1
    out.append(f"  late runs with a GC pause > 0.5 ms in their last 20 ms: "
               f"{dict(gc_hit) or 'none'}")
    if turn_lens:
        out.append(f"  the agent's longest loop turn in a late run's last 20 ms: median "
                   f"{statistics.median(turn_lens):.2f} ms, > 5 ms for {long_turn} of "
                   f"{len(late)}")
    all_turns = [e - s for v in turns.values() for s, e in v]
    if all_turns:
        out.append(f"  all agents' loop turns: p99 {pct(all_turns, 99):.2f} ms, p99.9 "
                   f"{pct(all_turns, 99.9):.2f} ms, max {max(all_turns):.2f} ms")
    out.append("  the 8 latest runs (ms after due): dispatch, submit, take, worker in, start;"
               " queued ahead, busy")
    for r in sorted(late, key=lambda r: -(r.start or 0))[:8]:
        vals = ", ".join("-" if v is None else f"{v:.1f}"
                         for v in (r.dispatch, r.sub, r.take, r.w_in, r.start))
        out.append(f"    {vals}; {r.queued - 1}, {r.busy}  ({classify(r)})")
    return "\n".join(out)


def run_cluster(d: Path, rate: int, window: float, source: str | None
                ) -> tuple[float, float]:
    n = max(1, rate // 10)
    with tempfile.TemporaryDirectory(prefix="bench-tail-stamps-") as tmp:
        s = Path(tmp)
        tasks = [clerk.task(STAMP, name=f"t{i:04d}", interval=100, timeout=5000,
                            args={"dir": str(s)}) for i in range(n)]
        with traced(d), source_tree(source), LocalCluster(3, tasks=tasks, workers=2,
                                                         log_level="warning") as c:
            c.wait_for_manager(timeout=60)
            wait_until(lambda: len({x[0] for x in read_stamps(s)}) >= n, timeout=60,
                       interval=0.2)
            time.sleep(1.0)
            w0 = time.time()
            time.sleep(window)
            w1 = time.time()
    return w0, w1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=2000, help="runs/s (tasks x 10)")
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured")
    ap.add_argument("--late", type=float, default=None,
                    help="ms: a late run (default: the window's p98)")
    ap.add_argument("--against", metavar="DIR", help="then the same on the Clerk in DIR")
    ap.add_argument("--keep", metavar="DIR", help="keep the traces in DIR")
    ap.add_argument("--read", metavar="DIR", help="only report on the traces kept in DIR")
    args = ap.parse_args()
    if args.read:
        for d in sorted(Path(args.read).glob("tree*")):
            w0, w1 = map(float, (d / "window").read_text().split())
            print(report(d.name, d, w0, w1, args.late))
        return 0
    trees: list[tuple[str, str | None]] = [("this tree", None)]
    if args.against:
        src = str(Path(args.against).resolve())
        if not (Path(src) / "clerk" / "__init__.py").is_file():
            ap.error(f"--against {args.against}: no clerk/__init__.py there")
        trees.append((f"against {src}", src))
    with contextlib.ExitStack() as stack:
        base = Path(args.keep) if args.keep else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-tail-")))
        for i, (label, source) in enumerate(trees):
            d = base / f"tree{i}"
            d.mkdir(parents=True, exist_ok=True)
            w0, w1 = run_cluster(d, args.rate, args.window, source)
            (d / "window").write_text(f"{w0} {w1}")
            print(report(f"{label} at {args.rate} runs/s", d, w0, w1, args.late), flush=True)
            print(f"(load average {os.getloadavg()[0]:.1f} at the end)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
