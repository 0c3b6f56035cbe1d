"""A node whose agent keeps crashing gives up by its own supervisor's restart intensity (more
than 3 agent restarts in 10 s) and exits 1, as the README says ("its agent kept crashing").

Since smalls7 test_worker_pool_gone's node-level case ends sooner (its workers killed before
their READY: EXIT_CANNOT_START, not retried) and accepts either ending, so nothing else drove
the node to its intensity any more: here each agent is SIGKILLed as soon as it appears."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter
from tests.integration.test_worker_pool_gone import _agent

pytestmark = pytest.mark.timeout(120)


def test_a_node_whose_agent_keeps_crashing_gives_up_by_its_intensity(tmp_path: Path) -> None:
    t = clerk.task(Counter, name="count", interval=500, args={"log": str(tmp_path / "log")})
    with LocalCluster(1, tasks=[t], data_dir=False) as cluster:
        name = cluster.names[0]
        cluster.wait_for_manager(timeout=30)
        killed: set[int] = set()

        def node_ended() -> bool:
            if not cluster.running(name):
                return True
            agent = _agent(cluster, name)
            if agent is not None and agent.pid not in killed:
                killed.add(agent.pid)
                try:
                    agent.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass
            return False

        wait_until(node_ended, timeout=90, interval=0.01,
                   message=lambda: f"node still up after {len(killed)} agents killed")
        assert cluster.procs[name].returncode == 1
        text = cluster.log(name)
        assert ("node gave up: reached_max_restart_intensity (child 'agent': signal SIGKILL)"
                in text), text
        assert text.count("restarted child 'agent'") == 3, text
        assert len(killed) == 4, killed
