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

from clerk.testing import LocalCluster
from tests.integration.cluster_tasks import (
    LeavesThenKillsOnN1,
    LeavesThenKillsOnN2,
    LeavesThenKillsOnN3,
    per_node_tasks,
)
from tests.integration.test_leave_results import leave_kill_and_check

pytestmark = pytest.mark.timeout(150)

LONG_S = 3.0


def test_a_member_whose_leave_reached_a_manager_that_then_crashed_keeps_the_result(
        tmp_path: Path) -> None:
    classes = {"n1": LeavesThenKillsOnN1, "n2": LeavesThenKillsOnN2, "n3": LeavesThenKillsOnN3}
    files, tasks = per_node_tasks(tmp_path, classes, "leaver", ("log", "long", "kill"),
                                  LONG_S, interval=200, timeout=20_000, extra={"gap": 0.5})
    with LocalCluster(3, tasks=tasks, workers=2) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        leave_kill_and_check(cluster, manager, files)
