#!/usr/bin/env python3
"""What one turn of the agent's loop costs when nothing happens, as the task table grows.

    .venv/bin/python tools/bench_tick.py                          # 10 / 1,000 / 10,000 tasks
    .venv/bin/python tools/bench_tick.py --base /work/wt/x-base   # side by side with a checkout
    .venv/bin/python tools/bench_tick.py --tasks 10 1000 --repeats 3 --turns 3000

Each measurement is a child process (``--child``) that starts one real node's agent in process
(insecure, one worker, a data directory in a temporary directory, this machine's loopback), lets
it elect itself and schedule every task, then times the calls the loop makes on a turn
(:meth:`clerk._agent.Agent.run`):

* **idle turn**: the turn of a loop that woke up and found nothing to read: the deadlines of the
  core and of the task layer, a poll of the sockets with timeout 0, the voters' answers, the
  data directory's check;
* **tick turn**: the turn that follows a deadline: the core's Tick, the task layer's ``on_tick``
  (the scheduler's expiry and dispatch of what is due, replication when something changed) and
  the data directory's check.

Two tables of tasks: ``idle``, interval tasks whose next slot is weeks away (nothing due, no run
in flight), and ``inflight``, instant tasks whose runs never end (every task has a run in
flight until its deadline a day later: one holds the worker, the rest wait in the executor's
queue), the case where every expiry and deadline scan is longest. Reported: the median over
``--repeats`` children of each child's median per-turn time (µs), in batches of ``--turns``
turns; ``--base`` runs the same children against another checkout (its ``clerk`` first on the
path), interleaved with this one, and prints the ratio base / this.

``--cluster``: the CPU the loop costs where it matters, on a 3-node ``LocalCluster`` (CURVE on,
two workers a node, the default dispatch lead) running ``--rate`` no-op runs a second (400) over
each of ``--tasks`` tasks (40 and 1,000 by default: interval = tasks / rate). Per process
role, % of one core over ``--seconds`` and µs of CPU per run (psutil user + system time; runs
counted by the manager), again interleaved with ``--base``::

    .venv/bin/python tools/bench_tick.py --cluster --tasks 40 1000 --base /work/wt/x-base

``--quorum``: what quorum mode's write-ahead adds to a turn on the manager (in process: the
real Scheduler and WriteAhead, no sockets): every turn ``next_reserve_ms`` (when the loop
must wake up to reserve), and ``ahead`` (the reservations) when one is due, with every
reservation committed at once and every dispatch answered. A turn a millisecond of wall time,
``--turns`` x 7 turns; tables ``idle`` (slots weeks away) and ``busy`` (every task every 10 s:
at 10,000 tasks a slot a millisecond). µs per turn: median, 99th percentile, and the first
turn (a new ballot's)::

    .venv/bin/python tools/bench_tick.py --quorum --tasks 1000 10000 --base /work/wt/x-base
"""

from __future__ import annotations

import argparse
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
#: Nothing falls due while a child measures: 10,000 tasks spread over 30 days put one slot
#: every ~4 minutes, and a child measures for a few seconds.
IDLE_INTERVAL_MS = 30 * 24 * 3600 * 1000
#: The ``inflight`` runs never end before the child does (their deadline is a day away).
HOLD_TIMEOUT_MS = 24 * 3600 * 1000
BATCHES = 7


