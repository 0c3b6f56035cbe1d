#!/usr/bin/env python3
"""Benchmark of Clerk's task layer, side by side with its floor and with APScheduler 3.

    .venv/bin/python tools/bench_tasks.py            # the full run (about 3 minutes)
    .venv/bin/python tools/bench_tasks.py --quick    # shorter windows, fewer levels
    .venv/bin/python tools/bench_tasks.py --only a   # only (a), the round trip (30 s)
    .venv/bin/python tools/bench_tasks.py --only b   # only (b), lateness, lead vs no lead
    .venv/bin/python tools/bench_tasks.py --only a --against ../main   # (a): this tree vs another
    .venv/bin/python tools/bench_tasks.py --only c --levels 400,2000   # (c) at these rates
    .venv/bin/python tools/bench_tasks.py --only c --levels 400,1000 --against ../main
        # (c): this tree and another in turns, level by level (--repeats each), a table of both

Everything is measured in one run on this machine, so the ratios mean something even when the
machine is noisy:

(a) dispatch overhead: the manager's round trip of a no-op run (EXECUTE sent -> RESULT applied:
    manager -> node over CURVE -> worker process over IPC -> back; the ``rtt_ms`` of the run log
    lines, with ``dispatch_lead = 0`` so that it spans the whole chain) against its floor, the
    same chain built with plain pyzmq and ``json`` at each hop (tools/_bench_floor.py), and a
    raw DEALER/ROUTER echo between two processes (plain and CURVE). The chain runs back to back
    and also paced, one run every ``PACE`` (10 ms) as Clerk's runs come: on this VM an idle
    thread's wake-up is most of a hop (idle vCPUs halt), so the paced chain is the like-for-like
    floor. All are measured in interleaved repeats in one run; the table gives the median of the
    repeats' medians, and CPU per run per process role (psutil, 10 ms ticks: read the full
    run's figures, not --quick's).
(b) schedule precision: lateness of run starts (``time.time()`` at the top of ``execute``)
    against ``clerk.current_run().due``, as a user sees it, with 10 and with 1000
    tasks at the same total rate, on a 3-node cluster (CURVE on, 2 workers per node as
    ``clerk.node``'s default), with the default dispatch lead and with ``dispatch_lead = 0``
    (sent at the due time, as before clerk._lead) in interleaved repeats of the same build;
    APScheduler 3 (BackgroundScheduler, interval jobs, one process) at the same settings.
    ``--only b`` runs just this (about 4 minutes; ``--quick`` about 2).
(c) throughput: the most no-op runs per second a 3-node cluster sustains with p99 lateness under
    10 ms and no skipped slot, stepping the rate up (to 2,000 runs/s and beyond) until a
    level fails twice in a row; the same for APScheduler. Each clerk level also reports, per
    run and per role, the protocol messages its agents sent and the ZeroMQ sends that
    carried them (fewer when a turn's messages to one peer go as one batch, clerk._batch),
    and the ZeroMQ messages they received (``clerk status``'s transport counters), the loop's
    turns and polls, and the wake-ups (voluntary and involuntary context switches) and CPU of
    every process role's threads by kind (tools/_bench_counts.py): counts are far less
    sensitive to a shared machine's load than times.

APScheduler is a bench-only dependency: if it is missing the script installs ``apscheduler<4``
into the running interpreter's environment with pip (or run ``.venv/bin/python -m pip install
'apscheduler<4'`` yourself). Writes the table and its reading to ``--out``
(default /work/notes/bench_tasks.md when that directory exists).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_counts import (  # noqa: E402
    by_role,
    clerk_roles,
    fmt_threads,
    fmt_wakeups,
    fmt_wire,
)
from _bench_floor import Chain, Echo, fmt_cpu, measure_cpu  # noqa: E402
from _bench_lateness import (  # noqa: E402
    Lateness,
    aps_lateness,
    clerk_lateness,
    ensure_apscheduler,
    pct,
    source_tree,
)

import clerk  # noqa: E402
from clerk._calendar import phase_ms  # noqa: E402
from clerk._lead import SPIN_MS  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402

NOOP = "_bench_tasks:Noop"
#: (a): the paced chain's gap between runs (s): Clerk's no-op runs come ~10 ms apart there.
PACE = 0.010
PICKY = "_bench_tasks:PickyNoop"


@dataclass
class RoundTrips:
    """Medians of interleaved repeats (ms), and CPU per run per role (µs)."""
    raw: list[float]
    raw_curve: list[float]
    chain: list[float]
    clerk: list[float]
    raw_p99: float
    chain_p99: float
    clerk_p99: float
    chain_cpu: dict[str, float]
    clerk_cpu: dict[str, float]
    chain_pipelined: float  # runs/s, 2 workers, 4 in flight
    #: The chain paced as Clerk's runs come (one every PACE s, its processes idle between).
    chain_paced: list[float] = field(default_factory=list)
    picky: list[float] = field(default_factory=list)  # the same no-op with a nodes() filter
    against: RoundTrips | None = None  # --against: the other tree's figures (same repeats)


def round_trips(repeats: int, per_repeat: int, against: str | None = None) -> RoundTrips:
    """(a): the raw echo, the plain-pyzmq chain and Clerk's no-op run, repeat after repeat.

    Five no-op tasks run beside five with a ``nodes()`` filter (``picky``), whose round trip
    also holds the manager's hand-off of ``nodes()`` to a helper thread; the table's Clerk
    figure is the plain one (the path of a task without ``nodes()``), the other in its notes.

    Clerk's figure is ``rtt_ms`` of the manager's per-run DEBUG lines (EXECUTE sent -> RESULT
    applied): n1 is the manager and never runs the task, so every run crosses the network.
    Only n1 logs at DEBUG (to read those lines; it pays for them after the measured span); n2
    runs at the default INFO. Five no-op tasks every 100 ms keep Clerk busy at 50 runs/s
    throughout (100 with the picky ones), so the floors are measured on the same, slightly
    loaded, machine.

    ``against``: another source tree of Clerk (a checkout or ``git worktree`` of main): a second
    cluster runs its nodes (the same settings; its node processes import ``clerk`` from there)
    beside this tree's, and each repeat measures both, so before/after is one interleaved run."""
    sets = spread_tasks(2 if against is not None else 1, picky=True)
    echo, echo_curve, chain = Echo(curve=False), Echo(curve=True), Chain(workers=2)
    with contextlib.ExitStack() as stack:
        stack.callback(chain.close)
        stack.callback(echo_curve.close)
        stack.callback(echo.close)
        # n1 loads no task: it schedules what n2 announces (clerk._deploy) and runs nothing.
        # dispatch_lead 0: a run sent at its due time, so that rtt_ms is the whole chain
        # (with a lead, it counts from the run's due time and hides the way there).
        clusters = [stack.enter_context(_ClusterA(sets[0], None))]
        if against is not None:
            clusters.append(stack.enter_context(_ClusterA(sets[1], against)))
        for cl in clusters:
            wait_until(lambda cl=cl: len(cl.rtts()) >= 50, timeout=60, interval=0.2)  # warm-up
        roles = [clerk_roles(cl.c, cl.n1) for cl in clusters]
        out = RoundTrips([], [], [], [], 0.0, 0.0, 0.0, {}, {}, 0.0)
        other = RoundTrips([], [], [], [], 0.0, 0.0, 0.0, {}, {}, 0.0)
        all_chain: list[float] = []
        all_clerk: list[list[float]] = [[] for _ in clusters]
        chain_cpu: list[dict[str, float]] = []
        clerk_cpu: list[list[dict[str, float]]] = [[] for _ in clusters]
        raw_all: list[float] = []
        for rep in range(repeats):
            trips = echo.trips(per_repeat * 5)
            raw_all += trips
            out.raw.append(statistics.median(trips))
            out.raw_curve.append(statistics.median(echo_curve.trips(per_repeat * 5)))
            got: list[float] = []

            def chained(got: list[float] = got) -> int:
                got.extend(chain.trips(per_repeat * 5))
                return len(got)

            _, cpu = measure_cpu(chain.roles(), chained)
            all_chain += got
            out.chain.append(statistics.median(got))
            chain_cpu.append(cpu)
            out.chain_paced.append(statistics.median(chain.trips(per_repeat, gap=PACE)))
            # This tree and the other in turns, the first one alternating between repeats.
            order = list(range(len(clusters)))
            if rep % 2:
                order.reverse()
            for i in order:
                cl = clusters[i]
                seen = len(cl.rtts())

                def window(seen: int = seen, cl: _ClusterA = cl) -> int:
                    """Runs (plain and picky) while ``per_repeat`` plain ones finish."""
                    before = len(cl.pickies())
                    wait_until(lambda: len(cl.rtts()) >= seen + per_repeat,
                               timeout=per_repeat / 10 + 30, interval=0.05)
                    return len(cl.rtts()) - seen + len(cl.pickies()) - before

                _, cpu = measure_cpu(roles[i], window)
                new = cl.rtts()[seen:]
                all_clerk[i] += new
                (out if i == 0 else other).clerk.append(statistics.median(new))
                clerk_cpu[i].append(cpu)
        out.chain_pipelined = chain.pipelined(5000, inflight=4)
        out.picky = clusters[0].pickies()[50:]
        if against is not None:
            other.picky = clusters[1].pickies()[50:]
    out.raw_p99, out.chain_p99 = pct(raw_all, 99), pct(all_chain, 99)
    out.chain_cpu = {k: statistics.median(d[k] for d in chain_cpu) for k in chain_cpu[0]}
    for rt, cpus, trips in zip((out, other), clerk_cpu, all_clerk, strict=False):
        rt.clerk_cpu = {k: statistics.median(d[k] for d in cpus) for k in cpus[0]}
        rt.clerk_p99 = pct(trips, 99)
    if against is not None:
        out.against = other
    return out


