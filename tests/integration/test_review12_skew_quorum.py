"""Quorum mode with a node whose wall clock is 2 s behind its manager's (review12): the
EXECUTE's times are moved into its time base as in the default mode (clerk._clockskew), so
its runs start on time and never before due by the manager's clock."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import OnTimeOnN2
from tests.integration.test_clock_skew import rows

pytestmark = pytest.mark.timeout(120)

N2 = "n2@127.0.0.1"


def test_quorum_mode_runs_a_skewed_nodes_runs_on_time(tmp_path: Path) -> None:
    log = tmp_path / "ontime.log"
    offset_s = -2.0
    task = clerk.task(OnTimeOnN2, name="skewed", interval=200, timeout=2000,
                      args={"log": str(log)})
    with LocalCluster(3, tasks=[task], voters=3, start=False,
                      node_env={N2: {"CLERK_TEST_CLOCK_OFFSET_S": str(offset_s)}}) as c:
        c.start("n1@127.0.0.1")
        c.start("n3@127.0.0.1")  # a majority of the voters: one of them manages
        manager = c.wait_for_manager(timeout=30, names=["n1@127.0.0.1", "n3@127.0.0.1"])
        c.start(N2)
        got = wait_until(lambda: (r := rows(log))[19:] and r, timeout=40,
                         message=lambda: f"only {len(rows(log))} runs on n2; its status: "
                         f"{c.status(N2, timeout=2).get('stale')} stale")
        st = c.status(N2, timeout=5)
        manager_clock = c.status(manager, timeout=5)["clock"]
    # current_run().due is the slot's time as the manager sent it (review13), and the
    # task's time.time() is the manager's time base too (the hook does not move it).
    late = [started - due for _, _, started, due in got]
    assert [x for x in late if x < 0] == [], late
    assert statistics.median(late) < 0.05, late
    slots = [s for s, *_ in got]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert st["clock"]["corrected"] is True, st["clock"]
    # The manager's status has the same keys (README: offset_ms, manager, samples, window_s,
    # corrected), its offset null.
    assert set(manager_clock) == set(st["clock"]), (manager_clock, st["clock"])
    assert manager_clock["offset_ms"] is None, manager_clock
