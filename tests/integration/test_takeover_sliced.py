"""A crash takeover of a big table, activated in slices (``Scheduler.activate_step``) on a
real 3-node cluster: the run in flight on a surviving node is not lost (its RESULT, not
acknowledged while the new manager was not scheduling yet, is sent again and applied), and
its state goes on from where it was."""

from __future__ import annotations

from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import present
from tests.integration.cluster_tasks import Counter, SlowCounterOnN2, SlowCounterOnN3
from tests.integration.task_helpers import counter_lines, lines, task_row

pytestmark = pytest.mark.timeout(150)

#: Tasks besides the ones under test: a table whose activation takes many slices of the loop
#: (~0.4 ms each; 400 tasks are ~3-15 ms of activation on a loaded machine). Status is
#: polled slowly: on the manager it costs O(tasks) of its loop.
FILLERS = 400


def test_a_run_in_flight_survives_a_sliced_takeover_of_a_big_table(tmp_path: Path) -> None:
    # One slow counter pinned to n2, one to n3: whichever node the cluster makes its manager,
    # one of them runs on a node that survives the manager's kill.
    slow = {"n2": clerk.task(SlowCounterOnN2, name="c2", interval=400, timeout=20_000,
                             args={"log": str(tmp_path / "n2"), "sleep": 2.0}),
            "n3": clerk.task(SlowCounterOnN3, name="c3", interval=400, timeout=20_000,
                             args={"log": str(tmp_path / "n3"), "sleep": 2.0})}
    fillers = [clerk.task(Counter, name=f"f{i:04d}", interval=3_600_000, enabled=False,
                          args={"log": str(tmp_path / "fillers")}) for i in range(FILLERS)]
    with LocalCluster(3, tasks=[*slow.values(), *fillers]) as cluster:
        manager = cluster.wait_for_manager(timeout=60)
        pinned = next(n for n in ("n2", "n3") if not manager.startswith(n + "@"))
        task, log = slow[pinned].name, tmp_path / pinned

        def in_flight() -> dict | None:
            """A run of ``task`` that its node has started, after one that finished."""
            row = task_row(cluster.status(manager), task)
            run = row["running"]
            started = run and any(r[:2] == ["start", str(run["slot"])] for r in lines(log))
            return row if started and row["runs"]["ok"] >= 1 else None

        row = present(wait_until(in_flight, timeout=60, interval=0.2))
        slot, ok_before = row["running"]["slot"], row["runs"]["ok"]
        cluster.kill(manager)
        new = cluster.wait_for_manager(timeout=30)
        assert new != manager

        def applied() -> dict | None:
            r = task_row(cluster.status(new), task)
            return r if r["last_slot"] >= slot and r["runs"]["ok"] > ok_before else None

        row = present(wait_until(applied, timeout=30, interval=0.25,
                                 message=lambda: "the run in flight was lost\n"
                                 + "\n".join(cluster.log(n)[-3000:] for n in cluster.live())))
        assert row["runs"]["timeout"] == 0
        assert f"scheduling {FILLERS + 2} task(s) as manager (takeover)" in cluster.log(new)
        # Its state went on from where it was: no count repeated or lost.
        counts = [r.count for r in counter_lines(log)]
        assert counts == list(range(1, len(counts) + 1))
        assert any(r.slot == slot for r in counter_lines(log))