def _child(n: int, kind: str, turns: int) -> dict[str, float]:
    import clerk
    from clerk._agent import Agent
    from clerk._config import NodeConfig
    from clerk._core import Start, Tick

    if kind == "idle":
        tasks = tuple(clerk.task("_bench_tick_tasks:Hold", name=f"t{i:05d}",
                                 interval=IDLE_INTERVAL_MS) for i in range(n))
    else:
        tasks = tuple(clerk.task("_bench_tick_tasks:Hold", name=f"t{i:05d}", instant=True,
                                 timeout=HOLD_TIMEOUT_MS) for i in range(n))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        config = NodeConfig(name="bench@127.0.0.1", port=port, insecure=True, workers=1,
                            log_level="warning", data_dir=data, tasks=tasks)
        agent = Agent(config)
        clock = agent.clock
        try:
            agent.quorum.started()
            agent._feed(Start(), clock.monotonic())

            def turn_full() -> None:
                # Agent.run's loop body, nothing left out (what brings the node up).
                now = clock.monotonic()
                deadline = min(agent.core.next_deadline(), agent.tasks.next_deadline())
                if deadline <= now:
                    agent._feed(Tick(), now)
                    agent.tasks.on_tick(now, clock.wall())
                    agent.tasks.persist(now)
                    return
                timeout_ms = min(int((deadline - now) * 1000), 5)
                for inbound in agent.transport.poll(timeout_ms, now):
                    agent._on_inbound(inbound, clock.monotonic())
                agent.quorum.deliver()
                agent.tasks.persist(clock.monotonic())

            sched = agent.tasks.scheduler
            give_up = time.monotonic() + 120
            while not (sched.active and len(sched.defs) == n and agent.core.dispatch_ok):
                turn_full()
                if time.monotonic() > give_up:
                    raise SystemExit(f"not scheduling {n} tasks after 120 s")
            if kind == "inflight":
                while sum(1 for r in sched.records.values() if r.running is not None) < n:
                    turn_full()
                    if time.monotonic() > give_up:
                        raise SystemExit("runs not in flight after 120 s")
            # Settle: the first replication rounds and data directory writes are done.
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                turn_full()

            def idle_turn() -> None:
                now = clock.monotonic()
                min(agent.core.next_deadline(), agent.tasks.next_deadline())
                for inbound in agent.transport.poll(0, now):
                    agent._on_inbound(inbound, clock.monotonic())
                agent.quorum.deliver()
                agent.tasks.persist(clock.monotonic())

            def tick_turn() -> None:
                now = clock.monotonic()
                agent._feed(Tick(), now)
                agent.tasks.on_tick(now, clock.wall())
                agent.tasks.persist(now)

            executor = agent.tasks.executor
            loaded = agent.tasks._loaded

            def scheduler_part() -> None:  # what the scheduler adds to a tick turn
                wall = clock.wall()
                sched.next_deadline(wall)
                sched.tick(wall, loaded)

            def executor_part() -> None:  # and what this node's executor adds
                assert executor is not None
                executor.next_deadline()
                executor.expire(clock.monotonic())

            out: dict[str, float] = {}
            for label, fn in (("idle_us", idle_turn), ("tick_us", tick_turn),
                              ("sched_us", scheduler_part), ("exec_us", executor_part)):
                per: list[float] = []
                for _ in range(BATCHES):
                    began = time.perf_counter()
                    for _ in range(turns):
                        fn()
                    per.append((time.perf_counter() - began) / turns * 1e6)
                    turn_full()  # answer whatever arrived meanwhile (the worker's pings)
                out[label] = statistics.median(per)
            if kind == "inflight":
                out["in_flight"] = sum(1 for r in sched.records.values() if r.running is not None)
            return out
        finally:
            agent.tasks.close()
            agent.quorum.close()
            agent.transport.close()


def _cluster_child(n: int, rate: float, seconds: float) -> dict[str, float]:
    import psutil

    import clerk
    from clerk.testing import LocalCluster, wait_until

    interval = max(10, round(n * 1000 / rate))
    tasks = [clerk.task("_bench_tasks:Noop", name=f"t{i:05d}", interval=interval,
                        timeout=5000) for i in range(n)]

    def runs(c: LocalCluster) -> int:
        """Runs done so far, as the replicated table says (any node answers)."""
        for _ in range(5):
            try:
                return sum(t["runs"]["ok"] for t in c.status(timeout=10)["tasks"])
            except Exception:  # a node too busy to answer in time: ask again
                continue
        raise SystemExit("no node answered status")

    with LocalCluster(3, tasks=tasks, workers=2, log_level="error") as c:
        manager = c.wait_for_manager(timeout=120)
        # Warm up: as many runs as tasks (first slots come one interval after the takeover),
        # or 60 s on a machine too loaded for that.
        try:
            wait_until(lambda: runs(c) >= 2 * n, timeout=interval / 1000 + 60, interval=0.5)
        except Exception:
            print(f"warning: warm-up incomplete ({runs(c)} runs)", file=sys.stderr)
        role_of: dict[int, str] = {}
        for name in c.names:
            top = c.procs[name].pid
            for pid in c.pids(name):
                p = psutil.Process(pid)
                cmd, parent = " ".join(p.cmdline()), p.ppid()
                if pid == top or "--watchdog" in cmd:
                    role_of[pid] = "hosts"
                elif parent == top:
                    role_of[pid] = "manager agent" if name == manager else "other agents"
                else:
                    role_of[pid] = "workers"

        def cpu() -> dict[str, float]:
            out: dict[str, float] = {}
            for pid, role in role_of.items():
                try:
                    t = psutil.Process(pid).cpu_times()
                except psutil.Error:  # a worker replaced meanwhile: its time is gone with it
                    continue
                out[role] = out.get(role, 0.0) + t.user + t.system
            return out

        r0, c0, w0 = runs(c), cpu(), time.monotonic()
        time.sleep(seconds)  # the measured window: nothing to wait for, time itself
        r1, c1, w1 = runs(c), cpu(), time.monotonic()
        same = c.wait_for_manager(timeout=60) == manager
    done = max(1, r1 - r0)
    # A manager that changed during the window makes the roles' split meaningless: flagged.
    out = {"runs_per_s": done / (w1 - w0), "manager changed": 0.0 if same else 1.0}
    for role in c1:
        out[f"{role} %"] = (c1[role] - c0[role]) / (w1 - w0) * 100
        out[f"{role} us/run"] = (c1[role] - c0[role]) * 1e6 / done
    out["total us/run"] = sum(c1[r] - c0[r] for r in c1) * 1e6 / done
    return out


