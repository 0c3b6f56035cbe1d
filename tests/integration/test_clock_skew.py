"""A node whose wall clock is 2 s behind, or 1.5 s ahead of, its manager's (clerk._clockskew),
on real processes: the test-only ``CLERK_TEST_CLOCK_OFFSET_S`` moves n2's wall clock (its
agent's and its workers'). Before the offset estimate n2 refused every EXECUTE, 2 s behind as
"arrived 2000 ms before its due time" (more than EARLY_LIMIT_MS), 1.5 s ahead as stale (more
than an interval after its slot was due), so a task only n2 may run never ran. Now n2
estimates its offset from the manager's heartbeat stamps, shows it (status ``clock``, the
``clerk_node_clock_offset_seconds`` gauge, a WARNING), and holds each run until its due time
in the manager's time base: it starts on time, never before due by the manager's clock."""

from __future__ import annotations

import re
import statistics
import urllib.request
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import OnTimeOnN2
from tests.integration.test_tasks_ontime import rows

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("offset_s", [-2.0, 1.5])
def test_a_node_whose_clock_is_off_runs_its_runs_on_time(tmp_path: Path,
                                                         offset_s: float) -> None:
    """-2 s: refused as early before (more than 1 s ahead of its clock); +1.5 s: refused as
    stale before (more than an interval, 200 ms, past due by its clock)."""
    log = tmp_path / "ontime.log"
    task = clerk.task(OnTimeOnN2, name="skewed", interval=200, timeout=2000,
                      args={"log": str(log)})
    with LocalCluster(2, tasks=[task], metrics=True, start=False,
                      node_env={"n2@127.0.0.1": {
                          "CLERK_TEST_CLOCK_OFFSET_S": str(offset_s)}}) as c:
        c.start("n1@127.0.0.1")  # the manager: n2 joins it
        assert c.wait_for_manager(timeout=30, names=["n1@127.0.0.1"]) == "n1@127.0.0.1"
        c.start("n2@127.0.0.1")
        got = wait_until(lambda: (r := rows(log))[19:] and r, timeout=40,
                         message=lambda: f"only {len(rows(log))} runs on n2; its status: "
                         f"{c.status('n2@127.0.0.1', timeout=2).get('stale')} stale")
        st = c.status("n2@127.0.0.1", timeout=5)
        with urllib.request.urlopen(c.metrics_url("n2@127.0.0.1"), timeout=5) as resp:
            scrape = resp.read().decode()
        manager = c.status("n1@127.0.0.1", timeout=5)
        manager_clock, member_clocks = manager["clock"], manager.get("member_clocks", {})
        n2_log = c.log("n2@127.0.0.1")
    # The task reads time.time(), which the hook does not move: the manager's time base.
    # current_run().due is the slot's time as the manager sent it (review13:
    # tests/integration/test_review13_skew_due.py), the manager's time base too.
    late = [started - due for _, _, started, due in got]
    early = [x for x in late if x < 0]
    assert early == [], f"runs started before their due time (manager's clock): {early[:5]}"
    assert statistics.median(late) < 0.05, f"runs late: median {statistics.median(late):.4f} s"
    slots = [s for s, *_ in got]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    clock = st["clock"]
    assert clock["manager"] == "n1@127.0.0.1" and clock["corrected"] is True, clock
    assert clock["judged_by"] == "manager", clock
    # None judged by n2's own clock for want of an estimate (its first stamped heartbeat
    # came before its first EXECUTE: stale == 0 below says the same, -2 s refused as early).
    assert clock["unestimated_runs"] == 0, clock
    assert abs(clock["offset_ms"] - offset_s * 1000) < 50, clock
    assert clock["offset_ms"] >= offset_s * 1000 - 1, clock  # the estimate errs upwards only
    assert st["stale"] == 0, st["stale"]
    gauge = [ln for ln in scrape.splitlines() if ln.startswith("clerk_node_clock_offset_seconds")]
    assert gauge and abs(float(gauge[0].split()[-1]) - offset_s) < 0.05, gauge
    assert manager_clock["offset_ms"] is None, manager_clock
    assert manager_clock["judged_by"] == "own (manager)", manager_clock
    assert abs(member_clocks["n2@127.0.0.1"] - offset_s * 1000) < 50, member_clocks
    warned = re.findall(r"WARNING this node's wall clock is ([-+]?\d+) ms from its manager "
                        r"n1@127.0.0.1", n2_log)
    assert warned and abs(int(warned[0]) - offset_s * 1000) < 50, warned or n2_log[-2000:]