#: (a)'s tasks: their interval (ms), and the least distance (ms) between any two of their due
#: times on the grid, across the clusters of one run (spread_tasks).
A_INTERVAL = 100
A_GAP_MS = 4


def spread_tasks(clusters: int, picky: bool) -> list[list[Any]]:
    """(a)'s tasks for each of ``clusters`` clusters run at once: five no-op tasks (and five
    with ``nodes()``, ``picky``) each, named ``noop<k>`` / ``picky<k>`` with the ``k`` chosen so
    that no two tasks of any cluster are due within ``A_GAP_MS`` of each other (a task's phase
    is a hash of its name, clerk._calendar.phase_ms). With the same names in both clusters
    every run of one was due at the very instant of the other's, and on a 2-core machine the
    two round trips raced each other's CPU. (Not the whole story of a noisy comparison: at a
    load average of ~11, this tree --against an identical copy of itself still gave medians
    1.4x apart in one window of bench_hops, both before and after this change.)"""
    kinds = [(NOOP, "noop")] + ([(PICKY, "picky")] if picky else [])
    taken: list[int] = []
    out: list[list[Any]] = [[] for _ in range(clusters)]
    k = 0
    for cluster in out:
        for target, prefix in kinds:
            names: list[str] = []
            while len(names) < 5:
                name = f"{prefix}{k}"
                k += 1
                ph = phase_ms(name, A_INTERVAL)
                if all(min(abs(ph - t), A_INTERVAL - abs(ph - t)) >= A_GAP_MS for t in taken):
                    taken.append(ph)
                    names.append(name)
            cluster += [clerk.task(target, name=n, interval=A_INTERVAL, timeout=5000)
                        for n in names]
    return out


