"""A member that leaves gracefully while its run is in flight and its manager is dead keeps
the run's result until a manager takes it (clerk._routing, "A member that left keeps its
results until a manager takes them"; simulator: tests/unit/test_sim_leave_results.py).

Three real nodes; a task only the lowest-ranked follower may run (so it is not the one the
others elect), on a busy cluster (eight no-op tasks every 100 ms: the dispatch of a task
whose runs are short waits for the next replication round, so the next manager's table may
not show the run). Its run kills the manager (every process of it, ``kill -9``) as it
starts, a millisecond or two after its dispatch (``dispatch_lead = 0``), then asks its own
node to leave (SIGTERM to its agent) and runs 3 s more. The member leaves at once, its LEAVE
going to the dead manager; the survivor is elected and announces itself to the member,
which gives it its OFFER (the run in flight), its LEAVE and, once the run ended, its result,
and exits once that is acknowledged. The member started again, its next run continues from
the long run's count.

Before: the member sent its result to the dead manager and exited; the new manager failed
the run (its node silent) or never knew it, and the next run started from the state before
it: a count repeated, nothing counted (measured on main's code: see the commit message).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import (
    LeavesMidRunOnN1,
    LeavesMidRunOnN2,
    LeavesMidRunOnN3,
    busy_naps,
    per_node_tasks,
)
from tests.integration.task_helpers import task_row
from tests.integration.test_takeover_offered_runs import rows_of

pytestmark = pytest.mark.timeout(150)

LONG_S = 3.0


def test_a_member_leaving_mid_run_with_its_manager_dead_keeps_the_result(
        tmp_path: Path) -> None:
    classes = {"n1": LeavesMidRunOnN1, "n2": LeavesMidRunOnN2, "n3": LeavesMidRunOnN3}
    files, tasks = per_node_tasks(tmp_path, classes, "leaver", ("log", "long", "kill"),
                                  LONG_S, interval=200, timeout=20_000)
    with LocalCluster(3, tasks=[*tasks, *busy_naps()], dispatch_lead=0, workers=2) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        leave_kill_and_check(cluster, manager, files)


def leave_kill_and_check(cluster: LocalCluster, manager: str,
                         files: dict[str, dict[str, Any]]) -> None:
    """The lowest-ranked follower's next run (``long`` touched) kills the manager and leaves
    (in the order its task class does it); the survivor is elected, the member exits once its
    result is acknowledged, and, started again, continues from the long run's count with
    nothing counted twice and no conflict."""
    member = min(n for n in cluster.names if n != manager)  # ranked lowest: not elected
    other = next(n for n in cluster.names if n not in (manager, member))
    short = member.split("@")[0]
    name, log = f"leaver-{short}", Path(files[short]["log"])
    wait_until(lambda: len(rows_of(log)) >= 3, timeout=20)
    Path(files[short]["kill"]).write_text(" ".join(map(str, cluster.pids(manager))))
    Path(files[short]["long"]).touch()  # its next run: see the callers
    wait_until(lambda: not cluster.running(manager), timeout=10, interval=0.01)
    cluster.kill(manager)  # (reaped)
    assert cluster.wait_for_manager(timeout=15, names=[other]) == other
    # The member exits once its run ended and a manager acknowledged its result.
    wait_until(lambda: not cluster.running(member), timeout=LONG_S + 20)
    rows = rows_of(log)
    long = rows[-1]
    assert long.ended - long.started >= LONG_S * 0.9, rows[-3:]
    row = task_row(cluster.status(other), name)
    assert row["conflicts"] == 0, row
    cluster.restart(member)
    wait_until(lambda: len(rows_of(log)) >= len(rows) + 2, timeout=30)
    after = rows_of(log)
    # Its result was applied: the next run continued from it, nothing counted twice.
    assert after[len(rows)].count == long.count + 1, after[len(rows) - 2:]
    counts = [r.count for r in after]
    assert len(counts) == len(set(counts)), counts
    row = task_row(cluster.status(other), name)
    assert row["conflicts"] == 0, row
