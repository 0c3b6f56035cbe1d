"""State and the grid across a change of manager: kill -9 (crash takeover) and SIGTERM
(graceful hand-over), on a real 3-node cluster running a Counter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import clerk
from clerk._lead import MAX_DISPATCH_LEAD_MS
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import present
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import (
    CounterLine,
    all_eligible,
    counter_lines,
    due,
    task_row,
)

pytestmark = pytest.mark.timeout(90)


def replicated_slot(cluster: LocalCluster, name: str) -> int:
    return task_row(cluster.status(name), "c")["last_slot"]


def quiet_point(cluster: LocalCluster, manager: str, log: Path, iv: int) -> CounterLine:
    """Wait until the last run is replicated to every follower and the next slot is at least
    a third of an interval away: a moment when no run is in flight."""
    followers = [n for n in cluster.live() if n != manager]

    def ready() -> CounterLine | None:
        rows = counter_lines(log)
        if len(rows) < 5:
            return None
        last = rows[-1]
        if any(replicated_slot(cluster, f) != last.slot for f in followers):
            return None
        if due("c", iv, last.slot + 1) - time.time() < iv / 3000:
            return None
        return last if counter_lines(log)[-1] == last else None

    return present(wait_until(ready, timeout=20, interval=0.01))


def test_after_kill_9_of_the_manager_the_counter_continues(tmp_path: Path) -> None:
    log, iv = tmp_path / "log", 300
    t = clerk.task(Counter, name="c", interval=iv, args={"log": str(log)})
    with LocalCluster(3, tasks=[t]) as cluster:
        manager = all_eligible(cluster, "c")  # (see the hand-over test below)
        last = quiet_point(cluster, manager, log, iv)
        killed_at = time.time()
        cluster.kill(manager)
        killed_by = time.time()
        new = cluster.wait_for_manager(timeout=10)
        assert new != manager
        rows = wait_until(lambda: (r := counter_lines(log))[last.count + 4:] and r, timeout=20)
        slots = [r.slot for r in rows]
        assert slots == sorted(set(slots)), "no slot ran twice"
        # quiet_point aims the kill a third of an interval before the next slot, but a loaded
        # machine can be late for it: then the old manager may have sent that slot before it
        # died (dispatch_lead early, clerk._lead), and it runs, in the old term. Only a slot
        # due within MAX_DISPATCH_LEAD_MS of the kill can have left that early.
        late = due("c", iv, last.slot + 1) <= killed_by + MAX_DISPATCH_LEAD_MS / 1000
        after = rows[last.count:]
        sent = [r for r in after if r.term == last.term]
        assert not sent or (late and len(sent) == 1 and sent[0].slot == last.slot + 1), sent
        taken = after[len(sent):]  # the new manager's runs
        assert taken and min(r.term for r in taken) > last.term
        assert manager not in {r.node for r in taken}
        expected = list(range(1, len(rows) + 1))
        if sent and sent[0].node == manager and taken[0].count == sent[0].count:
            # It ran on the dying manager itself, whose result died with it unreplicated: the
            # README's "a manager crash inside that short window can lose that one update".
            expected = [*range(1, sent[0].count + 1),
                        *range(sent[0].count, sent[0].count + len(taken))]
        assert [r.count for r in rows] == expected, "no reset, no repeat"
        # Only the slots inside the failover window are skipped (under a second here).
        assert taken[0].slot - (sent or [last])[-1].slot - 1 <= int(1500 / iv)
        assert taken[0].started - killed_at < 2.0
        row = task_row(cluster.status(new), "c")
        # (a run in flight on the dead manager's own node is failed at once: "lost")
        assert row["runs"]["ok"] >= len(rows) - 1 - late and row["runs"]["timeout"] <= late


def test_after_a_graceful_hand_over_no_slot_is_missed(tmp_path: Path) -> None:
    log, iv = tmp_path / "log", 200
    t = clerk.task(Counter, name="c", interval=iv, args={"log": str(log)})
    with LocalCluster(3, tasks=[t]) as cluster:
        # Every node's workers ready first (under load they start in seconds): else the
        # successor and the third node may have none yet, and the slots are rightly skipped.
        manager = all_eligible(cluster, "c")
        before = wait_until(lambda: (r := counter_lines(log))[5:] and r, timeout=20)
        skipped = task_row(cluster.status(manager), "c")["runs"]["skipped"]
        assert cluster.stop(manager) == 0
        new = cluster.wait_for_manager(timeout=10)
        assert new != manager
        rows = wait_until(lambda: (r := counter_lines(log))[len(before) + 8:] and r,
                          timeout=20)
        assert [r.count for r in rows] == list(range(1, len(rows) + 1)), "no state lost"
        # From the old manager's last run seen before the stop on, every slot ran exactly
        # once (and none was skipped: below). Not from runs before it: a slot the old manager
        # skipped then (its previous run's result late on a loaded machine: the overlap rule)
        # is counted in ``skipped`` above, not the hand-over's doing (the clean-clone CI at
        # c88cca1: slot ...559 skipped 0.6 s before the stop, while n3 still managed).
        around = rows[len(before) - 1:]
        slots = [r.slot for r in around]
        assert slots == list(range(slots[0], slots[0] + len(slots))), "no slot missed or doubled"
        assert around[0].term < around[-1].term
        row = task_row(cluster.status(new), "c")
        assert row["runs"]["skipped"] == skipped and row["runs"]["timeout"] == 0


def test_a_leaving_managers_own_run_in_flight_reports_to_its_successor(tmp_path: Path) -> None:
    from tests.integration.cluster_tasks import SlowOnN1
    from tests.integration.task_helpers import lines

    log = tmp_path / "log"
    t = clerk.task(SlowOnN1, name="c", interval=300, timeout=10_000,
                   args={"log": str(log), "sleep": 1.0})
    with LocalCluster(3, tasks=[t], start=False) as cluster:
        n1 = cluster.names[0]
        cluster.start(n1)
        cluster.wait_for_manager(timeout=15, names=[n1])
        for name in cluster.names[1:]:
            cluster.start(name)
        assert cluster.wait_for_manager(timeout=15) == n1

        def running() -> dict | None:
            row = task_row(cluster.status(n1), "c")
            run = row["running"]
            started = run and any(r[1] == str(run["slot"]) for r in lines(log))
            return row if started else None

        row = present(wait_until(running, timeout=20, interval=0.05))
        slot, ok_before = row["running"]["slot"], row["runs"]["ok"]
        assert cluster.stop(n1) == 0  # waits for its run, then hands the result on
        new = cluster.wait_for_manager(timeout=10)

        def counted() -> dict | None:
            r = task_row(cluster.status(new), "c")
            return r if r["runs"]["ok"] > ok_before else None

        row = present(wait_until(counted, timeout=10, message=lambda: "the run in flight was "
                                 "lost\n" + "\n".join(cluster.log(n)[-3000:]
                                                      for n in cluster.names)))
        assert row["runs"]["timeout"] == 0 and row["last_slot"] >= slot
