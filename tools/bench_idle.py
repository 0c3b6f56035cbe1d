#!/usr/bin/env python3
"""What an idle node costs: its whole process tree's memory (PSS), threads and CPU, and the
idle manager's CPU as the cluster grows.

    .venv/bin/python tools/bench_idle.py                       # 1 / 10 / 30 members, 20 s each
    .venv/bin/python tools/bench_idle.py --members 1 10 --seconds 10

How it counts, so that nothing of a node is left out:

* **The tree** is the node's process (``python -m clerk.node``) and every process under it
  (psutil ``children(recursive=True)``): the node's supervisor, its agent, the task workers and
  the supervisors' no-orphans watchdogs. Each is given a role by its place in the tree.
* **Memory** is PSS (proportional set size) from ``/proc/<pid>/smaps_rollup``: a page shared by
  k processes counts 1/k in each, so the sum over the tree is what the tree really occupies
  (RSS would count the interpreter's shared pages once per process). Pages also shared with
  processes outside the tree (another node on the same machine) count only their share:
  measure with one node, as the first table does. USS (the pages private to each process, a
  floor that no other process can lower) and RSS (the ceiling) are printed beside it.
* **CPU** is user + system time (psutil, 10 ms ticks) over ``--seconds`` of a cluster in
  which nothing is due: one task is loaded everywhere with an interval of one hour, so the
  measure is the cost of being a member (heartbeats, timers), not of running tasks. Shown as %
  of one core per role; the members table gives the manager's agent process and the median
  follower's whole tree, with the ratio to the 1-member cluster.
* **Wake-ups** per second per role: voluntary plus involuntary context switches
  (``/proc/<pid>/status``, summed over the process's threads) over the same span: how often a
  process is woken when nothing is due.

Every cluster runs with CURVE on and ``workers = --workers`` (default 1), as LocalCluster
starts them. Prints markdown tables; ``--out FILE`` also writes them there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402

#: Nothing is due while we measure: the one task's next slot is up to an hour away.
IDLE_TASK = clerk.task("clerk.examples:Tally", interval=3_600_000, name="idle")
ROLES = ("node", "node watchdog", "agent", "agent watchdog", "worker")


@dataclass
class Proc:
    pid: int
    role: str
    threads: int
    pss_kib: int
    uss_kib: int
    rss_kib: int
    cpu_s: float  # user + system, at the time of the sample
    switches: int  # voluntary + involuntary context switches of every thread


def _rollup(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def _switches(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                for line in fh:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:  # the thread ended meanwhile
            continue
    return total


def tree(root_pid: int) -> list[Proc]:
    """The node's process and everything under it, each with its role."""
    root = psutil.Process(root_pid)
    procs = []
    for p in [root, *root.children(recursive=True)]:
        with p.oneshot():
            watchdog = "--watchdog" in p.cmdline()
            if p.pid == root_pid:
                role = "node"
            elif p.ppid() == root_pid:
                role = "node watchdog" if watchdog else "agent"
            else:
                role = "agent watchdog" if watchdog else "worker"
            cpu = p.cpu_times()
            mem = _rollup(p.pid)
            uss = mem["Private_Clean"] + mem["Private_Dirty"]
            procs.append(Proc(p.pid, role, p.num_threads(), mem["Pss"], uss, mem["Rss"],
                              cpu.user + cpu.system, _switches(p.pid)))
    return procs


def usage(root_pid: int, seconds: float) -> tuple[list[Proc], dict[int, float], dict[int, float]]:
    """The tree at the end of ``seconds``, with each process's CPU (% of one core) and
    wake-ups per second over that span."""
    before = {p.pid: p for p in tree(root_pid)}
    time.sleep(seconds)  # an idle span of fixed length is what is measured
    after = tree(root_pid)
    cpu = {p.pid: 100 * (p.cpu_s - before[p.pid].cpu_s) / seconds
           for p in after if p.pid in before}
    wakes = {p.pid: (p.switches - before[p.pid].switches) / seconds
             for p in after if p.pid in before}
    return after, cpu, wakes


