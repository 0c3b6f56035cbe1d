"""Graceful leave (SIGTERM) on real node processes: a manager hands over with no gap in the
schedule, a follower leaves the member list, both exit 0 within a few seconds."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import adoptions, logged_since, wait_agreed
from tests.integration.cluster_tasks import Counter, Slow
from tests.integration.task_helpers import all_eligible, counter_lines

IV = 100  # ms: short, so a gap of even one slot in the hand-over would show


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_graceful_leave_of_the_manager_hands_over_without_a_gap(tmp_path: Path) -> None:
    log = tmp_path / "counter.log"
    task = clerk.task(Counter, name="c", interval=IV, args={"log": str(log)})
    with LocalCluster(3, tasks=[task]) as cluster:
        cluster.wait_for_manager(timeout=20)
        # A successor whose workers are still starting (a loaded machine), with no other
        # node ready, rightly skips slots until one is: not what this test is about.
        manager = all_eligible(cluster, "c")
        old_term = cluster.status(manager)["term"]
        before = wait_until(lambda: (r := counter_lines(log))[10:] and r, timeout=20)
        skipped = next(t for t in cluster.status(manager)["tasks"] if t["name"] == "c")[
            "runs"]["skipped"]
        t0 = time.monotonic()
        wall0 = time.time()
        assert cluster.stop(manager, timeout=15) == 0
        left_in = time.monotonic() - t0
        assert left_in < 5.0, f"the leaving manager took {left_in:.1f}s to exit"
        rest = [n for n in cluster.names if n != manager]
        new, term = wait_agreed(cluster, rest, timeout=10)
        assert new != manager and term > old_term
        # The followers were handed the manager's table: none of them went through an
        # election (no "manager lost") between the SIGTERM and the successor.
        for n in rest:
            changes = [(m, t) for ts, m, t in adoptions(cluster.log(n), n) if ts >= wall0 - 0.01]
            assert changes == [(new, term)], (n, changes)
            assert not logged_since(cluster.log(n), wall0 - 0.01, "manager lost"), n
        rows = wait_until(lambda: (r := counter_lines(log))[len(before) + 15:] and r,
                          timeout=20)
        # State survived: one count per run, none reset or repeated.
        assert [r.count for r in rows] == list(range(1, len(rows) + 1))
        status = cluster.status(new)
        row = next(t for t in status["tasks"] if t["name"] == "c")
        # From the last runs of the old manager on, no slot ran twice, and the hand-over
        # itself lost none: the successor's first run is the slot right after the old
        # manager's last one. (Slots before may be skipped while the cluster starts, and
        # under heavy load a run still in flight makes the next slot skipped, by design: any
        # other gap must be counted as skipped.)
        around = rows[len(before) - 5:]
        slots = [r.slot for r in around]
        shown = [(r.slot, r.term, r.node) for r in around[:15]]
        assert slots == sorted(set(slots)), f"a slot ran twice: {shown}"
        last_old = max(r.slot for r in around if r.term == old_term)
        first_new = min(r.slot for r in around if r.term == term)
        # The hand-over itself loses no slot: the successor's first run is the slot right
        # after the old manager's last one, unless a run between them was refused as stale by
        # its node (logged: on a loaded machine its EXECUTE took more than one interval to
        # arrive, CI at load ~10) and, while that run was in flight, the slot after it was
        # skipped (by design, counted): at most one skip per refused run.
        stale = {int(s) for n in cluster.names for s in re.findall(
            r"dropped a stale EXECUTE task=c slot=(\d+)", cluster.log(n))}
        missing = set(range(last_old + 1, first_new))
        refused = missing & stale
        assert len(missing - refused) <= min(len(refused), row["runs"]["skipped"] - skipped), \
            f"slots lost in the hand-over: {shown}, refused as stale: {sorted(stale)}"
        gaps = slots[-1] - slots[0] + 1 - len(slots) - len(
            stale & set(range(slots[0], slots[-1] + 1)))  # (a refused run is not skipped)
        assert gaps <= row["runs"]["skipped"] - skipped, f"uncounted gaps: {shown}, {row}"
        assert all(r.term == term for r in rows if r.started > wall0 + 1.0)
        assert row["runs"]["timeout"] == 0 and row["runs"]["error"] == 0, row
        assert manager not in {m["name"] for m in status["members"] if m["alive"]}


@pytest.mark.timeout(120)
def test_a_follower_that_did_not_run_during_the_leave_follows_without_an_election() -> None:
    """The hand-over test above failed once under load: a follower logged "manager lost".
    A follower whose loop does not run while its manager leaves (a loaded machine; here a
    SIGSTOP) then finds in one turn both the successor's COORDINATOR and the closed connection
    of the leaver. Connection events were handled before the mailbox, so it started an
    election (2 of 3 runs before); now the mailbox goes first and it simply follows. The
    pause must stay below the manager timeout (0.7 s: silence alone would rightly start an
    election), so a slow leave is tried again: one paused over 0.3 s (the follower's last
    heartbeat came up to a heartbeat interval before the pause, and a loaded machine wakes it
    late after it: CI at cf5ac39 logged "manager lost" after a 0.48 s pause, rightly)."""
    for _ in range(3):
        with LocalCluster(3) as cluster:
            manager = cluster.wait_for_manager(timeout=20)
            rest = [n for n in cluster.names if n != manager]
            follower = min(rest)
            wall0 = time.time()
            cluster.pause(follower)
            t0 = time.monotonic()
            try:
                assert cluster.stop(manager, timeout=15) == 0
            finally:
                paused = time.monotonic() - t0
                cluster.resume(follower)
            new, _ = wait_agreed(cluster, rest, timeout=10)
            assert new != manager
            if paused > 0.3:
                continue  # the leave took too long to tell anything: again
            assert not logged_since(cluster.log(follower), wall0 - 0.01, "manager lost"), (
                f"{follower} paused {paused:.2f}s during the leave")
            return
    pytest.skip("every graceful leave took over 0.3 s: the machine is too loaded to test this")


@pytest.mark.timeout(60)
def test_graceful_leave_of_a_follower_removes_it_at_once() -> None:
    with LocalCluster(3) as cluster:
        manager = cluster.wait_for_manager(timeout=20)
        term = cluster.status(manager)["term"]
        follower = next(n for n in cluster.names if n != manager)
        t0 = time.monotonic()
        assert cluster.stop(follower, timeout=15) == 0
        assert time.monotonic() - t0 < 5.0
        rest = [n for n in cluster.names if n != follower]

        def gone() -> bool:
            return all(v is not None and follower not in
                       {m["name"] for m in v["members"] if m["alive"]}
                       for v in cluster.views(rest).values())

        # Well before member_timeout (2 s) would drop a silent member.
        wait_until(gone, timeout=1.5, message=lambda: f"still listed: {cluster.views(rest)}")
        assert cluster.agreed(rest) == (manager, term), "a follower leaving changes nothing"


@pytest.mark.timeout(60)
def test_a_second_sigterm_exits_at_once_leaving_no_process(tmp_path: Path) -> None:
    """The first SIGTERM starts a graceful leave, which waits for the run in flight (a task
    that sleeps 600 s); the second one ends the node and all its processes at once."""
    log = tmp_path / "slow.log"
    task = clerk.task(Slow, name="slow", interval=100, timeout=300_000,
                      args={"log": str(log), "sleep": 600})
    with LocalCluster(1, tasks=[task]) as cluster:
        (name,) = cluster.names
        cluster.wait_for_manager(timeout=20)
        wait_until(log.exists, timeout=15, message="the slow task never started")
        pids = cluster.pids(name)
        assert len(pids) >= 3  # node, agent, worker (running the task)
        proc = cluster.procs[name]
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)  # still leaving: the run is in flight
        # Only the agent was asked to leave: the worker running the task was not signalled.
        assert all(psutil.pid_exists(p) for p in pids)
        assert "leaving the cluster" in cluster.log(name)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        assert time.monotonic() - t0 < 2.0
        assert code != 0
        wait_until(lambda: not [p for p in pids if psutil.pid_exists(p)
                                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE],
                   timeout=5, message="processes of the node outlived it")


@pytest.mark.timeout(150)
def test_a_successor_killed_before_it_takes_over_is_replaced_at_once() -> None:
    """The manager hands over to a successor that is frozen (SIGSTOP: the HANDOVER waits in
    its socket), which is then killed (SIGKILL: its connections close). The leaving manager
    hands over to the next member at once, which takes over without an election. Before, it
    waited out the 1 s hand-over timeout, and the member's manager timeout (0.7 s) ran out
    first: an election ("manager lost"), from its replica. A leave slower than 0.4 s from the
    SIGTERM to the kill tells nothing (the manager timeout may run out meanwhile): tried
    again."""
    for _ in range(3):
        with LocalCluster(3, priorities=[2, 1, 0]) as cluster:
            manager, _ = wait_agreed(cluster, cluster.names, timeout=20)
            prio = dict(zip(cluster.names, cluster.priorities, strict=True))
            successor, third = sorted((n for n in cluster.names if n != manager),
                                      key=lambda n: (prio[n], n), reverse=True)
            cluster.pause(successor)
            wall0 = time.time()
            t0 = time.monotonic()
            cluster.procs[manager].send_signal(signal.SIGTERM)
            wait_until(lambda: "leaving the cluster" in cluster.log(manager),  # noqa: B023
                       timeout=5, interval=0.005)
            cluster.kill(successor)
            killed_after = time.monotonic() - t0
            assert cluster.procs[manager].wait(timeout=15) == 0
            new, _ = wait_agreed(cluster, [third], timeout=10)
            assert new == third
            if killed_after > 0.4:
                continue  # too slow to tell anything: again
            stopped = logged_since(cluster.log(manager), wall0, "stopped: left")
            assert stopped and f"handed over to {third}" in stopped[-1], stopped
            assert not logged_since(cluster.log(third), wall0 - 0.01, "manager lost"), (
                f"{third} held an election: the leaving manager did not hand over at once "
                f"(killed {killed_after:.2f}s after the SIGTERM)")
            return
    pytest.skip("every leave took over 0.4 s before the kill: the machine is too loaded")