class _ClusterA:
    """(a)'s two-node cluster: n1 (manager, DEBUG log, no task) and n2 (runs every task),
    its node processes importing ``clerk`` from ``source`` (None: this tree)."""

    PLAIN = re.compile(r"run task=noop\d+ slot=\d+ node=n2\S* duration_ms=\S+ "
                       r"rtt_ms=(\S+) outcome=ok")
    PICKY = re.compile(r"run task=picky\d+ slot=\d+ node=n2\S* duration_ms=\S+ "
                       r"rtt_ms=(\S+) outcome=ok")

    def __init__(self, tasks: list[Any], source: str | None) -> None:
        self.tasks = tasks
        self.source = source

    def __enter__(self) -> _ClusterA:
        self.c = c = LocalCluster(2, tasks=self.tasks, workers=2, start=False, dispatch_lead=0,
                                  node_tasks={"n1@127.0.0.1": []})
        c.__enter__()
        try:
            self.n1, n2 = c.names
            with source_tree(self.source):  # the nodes run the Clerk of that tree
                c.log_level = "debug"
                c.start(self.n1)
                c.wait_for_manager(timeout=30, names=[self.n1])
                c.log_level = "info"
                c.start(n2)
            assert c.wait_for_manager(timeout=30) == self.n1
        except BaseException:
            c.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.c.__exit__(*exc)

    def rtts(self) -> list[float]:
        return [float(m.group(1)) for m in self.PLAIN.finditer(self.c.log(self.n1))]

    def pickies(self) -> list[float]:
        return [float(m.group(1)) for m in self.PICKY.finditer(self.c.log(self.n1))]


