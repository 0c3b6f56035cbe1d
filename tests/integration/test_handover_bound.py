"""A member leaves with a long run going, then its manager leaves gracefully (a hand-over):
the successor bounds the run on the node it does not list (clerk._adoptedruns,
``UNLISTED_RUN_WAIT_S``; simulator: tests/unit/test_sim_handover_bound.py).

Three real nodes; a task only the lowest-ranked follower may run, with a 10-minute timeout.
Its run asks its own node to leave (SIGTERM to its agent) and sleeps 60 s: the manager
removes the member at its LEAVE (the run stays open: a member that leaves finishes its runs);
the member stops the run after ``LEAVE_WAIT`` (5 s) and exits without a result. The test
then stops the manager (SIGTERM): it hands over to the third node, which adopts the run on a
node it does not list. The successor fails it as a timeout 12 s after its takeover.

Before: the successor kept the run open to its deadline, 10 minutes, holding the task.
So did the manager the member left, without a hand-over (the second test).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clerk._adoptedruns import UNLISTED_RUN_WAIT_S
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import LeavesOnN1, LeavesOnN2, LeavesOnN3, per_node_tasks
from tests.integration.task_helpers import task_row
from tests.integration.test_takeover_offered_runs import rows_of

pytestmark = pytest.mark.timeout(150)

LONG_S = 60.0
TIMEOUT_MS = 600_000


def _leave_mid_run(cluster: LocalCluster, files: dict[str, dict[str, Any]]
                   ) -> tuple[str, str, str, str, str]:
    """The lowest-ranked follower's next run makes it leave; once the manager removed it
    (the run still open): (manager, member, the third node, the task, the run id)."""
    manager = cluster.wait_for_manager(timeout=15)
    member = min(n for n in cluster.names if n != manager)  # ranked lowest: not elected
    other = next(n for n in cluster.names if n not in (manager, member))
    short = member.split("@")[0]
    name, log = f"leaver-{short}", Path(files[short]["log"])
    wait_until(lambda: len(rows_of(log)) >= 3, timeout=20)
    Path(files[short]["long"]).touch()  # its next run leaves and sleeps

    def removed() -> bool:
        st = cluster.status(manager)
        run = task_row(st, name)["running"]
        return member not in {m["name"] for m in st["members"]} and run is not None

    wait_until(removed, timeout=10, interval=0.05)
    run_id = task_row(cluster.status(manager), name)["running"]["run"]
    return manager, member, other, name, str(run_id)


def _bounded(cluster: LocalCluster, node: str, name: str, run_id: str, since: float) -> None:
    """``node`` times the run out ``UNLISTED_RUN_WAIT_S`` after ``since`` (monotonic)."""

    def ended() -> bool:
        run = task_row(cluster.status(node), name)["running"]
        return run is None or run["run"] != run_id

    wait_until(ended, timeout=UNLISTED_RUN_WAIT_S + 10, interval=0.2)  # main: 10 minutes
    assert time.monotonic() - since >= UNLISTED_RUN_WAIT_S - 2.0
    row = task_row(cluster.status(node), name)
    assert row["runs"]["timeout"] == 1, row  # (its next slots: skipped, nobody may run it)


def _tasks(tmp_path: Path) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    classes = {"n1": LeavesOnN1, "n2": LeavesOnN2, "n3": LeavesOnN3}
    return per_node_tasks(tmp_path, classes, "leaver", ("log", "long", "kill"), LONG_S,
                          interval=200, timeout=TIMEOUT_MS)


def test_a_run_on_a_member_that_left_before_a_hand_over_is_bounded(tmp_path: Path) -> None:
    files, tasks = _tasks(tmp_path)
    with LocalCluster(3, tasks=tasks, workers=2) as cluster:
        manager, member, other, name, run_id = _leave_mid_run(cluster, files)
        stopping = threading.Thread(target=cluster.stop, args=(manager,), daemon=True)
        stopping.start()  # (it waits for the run on the member that left: LEAVE_WAIT)
        assert cluster.wait_for_manager(timeout=15, names=[other]) == other
        took_over = time.monotonic()
        row = task_row(cluster.status(other), name)
        assert row["running"] is not None and row["running"]["run"] == run_id, row
        _bounded(cluster, other, name, run_id, took_over)
        stopping.join(timeout=30)
        wait_until(lambda: not cluster.running(member), timeout=20)


def test_the_manager_a_member_left_bounds_its_run_still_going(tmp_path: Path) -> None:
    """No hand-over: the member stops its run at the end of its 5 s leave wait and exits
    without a result; the manager it left times the run out 12 s after the LEAVE."""
    files, tasks = _tasks(tmp_path)
    with LocalCluster(3, tasks=tasks, workers=2) as cluster:
        manager, member, _, name, run_id = _leave_mid_run(cluster, files)
        _bounded(cluster, manager, name, run_id, time.monotonic() - 0.5)
        wait_until(lambda: not cluster.running(member), timeout=20)