def _quorum_child(n: int, kind: str, turns: int) -> dict[str, float]:
    import random

    import clerk
    from clerk._schedule import Scheduler
    from clerk._writeahead import WriteAhead

    interval = IDLE_INTERVAL_MS if kind == "idle" else 10_000
    defs = [clerk.task("clerk.examples:Tally", name=f"task{i:05d}", interval=interval)
            for i in range(n)]
    s = Scheduler(defs, random.Random(1))
    wall = time.time()
    s.activate(wall, graceful=False)
    committed: dict[str, int] = {}
    wa = WriteAhead({}, committed.get)
    # This tree's write-ahead reads the scheduler itself; an older one took upcoming()'s list.
    src: Any = (lambda: s) if hasattr(s, "watch_upcoming") else s.upcoming
    members = {"n2@127.0.0.1": frozenset(d.name for d in defs)}
    times: list[float] = []
    for _ in range(turns * BATCHES):
        wall += 0.001
        t0 = time.perf_counter()
        rows = {}
        if wa.next_reserve_ms(src()) <= wall * 1000:
            rows = wa.ahead(src(), wall * 1000)
        times.append((time.perf_counter() - t0) * 1e6)
        for task, row in rows.items():
            committed[task] = row["reserved"]
        ds, _ = s.tick(wall, members)
        for d in ds:
            s.on_result(d.task, d.run_id, d.node, "ok", None, 1.0, "", wall)
    first = times[0]
    times.sort()
    return {"median_us": statistics.median(times), "p99_us": times[int(len(times) * 0.99)],
            "first_us": first, "reserved": float(len(committed))}


def _quorum_main(args: argparse.Namespace, roots: list[tuple[str, Path]]) -> int:
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    kinds = ("idle", "busy")
    for rep in range(args.repeats):
        for kind in kinds:
            for n in args.tasks:
                for label, root in (roots if rep % 2 == 0 else roots[::-1]):
                    r = _run_child(root, ["--quorum-child", "--tasks", str(n), "--kind", kind,
                                          "--turns", str(args.turns)])
                    assert r is not None
                    results.setdefault((label, kind, n), []).append(r)
    labels = [label for label, _ in roots]
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; quorum mode's write-ahead per "
          f"turn, µs (median of {args.repeats} children)")
    print("| tables | tasks | figure | " + " | ".join(labels) + " |")
    print("|---|---|---|" + "---|" * len(labels))
    for kind in kinds:
        for n in args.tasks:
            for key in ("median_us", "p99_us", "first_us"):
                vals = [statistics.median(r[key] for r in results[(label, kind, n)])
                        for label in labels]
                print(f"| {kind} | {n:,} | {key} | " + " | ".join(f"{v:.1f}" for v in vals)
                      + " |")
    return 0


