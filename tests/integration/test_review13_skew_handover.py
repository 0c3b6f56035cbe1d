"""review13: a
graceful hand-over to a node whose clock is ahead of the old manager's times out the run in
flight early and sends the next slot beside it, whose result then continues the old state (a
run's update lost). The table's run in flight carries the old manager's deadline (its time
base, plus TRANSIT_GRACE_MS, 1 s); the new manager, 4 s ahead, reads it on its own clock, so
a run with 3.5 s to go looks timed out at once. The skew work (clerk._clockskew) moves only
what a follower receives; a new manager has an estimate of the old one's clock until it
takes over (on_tick resets it before _take_over_step), but nothing moves the table's or the
members' OFFERed deadlines into its time base. With offset 0 the same steps pass (counts
1..5, no two runs at once). Now the new manager keeps how far it was ahead of the manager it
followed, and the table's runs in flight of another manager time out that much later
(clerk._adopt.Adoption.begin_activation's ``ahead_ms``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import SlowCounterOnN2
from tests.integration.task_helpers import counter_lines, task_row

pytestmark = pytest.mark.timeout(120)


def test_a_hand_over_to_a_node_ahead_keeps_the_run_in_flight(tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    task = clerk.task(SlowCounterOnN2, name="slow-skew", interval=200, timeout=4000,
                      args={"log": str(log), "sleep": 3.5})
    with LocalCluster(2, tasks=[task], start=False, workers=2,
                      node_env={"n2@127.0.0.1": {"CLERK_TEST_CLOCK_OFFSET_S": "4.0"}}) as c:
        c.start("n1@127.0.0.1")
        assert c.wait_for_manager(timeout=30, names=["n1@127.0.0.1"]) == "n1@127.0.0.1"
        c.start("n2@127.0.0.1")
        wait_until(lambda: len(counter_lines(log)) >= 1, timeout=40)
        n = log.read_text().count("start ")
        wait_until(lambda: log.read_text().count("start ") > n, timeout=10)
        c.stop("n1@127.0.0.1")  # a graceful hand-over to n2, its run in flight
        # skew2: n2's status shows that run's deadline in its own time base (its clock reads
        # 4 s more than time.time()), as it times it out, not the old manager's: 4 s earlier,
        # under 1 s to go where the hand-over follows the run's start closely, as here
        # (tests/unit/test_skew2_offered_ahead.py).
        def old_run() -> dict | None:
            st = c.status("n2@127.0.0.1", timeout=3)
            run = task_row(st, "slow-skew").get("running") if st.get("role") == "manager" \
                else None
            return run if run and run["claim"][1] == "n1@127.0.0.1" else None
        run = wait_until(old_run, timeout=10, interval=0.05)
        assert run is not None
        now_n2 = (time.time() + 4.0) * 1000
        assert run["deadline"] > now_n2 + 2000, (run["deadline"] - now_n2, run)
        wait_until(lambda: len(counter_lines(log)) >= 4, timeout=60)
        text = log.read_text()
        # (Judged here too, with the cluster up: a failure keeps the node logs. CI at
        # ce7dddf, loaded, counted [1, 2, 3, 3, 4]: a run started ~15 s after it was sent,
        # past its deadline, beside the next; not reproduced since, the logs were gone.)
        seen = [ln.count for ln in counter_lines(log)]
        assert seen == list(range(1, len(seen) + 1)), (seen, text)
    counts = [ln.count for ln in counter_lines(log)]
    assert counts == list(range(1, len(counts) + 1)), (counts, text)
    kinds = "".join("s" if ln.startswith("start") else "c" for ln in text.splitlines())
    assert "ss" not in kinds, f"a run started while another ran:\n{text}"
