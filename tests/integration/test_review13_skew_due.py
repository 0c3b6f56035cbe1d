"""review13: ``current_run().due`` on a node whose clock is off its manager's is the slot's
due time, the same whichever node runs it (README: "the natural end of the run's data
window: the same for every retry of the logic, whichever node runs it"; for a cron task
"that fire time"). The clock-skew work gave such a node the due time moved into its own time
base (the manager's plus the estimated offset): on a node 2 s behind, an hourly job's run due
at 03:00:00 read 02:59:58 (the previous hour), and the data windows of runs on nodes with
different offsets left gaps or overlapped; the moved value also changed with the estimate's
jitter from run to run. The node still holds the run to the moved time (it starts at due by
the manager's clock): only what the task is shown is the slot's time."""

from __future__ import annotations

from pathlib import Path

import pytest

import clerk
from clerk._calendar import phase_ms
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import OnTimeOnN2

pytestmark = pytest.mark.timeout(90)


def rows(path: Path) -> list[tuple[int, float, float]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        slot, _node, started, due = line.split()
        out.append((int(slot), float(started), float(due)))
    return out


@pytest.mark.parametrize("offset_s", [-2.0, 1.5])
def test_current_run_due_is_the_slots_time_on_a_node_whose_clock_is_off(
        tmp_path: Path, offset_s: float) -> None:
    log = tmp_path / "ontime.log"
    interval = 200
    task = clerk.task(OnTimeOnN2, name="skewed-due", interval=interval, timeout=2000,
                      args={"log": str(log)})
    with LocalCluster(2, tasks=[task], start=False,
                      node_env={"n2@127.0.0.1": {
                          "CLERK_TEST_CLOCK_OFFSET_S": str(offset_s)}}) as c:
        c.start("n1@127.0.0.1")
        assert c.wait_for_manager(timeout=30, names=["n1@127.0.0.1"]) == "n1@127.0.0.1"
        c.start("n2@127.0.0.1")
        got = wait_until(lambda: (r := rows(log))[9:] and r, timeout=40,
                         message=lambda: f"only {len(rows(log))} runs on n2")
        clock = c.status("n2@127.0.0.1", timeout=5)["clock"]
    assert clock["corrected"] is True, clock  # (the runs were held in the manager's time)
    phase = phase_ms("skewed-due", interval)
    wrong = [(slot, round(due * 1000 - (phase + slot * interval), 3))
             for slot, _, due in got if abs(due * 1000 - (phase + slot * interval)) > 0.01]
    assert wrong == [], f"current_run().due off the slot's time (slot, ms): {wrong[:5]}"
    # ... and each still started at or after its due time by the manager's clock (the
    # task's time.time() is not moved by the test hook: the manager's time base).
    early = [(slot, started - due) for slot, started, due in got if started < due]
    assert early == [], f"runs started before their due time: {early[:5]}"