def _run_child(root: Path, args: list[str], tolerate: bool = False) -> dict[str, float] | None:
    """One child's figures; a failed child stops the benchmark, or with ``tolerate`` (a
    cluster that did not form on a loaded machine) is reported and left out (None)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(HERE / "tools")])
    out = subprocess.run([sys.executable, str(HERE / "tools" / "bench_tick.py"), *args],
                         env=env, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        text = f"child failed ({root}, {args}):\n{out.stderr[-3000:]}"
        if not tolerate:
            raise SystemExit(text)
        print(text, file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _cluster_main(args: argparse.Namespace, roots: list[tuple[str, Path]]) -> int:
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for rep in range(args.repeats):
        for n in args.tasks:
            for label, root in (roots if rep % 2 == 0 else roots[::-1]):
                r = _run_child(root, ["--cluster-child", "--tasks", str(n), "--rate",
                                      str(args.rate), "--seconds", str(args.seconds)],
                               tolerate=True)
                results.setdefault((label, n), [])
                if r is not None:
                    results[(label, n)].append(r)
                print(f"# {label} {n}: {r}", file=sys.stderr, flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; {args.rate:g} runs/s asked, "
          f"{args.seconds:g} s windows, median of the clusters that formed (of "
          f"{args.repeats}): " + ", ".join(f"{label} {n}: {len(v)}"
                                            for (label, n), v in results.items()))
    keys = ["runs_per_s", "manager agent %", "manager agent us/run", "other agents us/run",
            "workers us/run", "hosts us/run", "total us/run", "manager changed"]
    labels = [label for label, _ in roots]
    print("| tasks | figure | " + " | ".join(labels) + (" | ratio base/this |" if
                                                           args.base else " |"))
    print("|" + "---|" * (len(labels) + 2 + bool(args.base)))
    for n in args.tasks:
        for key in keys:
            if not all(results[(label, n)] for label in labels):
                print(f"| {n:,} | {key} | (a side's clusters all failed) |")
                continue
            vals = [statistics.median(r.get(key, 0.0) for r in results[(label, n)])
                    for label in labels]
            ratio = f" {vals[0] / vals[1]:.2f}x |" if args.base and vals[1] else ""
            print(f"| {n:,} | {key} | " + " | ".join(f"{v:.1f}" for v in vals) + " |" + ratio)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[10, 1000, 10000])
    ap.add_argument("--kinds", nargs="+", default=["idle", "inflight"],
                    choices=["idle", "inflight"])
    ap.add_argument("--turns", type=int, default=2000, help="turns per timed batch")
    ap.add_argument("--repeats", type=int, default=3, help="children per case (median)")
    ap.add_argument("--base", type=Path, help="another checkout to compare with (before)")
    ap.add_argument("--cluster", action="store_true",
                    help="CPU per process role of a 3-node cluster at --rate runs/s")
    ap.add_argument("--rate", type=float, default=400.0, help="runs/s for --cluster (400)")
    ap.add_argument("--seconds", type=float, default=15.0, help="--cluster window (15 s)")
    ap.add_argument("--quorum", action="store_true",
                    help="what quorum mode's write-ahead adds to a turn (in process)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quorum-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cluster-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="idle", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.tasks[0], args.kind, args.turns)))
        return 0
    if args.quorum_child:
        print(json.dumps(_quorum_child(args.tasks[0], args.kind, args.turns)))
        return 0
    if args.cluster_child:
        print(json.dumps(_cluster_child(args.tasks[0], args.rate, args.seconds)))
        return 0
    roots = [("this", HERE)] + ([("base", args.base.resolve())] if args.base else [])
    if args.quorum:
        return _quorum_main(args, roots[::-1] if args.base else roots)
    if args.cluster:
        if args.tasks == [10, 1000, 10000]:
            args.tasks = [40, 1000]
        if args.base:
            roots = roots[::-1]  # base first in the table
        return _cluster_main(args, roots)
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for rep in range(args.repeats):
        for kind in args.kinds:
            for n in args.tasks:
                # Interleaved, and the order alternates: neither side always runs first.
                for label, root in (roots if rep % 2 == 0 else roots[::-1]):
                    r = _run_child(root, ["--child", "--tasks", str(n), "--kind", kind,
                                          "--turns", str(args.turns)])
                    assert r is not None
                    results.setdefault((label, kind, n), []).append(r)
                    print(f"# {label} {kind} {n}: {r}", file=sys.stderr, flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; median of {args.repeats} "
          f"children x median of {BATCHES} batches of {args.turns} turns")
    keys = [("idle_us", "idle turn"), ("tick_us", "tick turn"),
            ("sched_us", "scheduler in a tick"), ("exec_us", "executor in a tick")]
    print("(µs per call; the scheduler's and the executor's parts: next_deadline + tick, "
          "next_deadline + expire)")
    if args.base:
        print("| tables | tasks | " + " | ".join(f"{t} base | this | ratio" for _, t in keys)
              + " |")
    else:
        print("| tables | tasks | " + " | ".join(t for _, t in keys) + " |")
    print("|---|---|" + "---|" * (len(keys) * (3 if args.base else 1)))
    for kind in args.kinds:
        for n in args.tasks:
            def med(label: str, key: str, kind: str = kind, n: int = n) -> float:
                return statistics.median(r[key] for r in results[(label, kind, n)])
            cells = []
            for key, _ in keys:
                if args.base:
                    b, t = med("base", key), med("this", key)
                    cells.append(f"{b:.1f} | {t:.1f} | {b / t:.2f}x")
                else:
                    cells.append(f"{med('this', key):.1f}")
            print(f"| {kind} | {n:,} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
