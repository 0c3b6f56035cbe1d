"""Review of the worker-pool escalation (branch workerfail) in quorum mode: the manager (a
voter) whose worker supervisor gives up leaves as on SIGTERM and its node starts a fresh agent.
No slot may run twice and no committed count may be lost across that (the ledger rules of
tests/integration/test_quorum_mode.py), another voter takes over, and the restarted voter
rejoins and runs slots again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import counter_lines
from tests.integration.test_quorum_mode import check_history
from tests.integration.test_worker_pool_gone import _agent, _kill_workers

pytestmark = pytest.mark.timeout(150)


def test_a_quorum_manager_whose_pool_is_gone_hands_over_and_no_slot_runs_twice(
        tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    task = clerk.task(Counter, name="c", interval=200, args={"log": str(log)})
    with LocalCluster(3, tasks=[task], voters=3) as cluster:
        manager = cluster.wait_for_manager(timeout=40)
        wait_until(lambda: len(counter_lines(log)) >= 5 and counter_lines(log), timeout=40,
                   message="no runs")
        agent = wait_until(lambda: _agent(cluster, manager), timeout=10)
        assert agent is not None
        old_pid = agent.pid
        killed: set[int] = set()

        def killed_until_the_agent_changes() -> bool:
            now = _agent(cluster, manager)
            if now is not None and now.pid != old_pid:
                return True
            _kill_workers(agent, killed)
            return False

        wait_until(killed_until_the_agent_changes, timeout=60, interval=0.01,
                   message=lambda: f"agent {old_pid} still there:\n{cluster.log(manager)}")
        restarted = time.time()
        assert "cannot run tasks any more" in cluster.log(manager)
        assert cluster.running(manager)
        # Another voter manages; the restarted one runs slots again.
        wait_until(lambda: any(r.node.startswith(manager) and r.started > restarted
                               for r in counter_lines(log)), timeout=60, interval=0.05,
                   message=lambda: f"no run on {manager} after its restart:\n"
                                   f"{cluster.log(manager)}")
        n = len(counter_lines(log))
        wait_until(lambda: len(counter_lines(log)) >= n + 10, timeout=30,
                   message="runs stopped")
        check_history(counter_lines(log))
