"""The lateness half of ``tools/bench_tasks.py``: a cluster of Stamp tasks (Clerk) or a
BackgroundScheduler (APScheduler 3) at a given rate, and each run's start against its due time.

Split out of ``bench_tasks.py`` (which drives the runs and prints the tables) to keep that
script under the project's ~600-line limit; nothing here prints a table.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_counts import clerk_roles, threads_of, wire_counts  # noqa: E402

import clerk  # noqa: E402
from clerk._schedule import phase_ms  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402

__all__ = ["STAMP", "Lateness", "aps_lateness", "clerk_lateness", "ensure_apscheduler", "pct",
           "read_stamps", "skipped_total", "source_tree"]

STAMP = "_bench_tasks:Stamp"


# --- statistics -----------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


@dataclass
class Lateness:
    samples: list[float]  # ms
    runs_per_s: float
    skipped: int
    target_per_s: float
    cpu: dict[str, float] = field(default_factory=dict)  # µs per run per process role
    #: per run per agent role: protocol messages sent, ZeroMQ sends, ZeroMQ messages received,
    #: loop turns, polls, empty polls (tools/_bench_counts.WIRE_FIELDS)
    wire: dict[str, tuple[float, ...]] = field(default_factory=dict)
    #: per run per process role and thread kind: voluntary and involuntary context switches
    #: (wake-ups, preemptions) and CPU µs
    wakeups: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p99(self) -> float:
        return pct(self.samples, 99)

    def ok(self, limit_ms: float = 10.0) -> bool:
        return (bool(self.samples) and self.p99 < limit_ms and self.skipped == 0
                and self.runs_per_s >= 0.95 * self.target_per_s)


# --- clerk clusters -------------------------------------------------------------------------


def read_stamps(d: Path) -> list[tuple[str, int, float, float]]:
    """``(task, slot, started, due)`` of every run, wall seconds."""
    out = []
    for f in d.glob("*.log"):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                out.append((parts[0], int(parts[1]), float(parts[2]), float(parts[3])))
    return out


def skipped_total(cluster: LocalCluster, manager: str) -> int:
    """Slots skipped, timed out or failed so far; -1 if the manager did not answer (a rate
    it cannot hold: the level then reads "over", see Lateness.ok)."""
    try:
        st = cluster.status(manager, timeout=10)
    except Exception as exc:
        print(f"  warning: no status from the manager {manager}: {exc}", file=sys.stderr)
        return -1
    return sum(t["runs"]["skipped"] + t["runs"]["timeout"] + t["runs"]["error"]
               for t in st["tasks"])


@contextlib.contextmanager
def source_tree(source: str | None) -> Any:
    """Node processes started meanwhile import ``clerk`` from ``source`` (None: this tree).
    LocalCluster hands them this process's ``sys.path`` as PYTHONPATH, but a node starts as
    ``python -m clerk.node``, which puts the current directory before PYTHONPATH (and its
    agent and workers copy the node's path): run from a tree's root, every cluster ran that
    tree, ``--against`` included. So the nodes also start in the root of the tree they run."""
    root = source or str(Path(__file__).resolve().parent.parent)
    cwd = os.getcwd()
    sys.path.insert(0, root)
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(root)


def clerk_lateness(n_tasks: int, interval: int, window: float, nodes: int = 3,
                   workers: int = 2, lead: int | None = None,
                   source: str | None = None) -> Lateness:
    """Run ``n_tasks`` Stamp tasks every ``interval`` ms on a ``nodes``-node cluster, with
    the default dispatch lead (``lead`` None) or ``dispatch_lead = lead``; its nodes run the
    Clerk of ``source`` (another tree; None: this one)."""
    with tempfile.TemporaryDirectory(prefix="bench-stamps-") as tmp:
        d = Path(tmp)
        tasks = [clerk.task(STAMP, name=f"t{i:04d}", interval=interval, timeout=5000,
                            args={"dir": str(d)}) for i in range(n_tasks)]
        with source_tree(source), LocalCluster(nodes, tasks=tasks, workers=workers,
                                           log_level="warning", dispatch_lead=lead) as c:
            manager = c.wait_for_manager(timeout=60)
            # Warm up: every task has run once (first slots come one interval after takeover).
            try:
                wait_until(lambda: len({s[0] for s in read_stamps(d)}) >= n_tasks,
                           timeout=interval / 1000 + 30, interval=0.1)
            except Exception:  # measure anyway: the table shows the shortfall
                print(f"  warning: only {len({s[0] for s in read_stamps(d)})} of {n_tasks} "
                      "tasks ran during the warm-up", file=sys.stderr)
            skipped0 = skipped_total(c, manager)
            roles = clerk_roles(c, manager)
            wire0 = wire_counts(c, manager)
            cpu0 = {k: f() for k, f in roles.items()}
            wake0 = threads_of(c, manager)
            w0 = time.time()
            time.sleep(window)
            w1 = time.time()
            cpu1 = {k: f() for k, f in roles.items()}
            wake1 = threads_of(c, manager)
            wire1 = wire_counts(c, manager)
            skipped1 = skipped_total(c, manager)
            skipped = -1 if min(skipped0, skipped1) < 0 else skipped1 - skipped0
        rows = [s for s in read_stamps(d) if w0 <= s[2] < w1]
    late = [(t - due) * 1000 for _name, _slot, t, due in rows]
    per = max(1, len(rows))
    cpu = {k: (cpu1[k] - cpu0[k]) * 1e6 / per for k in roles}
    wire = {k: tuple((b - a) / per for a, b in zip(wire0[k], wire1[k], strict=True))
            for k in wire1 if k in wire0}  # ({} if a node did not answer: wire_counts)
    wakes = {k: ((v1 - wake0.get(k, (0, 0, 0.0))[0]) / per,
                 (i1 - wake0.get(k, (0, 0, 0.0))[1]) / per,
                 (t1 - wake0.get(k, (0, 0, 0.0))[2]) * 1e6 / per)
             for k, (v1, i1, t1) in wake1.items()}
    return Lateness(late, len(rows) / (w1 - w0), skipped, n_tasks * 1000 / interval, cpu,
                    wire, wakes)  # type: ignore[arg-type]


# --- APScheduler 3 --------------------------------------------------------------------------


def ensure_apscheduler() -> Any:
    try:
        return importlib.import_module("apscheduler")
    except ImportError:
        print("installing apscheduler<4 (bench-only) with pip ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "apscheduler<4"],
                       check=True)
        importlib.invalidate_caches()
        return importlib.import_module("apscheduler")


def aps_lateness(n_tasks: int, interval: int, window: float) -> Lateness:
    """The same load on APScheduler 3: a BackgroundScheduler with ``n_tasks`` interval jobs
    whose start dates are spread like Clerk's phases; lateness against each job's grid."""
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
    from apscheduler.schedulers.background import BackgroundScheduler

    starts: list[tuple[int, float]] = []
    lock = threading.Lock()
    missed = [0]

    def job(i: int) -> None:
        t = time.time()
        with lock:
            starts.append((i, t))

    def on_missed(event: Any) -> None:
        missed[0] += 1

    sched = BackgroundScheduler()
    sched.add_listener(on_missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    base = (int(time.time()) + 2) * 1000
    origin: dict[int, float] = {}
    for i in range(n_tasks):
        first = base + phase_ms(f"t{i:04d}", interval)
        origin[i] = first / 1000
        sched.add_job(job, "interval", args=(i,), seconds=interval / 1000,
                      start_date=dt.datetime.fromtimestamp(first / 1000, tz=dt.UTC),
                      id=f"t{i}")
    sched.start()
    try:
        time.sleep(max(0.0, base / 1000 - time.time()) + interval / 1000 + 0.5)
        missed0 = missed[0]
        w0 = time.time()
        time.sleep(window)
        w1 = time.time()
        skipped = missed[0] - missed0
    finally:
        sched.shutdown(wait=True)
    iv = interval / 1000
    rows = [(i, t) for i, t in starts if w0 <= t < w1]
    # The grid point at or before each start (a start over one interval late would look early
    # by one interval; such a run shows up as a missed run instead).
    late = [((t - origin[i]) % iv) * 1000 for i, t in rows]
    return Lateness(late, len(rows) / (w1 - w0), skipped, n_tasks / iv)
