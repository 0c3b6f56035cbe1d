"""Helpers for the cluster integration tests and tools/bench_failover.py: honest failover
timing, reading node logs, starting a stray node process next to a LocalCluster."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from clerk._store import Store
from clerk.testing import LocalCluster, wait_until


@dataclass(frozen=True)
class Failover:
    old: str
    new: str
    old_term: int
    term: int
    agreed_within: float  # s from the signal to the end of the first poll round that agreed
    poll_rounds: int
    slowest_round: float  # s: the uncertainty of ``agreed_within`` (one round of status polls)
    wall0: float  # wall time just before the signal (to compare with the nodes' logs)


T = TypeVar("T")


def present(value: T | None) -> T:
    """``value``, which must not be None: what a wait on a lookup (``wait_until`` of a
    predicate answering None for "not yet") returns, typed without the None."""
    assert value is not None
    return value


def failover(cluster: LocalCluster, act: Callable[[str], None], *, timeout: float = 10.0,
             old: str | None = None) -> Failover:
    """Do ``act(manager)`` (kill or pause it) and wait until every other live node agrees on
    a new manager with a higher term.

    The time reported is an upper bound: from just before the signal to the *end* of the
    first round of status polls in which all views agree (every live node is asked at once,
    so a round takes a few ms; its length is reported too). Agreement may have come earlier
    by up to one round plus the gap between rounds, which the tight polling keeps small.
    """
    if old is None:
        old = cluster.wait_for_manager(timeout=10)
    old_term = cluster.status(old)["term"]
    others = [n for n in cluster.live() if n != old]
    rounds, slowest = 0, 0.0
    wall0, t0 = time.time(), time.monotonic()
    act(old)
    deadline = t0 + timeout
    while True:
        start = time.monotonic()
        views = cluster.views(others, timeout=0.5)
        end = time.monotonic()
        rounds += 1
        slowest = max(slowest, end - start)
        seen = {(v["manager"], v["term"]) if v else None for v in views.values()}
        if len(seen) == 1:
            view = seen.pop()
            if view is not None and view[0] in others and view[1] > old_term:
                return Failover(old, view[0], old_term, view[1], end - t0, rounds, slowest,
                                wall0)
        if end > deadline:
            raise AssertionError(f"no new manager agreed {timeout}s after acting on {old}; "
                                 f"views: {views}")
        time.sleep(0.002)  # a breath between rounds: the nodes need the CPU more than we do


# The readable line: ISO 8601 UTC time with its zone, node, logger, level, message.
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) \S+ clerk\.node INFO "
                       r"(?:manager is (\S+) \(term (\d+)\)|this node is now the manager "
                       r"\(term (\d+)\))")


def adoptions(log: str, me: str) -> list[tuple[float, str, int]]:
    """(wall time, manager, term) for every change of manager a node logged."""
    out = []
    for line in log.splitlines():
        m = _LOG_LINE.match(line)
        if not m:
            continue
        ts = datetime.fromisoformat(m.group(1))
        if m.group(2):
            out.append((ts.timestamp(), m.group(2), int(m.group(3))))
        else:
            out.append((ts.timestamp(), me, int(m.group(4))))
    return out


def logged_since(log: str, wall: float, text: str) -> list[str]:
    """Lines of a node log written at or after ``wall`` that contain ``text``."""
    out = []
    for line in log.splitlines():
        try:
            ts = datetime.fromisoformat(line[:24])
        except ValueError:
            continue
        if ts.timestamp() >= wall and text in line:
            out.append(line)
    return out


def adopted_at(cluster: LocalCluster, name: str, manager: str, term: int) -> float | None:
    """Wall time at which node ``name`` logged that it follows ``manager`` in ``term``
    (the node's own clock, ms resolution)."""
    for ts, m, t in adoptions(cluster.log(name), name):
        if m == manager and t == term:
            return ts
    return None


def env_for_nodes() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    env.pop("CLERK_COOKIE", None)
    return env


def run_node(args: list[str], *, timeout: float = 30.0,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m clerk.node ARGS`` to completion (for nodes that must exit on their own)."""
    return subprocess.run([sys.executable, "-m", "clerk.node", *args], capture_output=True,
                          text=True, timeout=timeout, env=env_for_nodes(), cwd=cwd,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def run_clerk(args: list[str], *, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``python -m clerk ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "clerk", *args], capture_output=True,
                          text=True, timeout=timeout, env=env_for_nodes(),
                          stdin=subprocess.DEVNULL)


def wait_agreed(cluster: LocalCluster, names: list[str], timeout: float,
                check: Callable[[tuple[str, int]], bool] = lambda v: True) -> tuple[str, int]:
    """Wait until ``names`` agree on one manager (one of them) and ``check`` holds for it."""
    def agreed() -> tuple[str, int] | None:
        v = cluster.agreed(names)
        return v if v is not None and check(v) else None

    return present(wait_until(agreed, timeout=timeout, interval=0.02,
                              message=lambda: f"no agreement among {names}: "
                              f"{brief(cluster, names)}"))


def wait_converged(cluster: LocalCluster, timeout: float = 10.0) -> tuple[str, int]:
    """Wait until every running node agrees on the manager *and* lists every running node,
    alive, with its current incarnation: a restarted node has fully joined, and every link
    to it is up again (no message queued for its address is still in flight)."""
    names = [n for n in cluster.names if cluster.running(n)]

    def converged() -> tuple[str, int] | None:
        views = cluster.views(names)
        if any(v is None for v in views.values()):
            return None
        incarnations = {n: v["incarnation"] for n, v in views.items() if v}
        agreed = {(v["manager"], v["term"]) for v in views.values() if v}
        if len(agreed) != 1:
            return None
        for v in views.values():
            assert v is not None
            rows = {m["name"]: (m["incarnation"], m["alive"]) for m in v["members"]}
            if any(rows.get(n) != (inc, True) for n, inc in incarnations.items()):
                return None
        return agreed.pop()

    return present(wait_until(converged, timeout=timeout, interval=0.02,
                              message=lambda: f"members never converged: {cluster.views(names)}"))


def brief(cluster: LocalCluster, names: list[str]) -> dict[str, Any]:
    return {n: (v["manager"], v["term"], v["role"]) if v else None
            for n, v in cluster.views(names).items()}


def recorded_members(cluster: LocalCluster, name: str, scratch: Path) -> dict[str, str]:
    """The members ``name``'s data directory records now, as a restart would read them (from
    a copy in ``scratch``: the node holds the directory's lock)."""
    src = cluster.data_path(name)
    assert src is not None
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for p in src.iterdir():
        if p.name != "lock":
            with contextlib.suppress(FileNotFoundError):  # a journal a compaction deleted
                shutil.copy2(p, scratch / p.name)
    store = Store(scratch, name)
    store.read()
    return store.recorded
