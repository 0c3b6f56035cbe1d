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

N1, N2 = "n1@127.0.0.1", "n2@127.0.0.1"


def test_quorum_mode_runs_a_skewed_nodes_runs_on_time(tmp_path: Path) -> None:
    log = tmp_path / "ontime.log"
    offset_s = -2.0
    task = clerk.task(OnTimeOnN2, name="skewed", interval=200, timeout=2000,
                      args={"log": str(log)})
    with LocalCluster(3, tasks=[task], voters=3, priorities=[1, 0, 0],
                      node_env={N2: {"CLERK_TEST_CLOCK_OFFSET_S": str(offset_s)}}) as c:
        assert c.wait_for_manager(timeout=30) == N1
        got = wait_until(lambda: (r := rows(log))[19:] and r, timeout=40,
                         message=lambda: f"only {len(rows(log))} runs on n2; its status: "
                         f"{c.status(N2, timeout=2).get('stale')} stale")
        st = c.status(N2, timeout=5)
    late = [started - (due - offset_s) for _, _, started, due in got]
    assert [x for x in late if x < 0] == [], late
    assert statistics.median(late) < 0.05, late
    slots = [s for s, *_ in got]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert st["clock"]["corrected"] is True, st["clock"]
