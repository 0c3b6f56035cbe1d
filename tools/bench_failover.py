#!/usr/bin/env python
"""Failover time, slots lost, idle CPU and RSS of a 5-node local cluster, default mode beside
quorum mode (issues 4 and 10).

    .venv/bin/python tools/bench_failover.py [--trials 20] [--nodes 5] [--voters 3]
                                             [--idle 10] [--modes default,quorum] [--out FILE]

Each mode runs its own cluster of ``--nodes`` nodes (quorum mode: the first ``--voters`` of
them vote) with a Counter task every ``--interval`` ms that logs each run's slot; both
clusters are up at once and the trials alternate between them, so that the machine's load
hits both alike. For each trial the manager is SIGKILLed (or SIGSTOPped) and the time until
every other live node agrees on a new manager with a higher term is measured two ways:

* **polled**: from just before the signal to the end of the first round of status requests
  (every live node asked at once) in which all agree. An upper bound, off by at most one round
  (a few ms) plus the 2 ms pause between rounds.
* **logged**: from just before the signal to the latest moment one of the live nodes logged
  that it follows the new manager (each node's own clock, ms resolution): when agreement was
  actually reached, without the polling.

**Slots lost** per trial: the slots between the last run logged before the signal and the
first run of the new manager's term (quorum mode also skips a slot reserved just before the
crash). Slots run twice over the whole run are counted too (0 in both modes here: no partition).

Between trials the victim is restarted (or resumed) and the cluster settles. Then the idle CPU
(% of one core, over ``--idle`` seconds) and RSS of one manager and one follower node, each
summed over all of the node's processes (supervisor, agent, task workers). Prints a markdown
table with the quorum/default ratio of the medians; ``--out FILE`` also writes it there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402
from tests.integration.cluster_helpers import (  # noqa: E402
    adopted_at,
    failover,
    wait_agreed,
    wait_converged,
)
from tests.integration.cluster_tasks import Counter  # noqa: E402
from tests.integration.task_helpers import CounterLine, counter_lines  # noqa: E402


def trial(cluster: LocalCluster, act: Callable[[str], None], recover: Callable[[str], None],
          log: Path) -> tuple[float, float, int]:
    """(polled s, logged s, slots lost) for one fault of the manager."""
    old = cluster.wait_for_manager(timeout=30)
    last = wait_until_runs(log, 2)[-1].slot
    fo = failover(cluster, act, old=old, timeout=30)
    logged = []
    for name in cluster.live():
        at = adopted_at(cluster, name, fo.new, fo.term)
        logged.append(at - fo.wall0 if at is not None else float("nan"))
    first = wait_until_first(log, fo.term)
    recover(old)
    wait_converged(cluster, timeout=30)
    return fo.agreed_within, max(logged), max(0, first - last - 1)


def wait_until_runs(log: Path, n: int) -> list[CounterLine]:
    return wait_until(lambda: (r := counter_lines(log))[n - 1:] and r, timeout=30,
                      interval=0.01)


def wait_until_first(log: Path, term: int) -> int:
    """The first slot run under ``term`` or later (the new manager's first run)."""
    return wait_until(lambda: next((r.slot for r in counter_lines(log) if r.term >= term),
                                   None), timeout=30, interval=0.01)


def twice(log: Path) -> int:
    slots = [r.slot for r in counter_lines(log)]
    return len(slots) - len(set(slots))


def node_usage(cluster: LocalCluster, name: str, seconds: float) -> tuple[float, float]:
    """(CPU % of one core over ``seconds``, RSS MiB), summed over the node's processes."""
    procs = [psutil.Process(p) for p in cluster.pids(name)]
    cpu0 = sum(sum(p.cpu_times()[:4]) for p in procs)
    time.sleep(seconds)  # measuring idle usage over a fixed span is the point here
    cpu1 = sum(sum(p.cpu_times()[:4]) for p in procs)
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    return 100 * (cpu1 - cpu0) / seconds, rss


def stats(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{statistics.median(ms):.0f} | {pct(ms, 0.99):.0f}"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


Result = dict[str, tuple[list[float], list[float], list[int]]]


def run_modes(args: argparse.Namespace,
              modes: list[str]) -> dict[str, tuple[Result, dict[str, float], int]]:
    """One cluster per mode, all up at once; the trials alternate between them (default,
    quorum, default, ...) so that the machine's load hits every mode alike. Then the idle
    usage of each (its own cluster only, the other one idle too)."""
    work = Path(tempfile.mkdtemp(prefix="clerk-bench-failover-"))
    results: dict[str, Result] = {m: {} for m in modes}
    usage: dict[str, dict[str, float]] = {}
    doubles: dict[str, int] = {}
    logs = {m: work / f"{m}.log" for m in modes}
    with ExitStack() as stack:
        clusters = {}
        for m in modes:
            task = clerk.task(Counter, name="c", interval=args.interval,
                              args={"log": str(logs[m])})
            clusters[m] = stack.enter_context(LocalCluster(
                args.nodes, tasks=[task], log_level="info",
                voters=args.voters if m == "quorum" else 0))
        for cluster in clusters.values():
            cluster.wait_for_manager(timeout=60)
            wait_agreed(cluster, cluster.names, timeout=60)
        for label, how in (("SIGKILL of the manager", "kill"),
                           ("SIGSTOP of the manager", "pause")):
            for m in modes:
                results[m][label] = ([], [], [])
            for i in range(args.trials):
                for m, cluster in clusters.items():
                    act = cluster.kill if how == "kill" else cluster.pause
                    recover = cluster.start if how == "kill" else cluster.resume
                    a, b, n = trial(cluster, act, recover, logs[m])
                    polled, logged, lost = results[m][label]
                    polled.append(a)
                    logged.append(b)
                    lost.append(n)
                    print(f"{m}: {label} #{i + 1}: polled {a * 1000:.0f} ms, logged "
                          f"{b * 1000:.0f} ms, {n} slot(s) lost", file=sys.stderr, flush=True)
        time.sleep(2)  # let the last restart's start-up work settle before measuring idle
        for m, cluster in clusters.items():
            manager = cluster.wait_for_manager(timeout=30)
            follower = next(n for n in cluster.names if n != manager)
            m_cpu, m_rss = node_usage(cluster, manager, args.idle)
            f_cpu, f_rss = node_usage(cluster, follower, args.idle)
            usage[m] = {"m_cpu": m_cpu, "m_rss": m_rss, "f_cpu": f_cpu, "f_rss": f_rss}
            doubles[m] = twice(logs[m])
    shutil.rmtree(work, ignore_errors=True)
    return {m: (results[m], usage[m], doubles[m]) for m in modes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--voters", type=int, default=3, help="voters in quorum mode")
    p.add_argument("--interval", type=int, default=100, help="the Counter's interval (ms)")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    p.add_argument("--modes", default="default,quorum",
                   help="comma-separated: default, quorum (both: side by side)")
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args()

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    runs = run_modes(args, modes)
    load = os.getloadavg()[0]
    rows = [f"{args.nodes}-node cluster on 127.0.0.1, CURVE on, {args.trials} trials each, "
            f"a task every {args.interval} ms, {os.cpu_count()} CPUs (load average {load:.1f} "
            "at the end); quorum mode: the first "
            f"{args.voters} nodes vote", ""]
    rows.append("| failover (until every live node agrees on a new manager) | mode "
                "| polled median ms | polled p99 ms | logged median ms | logged p99 ms "
                "| slots lost median / max | slots twice |")
    rows.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for label in ("SIGKILL of the manager", "SIGSTOP of the manager"):
        for mode, (results, _, doubles) in runs.items():
            polled, logged, lost = results[label]
            rows.append(f"| {label} | {mode} | {stats(polled)} | {stats(logged)} | "
                        f"{statistics.median(lost):.0f} / {max(lost)} | {doubles} |")
        if len(runs) == 2:
            (_, (ra, _, _)), (_, (rb, _, _)) = runs.items()
            ratio = statistics.median(rb[label][1]) / statistics.median(ra[label][1])
            rows.append(f"| {label} | ratio {modes[1]}/{modes[0]} (logged median) | | | "
                        f"{ratio:.2f}x | | | |")
    rows.append("")
    rows.append("| idle node (supervisor, agent, workers) | mode | CPU % of one core | RSS MiB |")
    rows.append("|---|---|---:|---:|")
    for mode, (_, usage, _) in runs.items():
        rows.append(f"| manager | {mode} | {usage['m_cpu']:.1f} | {usage['m_rss']:.0f} |")
        rows.append(f"| follower | {mode} | {usage['f_cpu']:.1f} | {usage['f_rss']:.0f} |")
    table = "\n".join(rows)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
