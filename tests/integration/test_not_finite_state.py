"""A task whose ``execute`` returns a state holding NaN or Infinity fails that run with an
error naming the task and the field; the node (its agent's row encoders) keeps running, and
so do its other tasks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter, NotFinite
from tests.integration.task_helpers import all_eligible, counter_lines, task_row
from tests.integration.test_worker_pool_gone import _agent

pytestmark = pytest.mark.timeout(90)


def test_a_state_holding_nan_fails_its_run_and_the_node_carries_on(tmp_path: Path) -> None:
    log = tmp_path / "log"
    tasks = [clerk.task(Counter, name="count", interval=300, args={"log": str(log)}),
             clerk.task(NotFinite, name="nan", interval=200, args={"bad": "nan"}),
             clerk.task(NotFinite, name="inf", interval=200, args={"bad": "-inf"})]
    with LocalCluster(1, tasks=tasks, workers=2) as cluster:
        name, = cluster.names
        all_eligible(cluster, "count", timeout=30)
        agent = wait_until(lambda: _agent(cluster, name), timeout=10)
        assert isinstance(agent, psutil.Process)

        def failed(task: str) -> int:
            return int(task_row(cluster.status(name), task)["runs"]["error"])

        wait_until(lambda: failed("nan") >= 3 and failed("inf") >= 3, timeout=30,
                   message=lambda: cluster.log(name))
        start = time.time()
        wait_until(lambda: len([r for r in counter_lines(log) if r.started > start]) >= 5,
                   timeout=20, message=lambda: cluster.log(name))
        now = _agent(cluster, name)
        assert now is not None and now.pid == agent.pid, cluster.log(name)
        text = cluster.log(name)
        assert "Traceback" not in text, text
        for task, value in (("nan", "nan"), ("inf", "-inf")):
            row = task_row(cluster.status(name), task)
            assert row["runs"]["ok"] == 2, row
            history = cluster_history(cluster, name, task)
            errors = [h["error"] for h in history if h["outcome"] == "error"]
            assert errors and all(f"task {task!r}" in e and 'state["count"]' in e
                                  and f"float {value}" in e for e in errors), errors


def cluster_history(cluster: LocalCluster, name: str, task: str) -> list[dict[str, Any]]:
    from clerk._client import request_control

    return list(request_control([cluster.address(name)], "show", task,
                                keys=cluster.keys, timeout=5)["history"])
