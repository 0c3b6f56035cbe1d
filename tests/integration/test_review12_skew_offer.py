"""A node whose clock is far off its manager's offers its runs in flight to a new manager in
the manager's time base (review12).

n2's wall clock is 10 s behind (the test-only ``CLERK_TEST_CLOCK_OFFSET_S``): it holds and
judges the EXECUTEs of its manager n1 in its own time base (clerk._clockskew). Its run that
kills n1 and then runs long is in flight when n3 takes over, and n2's OFFER carries it
(clerk._offerruns) so that n3 sends no run of the task beside it. If the OFFER carries the
run's due time and deadline as n2 moved them (10 s earlier in n3's time base), n3 takes the
run's deadline as passed and sends the next slots beside the long run."""

from __future__ import annotations

from pathlib import Path

import pytest

from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import SuddenlyLongOnN2, busy_naps, per_node_tasks
from tests.integration.task_helpers import task_row
from tests.integration.test_takeover_offered_runs import (
    check_long_run_kept,
    rows_of,
    wait_after_long,
)

pytestmark = pytest.mark.timeout(120)

LONG_S = 6.0
N1, N2, N3 = "n1@127.0.0.1", "n2@127.0.0.1", "n3@127.0.0.1"


def test_a_skewed_nodes_offered_run_keeps_its_deadline_at_the_new_manager(
        tmp_path: Path) -> None:
    files, tasks = per_node_tasks(tmp_path, {"n2": SuddenlyLongOnN2}, "long",
                                  ("log", "long", "kill"), LONG_S, interval=100,
                                  timeout=10_000)
    log = Path(files["n2"]["log"])
    # n1 the manager (priority), n3 its successor (the higher name), n2 10 s behind.
    with LocalCluster(3, tasks=[*tasks, *busy_naps()], dispatch_lead=0, workers=2,
                      priorities=[1, 0, 0], start=False,
                      node_env={N2: {"CLERK_TEST_CLOCK_OFFSET_S": "-10"}}) as cluster:
        cluster.start(N1)
        assert cluster.wait_for_manager(timeout=30, names=[N1]) == N1
        cluster.start(N2)
        cluster.start(N3)
        wait_until(lambda: len(rows_of(log)) >= 5, timeout=30)
        Path(files["n2"]["kill"]).write_text(" ".join(map(str, cluster.pids(N1))))
        Path(files["n2"]["long"]).touch()  # its next run kills the manager and runs long
        wait_until(lambda: not cluster.running(N1), timeout=10, interval=0.01)
        cluster.kill(N1)  # (reaped)
        assert cluster.wait_for_manager(timeout=15, names=[N2, N3]) == N3
        rows = wait_after_long(log, LONG_S)
        check_long_run_kept(rows, LONG_S, task_row(cluster.status(N3), "long-n2"))
