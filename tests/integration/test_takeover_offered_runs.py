"""A short task's run that suddenly runs long, whose manager dies (kill -9) right after it
dispatched it: the members' OFFERs carry their runs in flight (clerk._offerruns), so the
new manager neither sends the next slot beside it nor drops its result.

On a busy cluster (here eight no-op tasks every 100 ms beside the task under test) the
manager replicates a change at most every 25 ms, and the dispatch of a task whose last run
took under 10 ms waits for the next round: the run itself kills the manager (every process
of it) as it starts, a millisecond or two after its dispatch (``dispatch_lead = 0``), before
that round went in most cases. Before, the successor's table did not show the run: it sent
the next slot beside it (the task overlapped itself) and dropped the run's result (the
next run repeated a count). Measured on the old code: 3 of 3 runs of this test failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import (
    SuddenlyLongOnN1,
    SuddenlyLongOnN2,
    SuddenlyLongOnN3,
    busy_naps,
    per_node_tasks,
)
from tests.integration.task_helpers import lines, task_row

pytestmark = pytest.mark.timeout(120)

LONG_S = 2.0


@dataclass(frozen=True)
class Row:
    slot: int
    term: int
    node: str
    count: int
    started: float
    ended: float


def rows_of(path: Path) -> list[Row]:
    return [Row(int(p[0]), int(p[1]), p[2], int(p[3]), float(p[4]), float(p[5]))
            for p in lines(path) if len(p) == 6]


def _long_at(rows: list[Row], long_s: float) -> int | None:
    """The index of the first run of at least 0.9 ``long_s`` (None: none yet)."""
    return next((i for i, r in enumerate(rows) if r.ended - r.started >= long_s * 0.9), None)


def wait_after_long(log: Path, long_s: float) -> list[Row]:
    """The runs in ``log`` once the long one (:func:`_long_at`) has three runs after it."""
    def after_long() -> list[Row] | None:
        rows = rows_of(log)
        i = _long_at(rows, long_s)
        return rows if i is not None and len(rows) >= i + 4 else None

    rows: list[Row] | None = wait_until(after_long, timeout=30)
    assert rows is not None
    return rows


def check_long_run_kept(rows: list[Row], long_s: float, row: dict[str, Any]) -> None:
    """The long run's result was kept: no run started beside it, the next continued from its
    state, no count twice, and its task's ``row`` (status) counts no conflict."""
    i = _long_at(rows, long_s)
    assert i is not None, rows
    long = rows[i]
    beside = [r for r in rows if long.started < r.started < long.ended]
    assert beside == [], f"runs started beside the long one ({long}): {beside}"
    # Its result was applied: the next run continued from it, nothing counted twice.
    assert rows[i + 1].count == long.count + 1, rows[i - 2:i + 3]
    counts = [r.count for r in rows]
    assert len(counts) == len(set(counts)), counts
    assert row["conflicts"] == 0, row


def test_a_run_the_dead_managers_table_never_showed_is_adopted_from_its_nodes_offer(
        tmp_path: Path) -> None:
    classes = {"n1": SuddenlyLongOnN1, "n2": SuddenlyLongOnN2, "n3": SuddenlyLongOnN3}
    files, tasks = per_node_tasks(tmp_path, classes, "long", ("log", "long", "kill"),
                                  LONG_S, interval=100, timeout=10_000)
    with LocalCluster(3, tasks=[*tasks, *busy_naps()], dispatch_lead=0, workers=2) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        follower = next(n for n in cluster.names if n != manager)
        short = follower.split("@")[0]
        name, log = f"long-{short}", Path(files[short]["log"])
        wait_until(lambda: len(rows_of(log)) >= 5, timeout=20)
        Path(files[short]["kill"]).write_text(" ".join(map(str, cluster.pids(manager))))
        Path(files[short]["long"]).touch()  # its next run kills the manager and runs long
        wait_until(lambda: not cluster.running(manager), timeout=10, interval=0.01)
        cluster.kill(manager)  # (reaped)
        new = cluster.wait_for_manager(timeout=15)
        assert new != manager

        rows = wait_after_long(log, LONG_S)
        check_long_run_kept(rows, LONG_S, task_row(cluster.status(new), name))
