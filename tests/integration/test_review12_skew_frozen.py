"""A follower frozen longer than the offset window (clerk._clockskew.WINDOW_S, 5 s) does not
run the EXECUTEs that waited in its socket meanwhile (review12).

Its clock agrees with its manager's. On waking it reads the heartbeats queued during the
freeze before the EXECUTEs queued with them: if those stamps, every one as late as the
EXECUTE, make its offset estimate (its window's older stamps have expired), the estimate is
"6 s ahead", the EXECUTE's due time and deadline move 6 s later, and the stale run is taken
as on time and run 6 s late ("No run starts late")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import LedgerOnN1, LedgerOnN2, LedgerOnN3
from tests.integration.task_helpers import ledger_lines, task_row
from tests.integration.test_tasks_runtime import hold, more_rows

pytestmark = pytest.mark.timeout(120)

IV = 200


def test_a_follower_frozen_past_the_window_runs_no_late_execute(tmp_path: Path) -> None:
    classes = {"n1": LedgerOnN1, "n2": LedgerOnN2, "n3": LedgerOnN3}
    logs = {n: tmp_path / f"ledger-{n}" for n in classes}
    tasks = [clerk.task(cls, name=f"ledger-{n}", interval=IV, args={"log": str(logs[n])})
             for n, cls in classes.items()]
    with LocalCluster(3, tasks=tasks) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        follower = next(n for n in cluster.names if n != manager)
        short = follower.split("@")[0]
        log = logs[short]
        more_rows(log, 0, 3)
        seen = len(ledger_lines(log))
        wait_until(lambda: len(ledger_lines(log)) > seen, timeout=5, interval=0.002)
        wait_until(lambda: task_row(cluster.status(manager), f"ledger-{short}")["running"]
                   is None, timeout=5, interval=0.002)
        cluster.pause(follower)
        hold(6.5)  # past the 5 s window: its stamps from before the freeze expire
        cluster.resume(follower)
        more_rows(log, time.time(), 5, timeout=30)
        st = cluster.status(follower, timeout=5)
        rows = ledger_lines(log)
    late = [(r.slot, round(r.started - r.slot * IV / 1000, 3),
             round(r.due - r.slot * IV / 1000, 3))
            for r in rows if r.started - r.slot * IV / 1000 > IV / 1000 + 0.25]
    assert late == [], (f"runs started late (slot, s after the slot's due time, current_run()"
                        f".due - slot's due): {late}; clock: {st.get('clock')}")
