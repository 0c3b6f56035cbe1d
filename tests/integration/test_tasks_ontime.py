"""Runs sent ahead of their slot (clerk._lead) on a real cluster with the defaults a user gets
(CURVE on, the default dispatch lead): every run's task code starts at or after its
``clerk.current_run().due`` by the wall clock, never before, each slot runs at most once, and
the manager did send runs ahead (their history's start is their due time)."""

from __future__ import annotations

from pathlib import Path

import pytest

import clerk
from clerk._client import request_control
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import OnTime

pytestmark = pytest.mark.timeout(90)


def rows(path: Path) -> list[tuple[int, str, float, float]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        slot, node, started, due = line.split()
        out.append((int(slot), node, float(started), float(due)))
    return out


def test_runs_start_at_their_due_time_never_before(tmp_path: Path) -> None:
    log = tmp_path / "ontime.log"
    task = clerk.task(OnTime, name="ontime", interval=100, timeout=2000,
                      args={"log": str(log)})
    with LocalCluster(2, tasks=[task]) as c:
        manager = c.wait_for_manager(timeout=30)
        got = wait_until(lambda: (r := rows(log))[39:] and r, timeout=40,
                         message=lambda: f"only {len(rows(log))} runs")
        entries = request_control([c.address(manager)], "show", "ontime", keys=c.keys,
                                  timeout=10)["history"]
    early = [(s, n, t, d) for s, n, t, d in got if t < d]
    assert early == [], f"runs that started before their due time: {early[:5]}"
    slots = [s for s, *_ in got]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert {n for _, n, _, _ in got} <= set(c.names)
    # The manager sent runs ahead: such a run's recorded start is its slot's due time.
    ahead = [e for e in entries if e["due"] is not None and e["start"] == e["due"]]
    assert ahead, f"no run was sent ahead of its due time: {entries[-5:]}"