def settle(cluster: LocalCluster, timeout: float) -> str:
    """Wait until every node agrees on one manager and lists every member alive."""
    cluster.wait_for_manager(timeout=timeout)

    def all_alive() -> bool:
        try:
            return all(len([m for m in cluster.status(n).get("members", []) if m.get("alive")])
                       == cluster.n for n in cluster.names)
        except Exception:
            return False

    wait_until(all_alive, timeout=timeout)
    return cluster.wait_for_manager(timeout=timeout)


def one_node_table(seconds: float, workers: int) -> list[str]:
    with LocalCluster(1, [IDLE_TASK], workers=workers) as cluster:
        settle(cluster, 60)
        wait_until(lambda: len(cluster.pids(cluster.names[0])) >= 3 + 2 * (workers > 0),
                   timeout=30)
        time.sleep(3)  # let start-up work (imports, first heartbeats) finish before measuring
        procs, cpu, wakes = usage(cluster.pids(cluster.names[0])[0], seconds)
    rows = [f"One idle node, CURVE on, {workers} worker(s), {seconds:.0f} s "
            f"(load average {os.getloadavg()[0]:.1f}):", "",
            "| process | count | threads | PSS MiB | USS MiB | RSS MiB | CPU % of a core "
            "| wake-ups/s |",
            "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for role in ROLES:
        of = [p for p in procs if p.role == role]
        if of:
            rows.append(_row(role, of, cpu, wakes))
    rows.append(_row("**whole tree**", procs, cpu, wakes))
    return rows


def _row(label: str, procs: Sequence[Proc], cpu: dict[int, float],
         wakes: dict[int, float]) -> str:
    return (f"| {label} | {len(procs)} | {sum(p.threads for p in procs)} "
            f"| {sum(p.pss_kib for p in procs) / 1024:.1f} "
            f"| {sum(p.uss_kib for p in procs) / 1024:.1f} "
            f"| {sum(p.rss_kib for p in procs) / 1024:.1f} "
            f"| {sum(cpu.get(p.pid, 0.0) for p in procs):.2f} "
            f"| {sum(wakes.get(p.pid, 0.0) for p in procs):.0f} |")


def members_table(sizes: Iterable[int], seconds: float, workers: int) -> list[str]:
    rows = [f"Idle cluster of n members (CURVE on, {workers} worker(s) each, nothing due), "
            f"{seconds:.0f} s each:", "",
            "| members | manager agent CPU % | ratio to 1 member | manager tree CPU % "
            "| manager agent wake-ups/s | follower tree CPU % (median) | load average |",
            "|--:|--:|--:|--:|--:|--:|--:|"]
    base: float | None = None
    for n in sizes:
        with LocalCluster(n, [IDLE_TASK], workers=workers) as cluster:
            manager = settle(cluster, 60 + 3 * n)
            time.sleep(3)
            procs, cpu, wakes = usage(cluster.pids(manager)[0], seconds)
            agent = [p for p in procs if p.role == "agent"]
            agent_cpu = sum(cpu.get(p.pid, 0.0) for p in agent)
            followers = [name for name in cluster.names if name != manager][:5]
            f_cpu = []
            for name in followers:
                fprocs, fcpu, _ = usage(cluster.pids(name)[0], min(seconds, 5.0))
                f_cpu.append(sum(fcpu.get(p.pid, 0.0) for p in fprocs))
            load = os.getloadavg()[0]
        base = agent_cpu if base is None else base
        ratio = f"{agent_cpu / base:.1f}x" if base else "-"
        follower = f"{statistics.median(f_cpu):.2f}" if f_cpu else "-"
        rows.append(f"| {n} | {agent_cpu:.2f} | {ratio} "
                    f"| {sum(cpu.get(p.pid, 0.0) for p in procs):.2f} "
                    f"| {sum(wakes.get(p.pid, 0.0) for p in agent):.0f} | {follower} "
                    f"| {load:.1f} |")
        print("\n".join(rows[-1:]), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, nargs="*", default=[1, 10, 30],
                   help="cluster sizes for the manager's idle CPU (none: skip that table)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each idle span")
    p.add_argument("--workers", type=int, default=1, help="task workers per node")
    p.add_argument("--out", help="also write the tables to this file")
    args = p.parse_args()
    rows = one_node_table(args.seconds, args.workers)
    print("\n".join(rows), flush=True)
    if args.members:
        more = members_table(args.members, args.seconds, args.workers)
        print("\n" + "\n".join(more))
        rows += [""] + more
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
