"""A manager that took over moments ago leaves (SIGTERM) with a table over the 1 MiB limit.

No member has acknowledged a row of its new log yet, so its successor needs the whole table
(~2 MB here): one HANDOVER of it was over the limit, was never sent ("cannot send Handover ...
1,558,616 bytes" at the end of a ``test_members_big.py`` run), and the successor took over only
by the election that followed, with its replica, without the leaver's last updates. It now goes
in parts (clerk._handparts) and the successor takes over with all of it. Real nodes, real
sockets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import clerk
from clerk._client import request_control
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import logged_since, wait_agreed
from tests.integration.cluster_tasks import Counter

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TASKS = 5_000


def name(i: int) -> str:
    return f"myapp.tasks.reports.refresh_materialized_view_{i:05d}"


def test_a_manager_that_just_took_over_leaves_with_a_table_over_a_message(
        tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    tasks = [clerk.task(Counter, name=name(i), interval=3_600_000, args={"log": log})
             for i in range(TASKS)]
    with LocalCluster(3, tasks=tasks, data_dir=False) as cluster:
        first = cluster.wait_for_manager(timeout=90)
        rest = [n for n in cluster.names if n != first]
        # Every member holds the whole table (acknowledged its log) before the crash.
        wait_until(lambda: all(len(cluster.status(n, timeout=10)["tasks"]) == TASKS
                               for n in rest), timeout=90)
        cluster.kill(first)
        old, _ = wait_agreed(cluster, rest, timeout=30)
        succ = next(n for n in rest if n != old)
        task = name(4_321)
        request_control([cluster.address(old)], "pause", task, keys=cluster.keys, timeout=20)
        wall0 = time.time()
        assert cluster.stop(old, timeout=30) == 0
        log_old = cluster.log(old)
        assert "cannot send" not in log_old, log_old[-3000:]
        assert f"handed over to {succ}" in log_old, log_old[-3000:]
        wait_agreed(cluster, [succ], timeout=30)
        # It took over with the hand-over, not by an election after its manager went silent.
        assert not logged_since(cluster.log(succ), wall0, "manager lost"), \
            cluster.log(succ)[-3000:]
        row = request_control([cluster.address(succ)], "show", task, keys=cluster.keys,
                              timeout=20)
        assert row.get("paused"), (row, cluster.log(succ)[-3000:])
