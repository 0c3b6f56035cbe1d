#!/usr/bin/env python
"""Issue 9's runtime checks as trials on real nodes, with a ledger task; prints tables.

    .venv/bin/python tools/bench_runtime.py [--pause 20] [--kill 20] [--heal 5] [--seed 1]

* ``--pause N``: SIGSTOP of the manager for 1-10 s (drawn from the seed), then SIGCONT, N
  times, on 3 nodes with a ledger task every 200 ms. Counts slots run twice (the resumed old
  manager must dispatch nothing until a member confirms its claim) and runs started late.
* ``--kill N``: kill -9 of the manager right after a run wrote its ledger line (its result on
  its way to the manager), N times, on 3 nodes, a task every 300 ms with a 10 s timeout. The
  idle time is from the kill to the next run; waiting out the adopted run would take ~11 s.
* ``--heal N``: N partitions of each kind (manager cut off, follower cut off, 2|3 split) on 5
  nodes in network namespaces (root only; skipped with the reason otherwise), 3 s each; the
  time from the heal until every node agrees on one manager, and elections after the heal.

The ledger task appends ``slot term node count started due`` per run (tests.integration's
``Ledger``). Nothing here is a pass/fail test; the integration tests assert the same things on
fewer trials.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402
from tests.integration.cluster_tasks import Ledger  # noqa: E402
from tests.integration.task_helpers import ledger_lines, twice  # noqa: E402


def hold(seconds: float) -> None:
    until = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= until, timeout=seconds + 5, interval=0.01)


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


def bench_pause(trials: int, rng: random.Random) -> list[str]:
    log = Path(tempfile.mkdtemp(prefix="clerk-bench-")) / "ledger"
    iv = 200
    t = clerk.task(Ledger, name="ledger", interval=iv, args={"log": str(log)})
    doubled_total: list[int] = []
    resumed_agree: list[float] = []
    with LocalCluster(3, tasks=[t]) as cluster:
        cluster.wait_for_manager(timeout=20)
        wait_until(lambda: len(ledger_lines(log)) >= 3, timeout=20)
        for k in range(trials):
            pause = rng.uniform(1.0, 10.0)
            manager = cluster.wait_for_manager(timeout=20)
            started = time.monotonic()
            cluster.pause(manager)
            hold(pause)
            cluster.resume(manager)
            resumed = time.monotonic()
            wait_until(lambda: cluster.agreed() is not None, timeout=20, interval=0.005)
            resumed_agree.append(time.monotonic() - resumed)
            after = time.time()
            wait_until(lambda a=after: sum(r.started > a for r in ledger_lines(log)) >= 3,
                       timeout=20)
            doubled = twice(ledger_lines(log))
            print(f"  pause {k + 1}/{trials}: {pause:.1f} s (held {resumed - started:.1f} s), "
                  f"slots run twice so far: {len(doubled)}", file=sys.stderr)
            doubled_total = doubled
        rows = ledger_lines(log)
        late = max(r.started - r.due for r in rows)
        stalls = sum(cluster.log(n).count("claim is unconfirmed") for n in cluster.names)
    return [
        f"**SIGSTOP of the manager 1-10 s, then SIGCONT** ({trials} trials, 3 nodes, "
        f"interval {iv} ms)",
        "",
        "| trials | runs | slots run twice | latest start after due | fenced resumes logged "
        "| resume to agreement median / max ms |",
        "|--:|--:|--:|--:|--:|--:|",
        f"| {trials} | {len(rows)} | {len(doubled_total)} | {late * 1000:.0f} ms | {stalls} "
        f"| {ms(resumed_agree)} |",
    ]


def bench_kill(trials: int) -> list[str]:
    log = Path(tempfile.mkdtemp(prefix="clerk-bench-")) / "ledger"
    iv, timeout = 300, 10_000
    t = clerk.task(Ledger, name="ledger", interval=iv, timeout=timeout, args={"log": str(log)})
    idle: list[float] = []
    continued = lost = 0
    with LocalCluster(3, tasks=[t]) as cluster:
        cluster.wait_for_manager(timeout=20)
        wait_until(lambda: len(ledger_lines(log)) >= 3, timeout=20)
        for k in range(trials):
            manager = cluster.wait_for_manager(timeout=20)
            seen = len(ledger_lines(log))
            last = wait_until(lambda s=seen: (r := ledger_lines(log))[s:] and r[-1],
                              timeout=10, interval=0.002)
            cluster.kill(manager)
            killed = time.time()
            nxt = wait_until(lambda lt=last: next(
                (r for r in ledger_lines(log) if r.started > lt.started), None),
                timeout=30, interval=0.005)
            idle.append(nxt.started - killed)
            if last.node != manager:
                continued += nxt.count == last.count + 1
            else:
                lost += nxt.count != last.count + 1
            print(f"  kill {k + 1}/{trials}: next run {idle[-1] * 1000:.0f} ms after the kill "
                  f"(last run on {'the manager' if last.node == manager else 'a follower'})",
                  file=sys.stderr)
            cluster.start(manager)
            wait_until(lambda: len(cluster.live()) == 3 and cluster.agreed() is not None,
                       timeout=20)
        doubled = twice(ledger_lines(log))
    return [
        f"**kill -9 of the manager right after a run** ({trials} trials, 3 nodes, interval "
        f"{iv} ms, timeout {timeout} ms)",
        "",
        "| trials | kill to next run median / max ms | runs on a follower whose result the "
        "new manager applied | updates lost with the manager's own run | slots run twice |",
        "|--:|--:|--:|--:|--:|",
        f"| {trials} | {ms(idle)} | {continued} | {lost} | {len(doubled)} |",
    ]


def bench_heal(trials: int) -> list[str]:
    from tests.integration.heal_helpers import KINDS, heal_trial
    from tests.integration.netns import Lab, NetnsCluster, available

    why = available()
    if why:
        return [f"**Heals**: skipped ({why})"]
    out = ["**Heal after a partition** (5 nodes in network namespaces, links set down or "
           f"moved to a second bridge, 3 s partitions, {trials} per kind)", "",
           "| partition | heal to agreement median / max ms | elections after the heal (all "
           "nodes, per trial) |", "|---|--:|--:|"]
    with Lab(5) as lab, NetnsCluster(lab) as cluster:
        cluster.wait_for_manager(timeout=30)
        for kind in KINDS:
            heals = []
            for k in range(trials):
                heals.append(heal_trial(cluster, lab, kind))
                print(f"  {kind} {k + 1}/{trials}: {heals[-1].seconds * 1000:.0f} ms, "
                      f"{heals[-1].elections} election(s)", file=sys.stderr)
            out.append(f"| {kind} | {ms([h.seconds for h in heals])} | "
                       f"{max(h.elections for h in heals)} max |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pause", type=int, default=20, help="SIGSTOP trials (0: skip)")
    ap.add_argument("--kill", type=int, default=20, help="kill -9 trials (0: skip)")
    ap.add_argument("--heal", type=int, default=5, help="heals per kind (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    tables: list[list[str]] = []
    if args.pause:
        tables.append(bench_pause(args.pause, random.Random(args.seed)))
    if args.kill:
        tables.append(bench_kill(args.kill))
    if args.heal:
        tables.append(bench_heal(args.heal))
    print("\n\n".join("\n".join(t) for t in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
