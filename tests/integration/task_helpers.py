"""Helpers shared by the task integration tests: read the task logs, compute the grid."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clerk._deploy import SEP
from clerk._schedule import phase_ms


@dataclass(frozen=True)
class CounterLine:
    task: str
    slot: int
    term: int
    node: str
    count: int
    started: float  # wall time (s) when execute began writing


def counter_lines(path: Path | str) -> list[CounterLine]:
    """The lines :class:`~tests.integration.cluster_tasks.Counter` appended (complete ones)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 6:
            out.append(CounterLine(parts[0], int(parts[1]), int(parts[2]), parts[3],
                                   int(parts[4]), float(parts[5])))
    return out


def lines(path: Path | str) -> list[list[str]]:
    try:
        return [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


def due(name: str, interval_ms: int, slot: int) -> float:
    """Wall time (s) at which ``slot`` of task ``name`` is due."""
    return (phase_ms(name, interval_ms) + slot * interval_ms) / 1000


def all_eligible(cluster: Any, task: str, timeout: float = 30.0) -> str:
    """Wait until the manager sees every live node advertise ``task`` (a node does so only
    once all its workers are ready: clerk._runnerdefs) and return the manager's name. A test
    of "no slot missed" across a change of manager needs this: a successor whose workers are
    still starting, with no other node ready, rightly skips the slots until they are."""
    from clerk.testing import wait_until

    def ready() -> str | None:
        manager = cluster.wait_for_manager(timeout=timeout)
        members = cluster.status(manager)["members"]
        live = set(cluster.live())
        have = {m["name"] for m in members
                if m["alive"] and task in (e.partition(SEP)[0] for e in m["tasks"])}
        return manager if live <= have else None

    manager = wait_until(ready, timeout=timeout, interval=0.05,
                         message=lambda: f"not every node advertises {task!r} yet")
    assert manager is not None
    return manager


def task_row(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in status["tasks"] if t["name"] == name)


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class LedgerLine:
    slot: int
    term: int
    node: str
    count: int
    started: float  # wall time (s) when execute began writing
    due: float  # the slot's due time, from clerk.current_run().due


def ledger_lines(path: Path | str) -> list[LedgerLine]:
    """The lines :class:`~tests.integration.cluster_tasks.Ledger` appended (complete ones)."""
    out = []
    for parts in lines(path):
        if len(parts) == 6:
            out.append(LedgerLine(int(parts[0]), int(parts[1]), parts[2], int(parts[3]),
                                  float(parts[4]), float(parts[5])))
    return out


def twice(rows: list[LedgerLine]) -> list[int]:
    """Slots that ran more than once."""
    seen: dict[int, int] = {}
    for r in rows:
        seen[r.slot] = seen.get(r.slot, 0) + 1
    return sorted(s for s, n in seen.items() if n > 1)