# --- throughput: step the rate up until p99 lateness >= 10 ms --------------------------------


def max_rate(measure: Callable[[int, int, float], Lateness], levels: Sequence[int],
             interval: int, window: float, label: str) -> tuple[Lateness | None,
                                                                list[tuple[int, Lateness]]]:
    best: Lateness | None = None
    tried = []
    for rate in levels:
        n = max(1, rate * interval // 1000)
        for attempt in (1, 2):  # a level gets a second chance: one stall of a noisy machine
            lat = measure(n, interval, window)
            tried.append((rate, lat))
            print(f"  {label:<11} {rate:>5}/s target: {lat.runs_per_s:7.1f}/s  median "
                  f"{lat.median:6.2f} ms  p99 {lat.p99:7.2f} ms  skipped {lat.skipped}"
                  f"  {'ok' if lat.ok() else 'over'}{' (retry)' if attempt == 2 else ''}",
                  flush=True)
            if lat.cpu:
                print(f"  {'':<11} CPU per run {fmt_cpu(lat.cpu)}; per run: "
                      f"{fmt_wire(lat.wire)}", flush=True)
                print(f"  {'':<11} wake-ups per run: {fmt_wakeups(lat.wakeups)}", flush=True)
                print(f"  {'':<11} CPU µs per run by thread: {fmt_threads(lat.wakeups)}",
                      flush=True)
            if lat.ok():
                break
        if not lat.ok():
            break
        best = lat
    return best, tried


@dataclass
class FloorAt:
    """The plain-pyzmq chain paced at a rate (``Chain.paced``): what the same hops cost per
    run at that rate, with no scheduling, state or replication."""
    rate: int
    runs_per_s: float
    cpu: dict[str, float]
    median: float  # round trip, ms
    p99: float

    def text(self) -> str:
        return (f"{fmt_cpu(self.cpu)} ({self.runs_per_s:.0f} runs/s; round trip median "
                f"{self.median:.2f} ms, p99 {self.p99:.2f} ms)")


def floor_at(chain: Chain, rate: int, seconds: float) -> FloorAt:
    """The chain floor paced at ``rate`` runs/s for ``seconds``: CPU per run per role."""
    trips: list[float] = []

    def body() -> int:
        runs, got = chain.paced(rate, seconds)
        trips.extend(got)
        return runs

    runs, cpu = measure_cpu(chain.roles(), body)
    return FloorAt(rate, runs / seconds, cpu, statistics.median(trips) if trips else NAN,
                   pct(trips, 99) if trips else NAN)


NAN = float("nan")


def rate_pairs(levels: Sequence[int], interval: int, window: float, against: str,
               repeats: int, chain: Chain | None = None
               ) -> list[tuple[int, list[Lateness], list[Lateness], list[FloorAt]]]:
    """(c) with ``--against``: each level measured on this tree and on ``against`` in turns
    (the first one alternating from repeat to repeat), every level whatever the last gave;
    with ``chain``, its floor paced at the same rate after each repeat's pair."""
    out = []
    for rate in levels:
        n = max(1, rate * interval // 1000)
        mine: list[Lateness] = []
        other: list[Lateness] = []
        floors: list[FloorAt] = []
        for rep in range(repeats):
            order = [None, against] if (rate + rep) % 2 == 0 else [against, None]
            for source in order:
                lat = clerk_lateness(n, interval, window, source=source)
                (mine if source is None else other).append(lat)
                label = "this tree" if source is None else "against"
                print(f"  {label:<10} {rate:>5}/s target: {lat.runs_per_s:7.1f}/s  median "
                      f"{lat.median:6.2f} ms  p99 {lat.p99:7.2f} ms  skipped {lat.skipped}  "
                      f"{'ok' if lat.ok() else 'over'}; CPU per run {fmt_cpu(lat.cpu)}; "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
                print(f"  {'':<10} wake-ups per run: {fmt_wakeups(lat.wakeups)}", flush=True)
                print(f"  {'':<10} CPU µs per run by thread: {fmt_threads(lat.wakeups)}",
                      flush=True)
                print(f"  {'':<10} per run: {fmt_wire(lat.wire)}", flush=True)
            if chain is not None:
                floors.append(floor_at(chain, rate, window))
                print(f"  {'floor':<10} {rate:>5}/s target: {floors[-1].text()}", flush=True)
        out.append((rate, mine, other, floors))
    return out


def pairs_table(pairs: list[tuple[int, list[Lateness], list[Lateness], list[FloorAt]]]
                ) -> str:
    """Medians over the repeats, this tree against the other, level by level, and the floor
    paced at the same rate (its CPU per run, the lower bound of the same hops)."""
    def med(ls: list[Lateness], f: Callable[[Lateness], float]) -> float:
        return statistics.median(f(x) for x in ls)

    def cpu(ls: list[Lateness]) -> str:
        roles = [k for k in ls[0].cpu]
        parts = {k: med(ls, lambda x, k=k: x.cpu.get(k, 0.0)) for k in roles}
        return fmt_cpu(parts)

    def wakes(ls: list[Lateness]) -> str:
        roles = sorted({k for x in ls for k in by_role(x.wakeups)})
        parts = {k: med(ls, lambda x, k=k: by_role(x.wakeups).get(k, 0.0)) for k in roles}
        return (" + ".join(f"{k} {v:.2f}" for k, v in parts.items())
                + f" = {sum(parts.values()):.2f}")

    def turns(ls: list[Lateness]) -> str:
        return " / ".join(
            f"{med(ls, lambda x, k=k: x.wire.get(k, (0.0,) * 6)[3]):.2f}"
            for k in ("manager agent", "agents"))

    lines = ["| target runs/s | tree | runs/s | median ms | p99 ms | skipped | ok | "
             "CPU per run (µs) | wake-ups per run (voluntary) | loop turns per run: manager / "
             "agents |",
             "|--:|---|--:|--:|--:|--:|--:|---|---|--:|"]
    for rate, mine, other, floors in pairs:
        for label, ls in (("against", other), ("this tree", mine)):
            lines.append(
                f"| {rate} | {label} | {med(ls, lambda x: x.runs_per_s):.0f} | "
                f"{med(ls, lambda x: x.median):.3f} | {med(ls, lambda x: x.p99):.2f} | "
                f"{sum(x.skipped for x in ls)} | "
                f"{sum(x.ok() for x in ls)}/{len(ls)} | {cpu(ls)} | {wakes(ls)} | "
                f"{turns(ls)} |")
        if floors:
            fcpu = {k: statistics.median(f.cpu[k] for f in floors) for k in floors[0].cpu}
            lines.append(
                f"| {rate} | floor (plain pyzmq chain, 3 nodes x 2 workers, paced) | "
                f"{statistics.median(f.runs_per_s for f in floors):.0f} | | "
                f"{statistics.median(f.p99 for f in floors):.2f} (round trip) | | | "
                f"{fmt_cpu(fcpu)} | | |")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def fmt(x: float, unit: str = "ms") -> str:
    return "n/a" if x != x else f"{x:.2f} {unit}"


def lead_pair(n_tasks: int, interval: int, window: float,
              repeats: int) -> tuple[Lateness, Lateness]:
    """(b) with the default dispatch lead and with ``dispatch_lead = 0`` (sent at the due
    time: the "before"), same build, in interleaved repeats (A B, B A, ...), samples pooled."""
    runs: dict[bool, list[Lateness]] = {True: [], False: []}
    for i in range(repeats):
        for with_lead in ((True, False) if i % 2 == 0 else (False, True)):
            lat = clerk_lateness(n_tasks, interval, window, lead=None if with_lead else 0)
            runs[with_lead].append(lat)
            low = min(lat.samples, default=float("nan"))
            print(f"  {n_tasks} tasks, lead {'default' if with_lead else 0}: median "
                  f"{lat.median:.2f} ms  p99 {lat.p99:.2f} ms  min {low:.3f} ms  "
                  f"{lat.runs_per_s:.0f} runs/s", flush=True)

    def pooled(ls: list[Lateness]) -> Lateness:
        cpu = {k: statistics.median(x.cpu.get(k, 0.0) for x in ls) for k in ls[0].cpu}
        return Lateness([v for x in ls for v in x.samples],
                        statistics.mean(x.runs_per_s for x in ls), sum(x.skipped for x in ls),
                        ls[0].target_per_s, cpu)

    return pooled(runs[True]), pooled(runs[False])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter windows, fewer levels")
    default_out = "/work/notes/bench_tasks.md" if Path("/work/notes").is_dir() else ""
    ap.add_argument("--out", default=default_out, help="write the markdown table here")
    ap.add_argument("--only", choices=["a", "b", "c"],
                    help="only (a), the round trip and its floors; only (b), lateness; or "
                         "only (c), throughput")
    ap.add_argument("--levels", default="",
                    help="(c): these rates (runs/s, comma-separated) instead of the default "
                         "steps")
    ap.add_argument("--against", metavar="DIR",
                    help="(a) or (c) only: also measure the Clerk in DIR (another checkout, "
                         "e.g. a git worktree of main), interleaved with this one")
    ap.add_argument("--repeats", type=int, default=2,
                    help="(c) with --against: measurements of each tree at each level")
    args = ap.parse_args()
    if args.against is not None:
        if args.only not in ("a", "c"):
            ap.error("--against goes with --only a or --only c")
        args.against = str(Path(args.against).resolve())
        if not (Path(args.against) / "clerk" / "__init__.py").is_file():
            ap.error(f"--against {args.against}: no clerk/__init__.py there")
    quick = args.quick
    if args.only in (None, "b", "c") and args.against is None:
        ensure_apscheduler()
    window = 4.0 if quick else 8.0
    levels = ([100, 400, 1000, 2000, 2400] if quick
              else [50, 100, 200, 400, 800, 1600, 2000, 2400, 3200])
    if args.levels:
        levels = [int(x) for x in args.levels.split(",")]
    aps_levels = levels + ([] if quick or args.levels else [6400])
    started = time.time()
    load0 = os.getloadavg()[0]  # other work on the machine: printed with the table

    rows: list[tuple[str, ...]] = []
    if args.only in (None, "a"):
        print("(a) dispatch round trip (interleaved with its floors) ...", flush=True)
        rt = round_trips(3 if quick else 7, 60 if quick else 120, args.against)
        med_raw, med_curve, med_chain, med_rtt, med_paced = (statistics.median(v) for v in (
            rt.raw, rt.raw_curve, rt.chain, rt.clerk, rt.chain_paced))
        rows += [
            ("(a) no-op round trip, median", fmt(med_rtt), "", "", fmt(med_chain),
             f"{med_rtt / med_chain:.1f}x the chain floor; raw echo {fmt(med_raw)}, "
             f"raw+CURVE {fmt(med_curve)}"),
            ("(a) no-op round trip, median, floor paced", fmt(med_rtt), "", "", fmt(med_paced),
             f"{med_rtt / med_paced:.1f}x the chain floor run once every {PACE * 1000:.0f} ms "
             "(as Clerk's runs come: every process idle before each run; the floor above "
             "runs back to back)"),
            ("(a) no-op round trip with nodes(), median", fmt(statistics.median(rt.picky)), "",
             "", "", "the manager waits for nodes() on a helper thread (clerk._nodes_guard)"),
            ("(a) no-op round trip, p99", fmt(rt.clerk_p99), "", "", fmt(rt.chain_p99),
             f"{rt.clerk_p99 / rt.chain_p99:.1f}x the chain floor; raw echo {fmt(rt.raw_p99)}"),
            ("(a) CPU per run, clerk", fmt_cpu(rt.clerk_cpu), "", "", "",
             "at 100 runs/s, idle cost included; n1 (manager) logs each run at DEBUG"),
            ("(a) CPU per run, chain floor", "", "", "", fmt_cpu(rt.chain_cpu),
             f"sequential; pipelined (4 in flight, 2 workers) {rt.chain_pipelined:.0f} runs/s"),
        ]
        if rt.against is not None:
            ag = rt.against
            med_ag = statistics.median(ag.clerk)
            rows += [
                ("(a) no-op round trip, median, --against", fmt(med_ag), "", "",
                 fmt(med_chain), f"{med_ag / med_chain:.1f}x the chain floor "
                 f"({med_ag / med_paced:.1f}x paced); this tree {med_rtt / med_ag:.2f}x of it "
                 f"({args.against})"),
                ("(a) no-op round trip with nodes(), median, --against",
                 fmt(statistics.median(ag.picky)), "", "", "",
                 f"this tree {statistics.median(rt.picky) / statistics.median(ag.picky):.2f}x "
                 "of it"),
                ("(a) no-op round trip, p99, --against", fmt(ag.clerk_p99), "", "",
                 fmt(rt.chain_p99), f"this tree {rt.clerk_p99 / ag.clerk_p99:.2f}x of it"),
                ("(a) CPU per run, clerk, --against", fmt_cpu(ag.clerk_cpu), "", "", "",
                 "the same windows, interleaved"),
            ]
    if args.only in (None, "b"):
        print("(b) schedule precision (default dispatch lead vs lead 0, interleaved) ...",
              flush=True)
        reps = 1 if quick else 2
        c10, z10 = lead_pair(10, 100, window, reps)
        c1000, z1000 = lead_pair(1000, 10_000, 12.0 if quick else 20.0, reps)
        a10 = aps_lateness(10, 100, window)
        a1000 = aps_lateness(1000, 10_000, 12.0 if quick else 20.0)
        for label, c, z, a in (("10 tasks x 100 ms", c10, z10, a10),
                               ("1000 tasks x 10 s", c1000, z1000, a1000)):
            rows.append((f"(b) lateness, {label}: median", fmt(c.median), fmt(z.median),
                         fmt(a.median), "",
                         f"{z.median / c.median:.0f}x lower with the lead; {c.runs_per_s:.0f} "
                         f"vs {a.runs_per_s:.0f} runs/s, skipped {c.skipped} vs {a.skipped}"))
            rows.append((f"(b) lateness, {label}: p99", fmt(c.p99), fmt(z.p99), fmt(a.p99), "",
                         f"{z.p99 / c.p99:.1f}x lower with the lead; max "
                         f"{fmt(max(c.samples, default=float('nan')))} vs "
                         f"{fmt(max(z.samples, default=float('nan')))} (lead 0); min "
                         f"{min(c.samples, default=float('nan')):.3f} ms: never before due"))
            rows.append((f"(b) CPU per run, {label}", fmt_cpu(c.cpu), fmt_cpu(z.cpu), "", "",
                         "the workers' share holds the wait for the due time ("
                         + (f"a sleep, then a spin of at most {SPIN_MS:g} ms)" if SPIN_MS
                            else "a sleep to it, then a read of the clock)")))
    if args.only == "c" and args.against is not None:
        print(f"(c) throughput, this tree and {args.against} in turns ...", flush=True)
        chain = Chain(workers=2, nodes=3)  # as (c)'s clusters: 3 nodes x 2 workers
        try:
            pairs = rate_pairs(levels, 100, window / 2, args.against, args.repeats, chain)
        finally:
            chain.close()
        table = pairs_table(pairs)
        load = f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        print(f"\n{table}\n\n({time.time() - started:.0f} s, {os.cpu_count()} cores, {load})")
        if args.out:
            Path(args.out).write_text(
                f"# tools/bench_tasks.py --only c --against {args.against} "
                f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load})\n\n"
                f"{table}\n")
            print(f"wrote {args.out}")
        return 0
    if args.only in (None, "c"):
        print("(c) throughput (p99 lateness < 10 ms, nothing skipped) ...", flush=True)
    else:
        levels = aps_levels = []
    c_best, c_tried = max_rate(clerk_lateness, levels, 100, window / 2, "clerk")
    a_best, a_tried = max_rate(aps_lateness, aps_levels, 100, window / 2, "apscheduler")

    def best_str(best: Lateness | None) -> str:
        return "< 100 runs/s" if best is None else f"{best.runs_per_s:.0f} runs/s"

    if args.only in (None, "c"):
        rows.append(("(c) max runs/s with p99 < 10 ms", best_str(c_best), "", best_str(a_best),
                     "", "3 nodes x 2 workers vs one process, 10 threads; 100 ms interval jobs"))
        at = c_best or (c_tried[0][1] if c_tried else None)
        if at is not None:
            rows.append((f"(c) CPU per run at {at.target_per_s:.0f} runs/s", fmt_cpu(at.cpu),
                         "", "", "", "summed over every process of the 3 nodes, per role"))
            rows.append((f"(c) messages per run at {at.target_per_s:.0f} runs/s",
                         fmt_wire(at.wire), "", "", "",
                         "protocol messages, the ZeroMQ sends carrying them (batches), "
                         "ZeroMQ messages received; per agent role"))
        # The floor's CPU per run at Clerk's best rate and at the goal's 2,000 runs/s: the
        # same hops paced at the same rate, with no scheduling, state or replication.
        print("(c) the chain floor paced at the same rates ...", flush=True)
        chain = Chain(workers=2, nodes=3)  # as (c)'s clusters: 3 nodes x 2 workers
        try:
            for rate in sorted({int(at.target_per_s) if at is not None else 400, 2000}):
                f = floor_at(chain, rate, window / 2)
                print(f"  floor {rate:>5}/s target: {f.text()}", flush=True)
                rows.append((f"(c) CPU per run at {rate} runs/s, chain floor paced", "", "",
                             "", fmt_cpu(f.cpu),
                             f"3 nodes x 2 workers; {f.runs_per_s:.0f} runs/s sent evenly, "
                             "not waiting for "
                             f"results; round trip median {f.median:.2f} ms, p99 "
                             f"{f.p99:.2f} ms"))
        finally:
            chain.close()

    head = ("measurement", "clerk", "clerk, dispatch_lead 0", "APScheduler 3",
            "floor (plain pyzmq chain)", "notes")
    n = len(head)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(n)]
    lines = [" | ".join(str(r[i]).ljust(widths[i]) for i in range(n)) for r in [head, *rows]]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    table = "\n".join(lines)
    print()
    print(table)
    levels_txt = "\n".join(
        f"| {who} | {rate} | {lat.runs_per_s:.0f} | {lat.median:.2f} | {lat.p99:.2f} | "
        f"{lat.skipped} | {'ok' if lat.ok() else 'over'} |"
        for who, tried in (("clerk", c_tried), ("apscheduler", a_tried)) for rate, lat in tried)
    elapsed = time.time() - started
    load = f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(f"\n({elapsed:.0f} s, {os.cpu_count()} cores, python {sys.version.split()[0]}, {load})")
    if args.out:
        md = [f"# tools/bench_tasks.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{os.cpu_count()} cores, python {sys.version.split()[0]}"
              f"{', --quick' if quick else ''}{f', --only {args.only}' if args.only else ''}; "
              f"{load})", "",
              "| " + table.replace("\n", " |\n| ") + " |", "",
              "Throughput steps (100 ms interval tasks; rate = tasks x 10/s):", "",
              "| scheduler | target runs/s | measured runs/s | median ms | p99 ms | skipped | |",
              "|---|---|---|---|---|---|---|", levels_txt, ""]
        Path(args.out).write_text("\n".join(md))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
