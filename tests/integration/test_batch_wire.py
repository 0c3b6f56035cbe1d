"""Batches (clerk._batch) on a real 3-node cluster with CURVE: what one loop turn sends to one
peer goes as one ZeroMQ message, every message still arrives (each slot runs once, counters
never skip or repeat), and nothing is dropped as malformed."""

from __future__ import annotations

from pathlib import Path

import pytest

import clerk
from clerk._batch import BATCH_MARK
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import counter_lines

pytestmark = pytest.mark.timeout(90)

TASKS = 12
IV = 100  # ms


def test_a_turn_sends_one_message_per_peer_and_every_run_counts(tmp_path: Path) -> None:
    logs = [tmp_path / f"t{i}.log" for i in range(TASKS)]
    tasks = [clerk.task(Counter, name=f"t{i}", interval=IV, args={"log": str(log)})
             for i, log in enumerate(logs)]
    with LocalCluster(3, tasks=tasks) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        followers = [n for n in cluster.names if n != manager]

        def batched() -> bool:
            sent = cluster.status(manager)["transport"].get("batches_sent", 0)
            got = sum(cluster.status(n)["transport"].get("batches_received", 0)
                      for n in followers)
            return sent >= 5 and got >= 5

        wait_until(batched, timeout=30, message=lambda: str({
            n: cluster.status(n)["transport"] for n in cluster.names}))
        wait_until(lambda: all(len(counter_lines(log)) >= 20 for log in logs), timeout=30)
        for n in cluster.names:
            st = cluster.status(n)
            assert st["incarnation"].endswith(BATCH_MARK)
            assert st["bad_frames"] == {}, (n, st["bad_frames"])
            t = st["transport"]
            # Fewer ZeroMQ sends than protocol messages (the envelope is what batches them).
            assert t["messages_sent"] >= t.get("batches_sent", 0) * 2
        mt = cluster.status(manager)["transport"]
        assert mt["sent"] < mt["messages_sent"], mt
    for log in logs:
        rows = counter_lines(log)
        slots = [r.slot for r in rows]
        assert len(slots) == len(set(slots)), f"{log.name}: a slot ran twice"
        assert [r.count for r in rows] == list(range(1, len(rows) + 1)), log.name
