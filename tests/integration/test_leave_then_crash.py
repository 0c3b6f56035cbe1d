"""A member leaves gracefully with a run in flight, its LEAVE reaches the live manager, which
removes it, and the manager then crashes before the run's result: the next manager takes the
result (clerk._adoptedruns; simulator: tests/unit/test_sim_leave_results.py,
``LEAVE_THEN_CRASH``).

Three real nodes; a task only the lowest-ranked follower may run (so it is not the one the
others elect). Its run asks its own node to leave (SIGTERM to its agent), waits 0.5 s (the
manager removed the member and replicated that), kills the manager (every process of it,
``kill -9``) and runs 3 s more. The survivor is elected; its table shows the run on a node
it does not list. It keeps the run open, and announces itself to the member (the address
its manager stopped listing), which answers with its result; the member exits once that is
acknowledged. Started again, the member's next run continues from the long run's count.

Before: the new manager failed the run at once (its node "gone"), the member's result came
for a run the row had finished and was dropped (``result_not_member``), and the member gave
it up after 10 s (a WARNING, ``results_lost_on_leave``): the next run started from the state
before it, a count repeated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import (
    LeavesThenKillsOnN1,
    LeavesThenKillsOnN2,
    LeavesThenKillsOnN3,
)
from tests.integration.task_helpers import task_row
from tests.integration.test_takeover_offered_runs import rows_of

pytestmark = pytest.mark.timeout(150)

LONG_S = 3.0


def test_a_member_whose_leave_reached_a_manager_that_then_crashed_keeps_the_result(
        tmp_path: Path) -> None:
    classes = {"n1": LeavesThenKillsOnN1, "n2": LeavesThenKillsOnN2, "n3": LeavesThenKillsOnN3}
    files = {n: {"log": str(tmp_path / f"log-{n}"), "long": str(tmp_path / f"long-{n}"),
                 "kill": str(tmp_path / f"kill-{n}"), "sleep": LONG_S, "gap": 0.5}
             for n in classes}
    tasks = [clerk.task(cls, name=f"leaver-{n}", interval=200, timeout=20_000, args=files[n])
             for n, cls in classes.items()]
    with LocalCluster(3, tasks=tasks, workers=2) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        member = min(n for n in cluster.names if n != manager)  # ranked lowest: not elected
        other = next(n for n in cluster.names if n not in (manager, member))
        short = member.split("@")[0]
        name, log = f"leaver-{short}", Path(files[short]["log"])
        wait_until(lambda: len(rows_of(log)) >= 3, timeout=20)
        Path(files[short]["kill"]).write_text(" ".join(map(str, cluster.pids(manager))))
        Path(files[short]["long"]).touch()  # its next run leaves, then kills the manager
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
