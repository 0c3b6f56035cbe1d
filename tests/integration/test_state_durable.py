"""Task state outlives nodes: data directories, full-cluster restarts, lineage after a merge.

Real node processes (LocalCluster) and a Counter task whose state counts its runs; every run
appends ``task slot term node count time`` to a ledger file, which is the history checked here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import clerk
from clerk.testing import LocalCluster, free_ports, wait_until
from tests.integration.cluster_helpers import present, recorded_members
from tests.integration.cluster_tasks import (
    Counter,
    HeldCounterOnN1,
    HeldCounterOnN2,
    SlowCounterOnN1,
)
from tests.integration.task_helpers import CounterLine, counter_lines, lines, task_row

pytestmark = pytest.mark.timeout(120)


def _ledger(tmp_path: Path) -> tuple[Path, list[clerk.TaskDef]]:
    log = tmp_path / "ledger.log"
    return log, [clerk.task(Counter, name="ledger", interval=200, args={"log": str(log)})]


def _count_at_least(log: Path, n: int, after: float = 0.0) -> list[CounterLine]:
    def counted() -> list[CounterLine] | None:
        ls = [x for x in counter_lines(log) if x.started > after]
        return ls if ls and ls[-1].count >= n else None

    return present(wait_until(counted, timeout=30,
                              message=lambda: f"ledger stuck: {counter_lines(log)[-3:]}"))



#: How long a held run (cluster_tasks.HeldCounterOnN1) waits for its hold at most: below the
#: tasks' 10 s timeout, so a test that fails to release it still ends with a counted run.
HOLD_MAX_S = 8.0


def _held(log: Path, hold: Path, cls: type[HeldCounterOnN1]) -> list[clerk.TaskDef]:
    """The ledger task for the in-flight races: each run held in flight while ``hold`` exists
    (a run takes no time otherwise), a run at most every 1 s (one run at a time: no slot
    starts while the held run is in flight)."""
    return [clerk.task(cls, name="ledger", interval=1000, timeout=10_000,
                       args={"log": str(log), "hold": str(hold), "max_s": HOLD_MAX_S})]


def _run_in_flight_on_n3_managed(cluster: LocalCluster, log: Path,
                                 hold: Path | None = None) -> str:
    """Start n3 first (the manager; n2 its successor), then n1 and n2; wait for a first count
    and then for a run in flight (with ``hold``: create it first, and wait for a run held by
    it); return its slot."""
    n1, n2, n3 = cluster.names
    cluster.start(n3)
    assert cluster.wait_for_manager(timeout=15) == n3
    cluster.start(n1)
    cluster.start(n2)
    _count_at_least(log, 1)
    if hold is not None:
        hold.touch()
    # A run whose start line comes after this count looked for the hold after it existed.
    held_from = len(_starts(log)) if hold is not None else 0
    return present(wait_until(lambda: _in_flight(log) if len(_starts(log)) > held_from
                              else None, timeout=15, interval=0.01))


def _starts(log: Path) -> list[str]:
    return [ln[1] for ln in lines(log) if ln[0] == "start"]


def _in_flight(log: Path) -> str | None:
    """The slot of the last run started and not yet counted, if any."""
    starts = _starts(log)
    done = {str(x.slot) for x in counter_lines(log)}
    return starts[-1] if starts and starts[-1] not in done else None


def _row(cluster: LocalCluster) -> dict:
    return task_row(cluster.status(), "ledger")


def test_a_node_restarted_alone_continues_its_lineage_from_disk(tmp_path: Path) -> None:
    log, tasks = _ledger(tmp_path)
    with LocalCluster(1, tasks) as cluster:
        (n1,) = cluster.names
        _count_at_least(log, 4)
        origin = wait_until(lambda: _row(cluster)["lineage"], timeout=5)
        cluster.restart(n1)  # kill -9, then a new incarnation on the same directory
        restarted = time.time()
        before = [x for x in counter_lines(log) if x.started < restarted]
        after = _count_at_least(log, before[-1].count + 1, after=restarted)
        # At most the last coalesced update lost (kill -9), never the lineage.
        assert after[0].count in (before[-1].count, before[-1].count + 1), (before, after)
        assert _row(cluster)["lineage"] == origin
        assert "task state(s) read" in cluster.log(n1)


def test_full_cluster_sigterm_then_start_continues_every_counter_exactly(
        tmp_path: Path) -> None:
    log, tasks = _ledger(tmp_path)
    with LocalCluster(3, tasks) as cluster:
        cluster.wait_for_manager(timeout=15)
        _count_at_least(log, 5)
        origin = _row(cluster)["lineage"]
        codes = cluster.stop_all()
        assert set(codes.values()) == {0}, codes
        stopped = time.time()
        before = counter_lines(log)
        cluster.start_all()
        cluster.wait_for_manager(timeout=15)
        after = _count_at_least(log, before[-1].count + 2, after=stopped)
        assert after[0].count == before[-1].count + 1, (before[-3:], after[:3])
        row = _row(cluster)
        assert row["lineage"] == origin and row["conflicts"] == 0


def test_a_full_restart_where_a_node_with_an_older_copy_starts_alone_first_repeats_no_count(
        tmp_path: Path) -> None:
    """The full-restart race made deterministic. A member stops first (its data directory
    then holds an older copy of the table: the cluster runs on), then the rest; the member
    with the old copy is started first, alone, and the others only 2 s later (4 join
    timeouts). Before the restart rule it found no seed within ``join_timeout``, won an
    election of one and ran from its old copy: counts the cluster had already produced came
    again. Now it waits for the members its data directory recorded (``rejoin_timeout``),
    and the cluster continues from the newest copy, exactly."""
    log, tasks = _ledger(tmp_path)
    with LocalCluster(3, tasks) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        early = next(n for n in cluster.names if n != manager)
        _count_at_least(log, 3)
        origin = _row(cluster)["lineage"]
        assert cluster.stop(early) == 0
        left = counter_lines(log)[-1].count
        _count_at_least(log, left + 3)  # the others run on: the early one's copy is older
        codes = cluster.stop_all()
        assert set(codes.values()) == {0}, codes
        stopped = time.time()
        before = counter_lines(log)
        cluster.start(early)
        wait_until(lambda: "listening on" in cluster.log(early), timeout=15)
        alone = time.monotonic()
        # Long enough for a node that runs alone to run (join timeout + an election + a
        # slot): on a build without the rule its first count is already in the ledger.
        wait_until(lambda: time.monotonic() > alone + 2.0
                   or [x for x in counter_lines(log) if x.started > stopped], timeout=10)
        for name in cluster.names:
            if name != early:
                cluster.start(name)
        cluster.wait_for_manager(timeout=15)
        after = _count_at_least(log, before[-1].count + 3, after=stopped)
        assert after[0].count == before[-1].count + 1, (before[-3:], after[:3])
        counts = [x.count for x in counter_lines(log)]
        assert len(counts) == len(set(counts)), "a count was repeated"
        row = _row(cluster)
        assert row["lineage"] == origin and row["conflicts"] == 0
        assert "waiting up to" in cluster.log(early)


def test_a_node_restarted_without_its_members_runs_alone_after_the_rejoin_timeout(
        tmp_path: Path) -> None:
    """After a power cut only one node comes back (the others are gone for good): it waits
    ``rejoin_timeout`` (5 s) for the members its data directory recorded, then runs alone
    from its own copy: a bounded wait, not a node that never runs."""
    log, tasks = _ledger(tmp_path)
    with LocalCluster(3, tasks) as cluster:
        cluster.wait_for_manager(timeout=15)
        _count_at_least(log, 3)
        lone = cluster.names[0]
        # The kill must come after the lone node knew both others (else it rightly records
        # fewer): its directory records them once its list has them, a row changed or not.
        peek = tmp_path / "peek"
        wait_until(lambda: len(recorded_members(cluster, lone, peek)) == 2, timeout=15,
                   message=lambda: f"{lone} recorded {recorded_members(cluster, lone, peek)}")
        cluster.kill_all()
        killed = time.time()
        before = counter_lines(log)
        started = time.time()
        cluster.start(lone)
        after = _count_at_least(log, before[-1].count + 1, after=killed)
        assert after[0].started - started >= 5.0, "ran before the rejoin timeout"
        assert after[0].count in (before[-1].count, before[-1].count + 1), (before[-3:],
                                                                            after[:3])
        assert "recorded 2 other member(s)" in cluster.log(lone)


def test_a_full_stop_keeps_the_update_of_a_run_in_flight_on_a_member(tmp_path: Path) -> None:
    """The full-stop race of the dispatch lead, made deterministic: a run sent just before the
    SIGTERMs is in flight on a member when its manager stops. Here n1's run is held in flight
    (cluster_tasks.HeldCounterOnN1), n1 and n2 get SIGTERM, and the manager n3 only once it
    has seen both leave: it stops with no successor. Once n3 is leaving, n1 finishes the run
    (leaving itself) and sends the result; n3 must wait for it and write it into its table,
    its last (``TaskRunner.ready_to_leave``: runs in flight elsewhere), or the count repeats
    after the restart. Three things each lost the update: n3 failed the run when n1's LEAVE
    came (``MemberDown("left")``), did not wait for it, or (its core stopped) dropped the
    RESULT."""
    log, hold = tmp_path / "ledger.log", tmp_path / "hold"
    with LocalCluster(3, _held(log, hold, HeldCounterOnN1), start=False) as cluster:
        n1, n2, n3 = cluster.names
        slot = _run_in_flight_on_n3_managed(cluster, log, hold)
        stopping = time.time()
        for name in (n1, n2):
            cluster.procs[name].send_signal(signal.SIGTERM)
        wait_until(lambda: all(f"member {n} down (left)" in cluster.log(n3) for n in (n1, n2)),
                   timeout=10, message=lambda: cluster.log(n3)[-2000:])
        assert _in_flight(log) == slot, "the run ended before the manager's stop: no race"
        cluster.procs[n3].send_signal(signal.SIGTERM)
        wait_until(lambda: "leaving the cluster" in cluster.log(n3), timeout=10, interval=0.01)
        hold.unlink()  # n1's run ends now, while n3 stops
        assert cluster.procs[n3].wait(timeout=20) == 0
        assert [cluster.procs[n].wait(timeout=20) for n in (n1, n2)] == [0, 0]
        stopped = time.time()
        before = counter_lines(log)
        last = before[-1]
        # n1 finished the run while leaving, after the stop began.
        assert str(last.slot) == slot and last.started > stopping, (slot, stopping, before[-2:])
        cluster.start_all()
        cluster.wait_for_manager(timeout=15)
        after = _count_at_least(log, last.count + 1, after=stopped)
        assert after[0].count == last.count + 1, ("the in-flight run's update was lost",
                                                  before[-3:], after[:3])


def test_a_manager_stopped_before_its_successor_confirmed_passes_on_what_it_applied(
        tmp_path: Path) -> None:
    """The simulator's full-restart counterexample, made deterministic. n1 runs a slow task
    (4 s) and leaves while it runs: its result goes to the manager n3. n3 leaves too, but its
    successor n2 is frozen (SIGSTOP) until n3's ``handover_timeout`` (1 s) has passed: n3's
    core stopped unconfirmed then (now it hands over to n2 again, n2 takes over when it
    resumes and confirms; unconfirmed only after ``LEAVE_PICKS`` hand-overs), n3 waits for
    n1's run and applies the result to its own last table. Before, that count was then only on
    n3's disk: n2 took over without it and, as it recorded no member, a restart without n3
    repeated the count. The stopped manager now sends what it applied to the member it handed
    over to (which adopted the run with the table), and the restart continues exactly."""
    log = tmp_path / "ledger.log"
    tasks = [clerk.task(SlowCounterOnN1, name="ledger", interval=6000, timeout=10_000,
                        args={"log": str(log), "sleep": 4.0})]
    with LocalCluster(3, tasks, start=False) as cluster:
        n1, n2, n3 = cluster.names
        slot = _run_in_flight_on_n3_managed(cluster, log)
        cluster.procs[n1].send_signal(signal.SIGTERM)
        wait_until(lambda: f"member {n1} down (left)" in cluster.log(n3), timeout=10,
                   message=lambda: cluster.log(n3)[-2000:])
        cluster.pause(n2)
        try:
            cluster.procs[n3].send_signal(signal.SIGTERM)
            wait_until(lambda: "leaving the cluster" in cluster.log(n3), timeout=10,
                       interval=0.01)
            leaving = time.monotonic()
            # n3's hand-over times out after 1 s; n2 must not be frozen much longer than 2 s
            # (ZeroMQ's heartbeats would drop its connections).
            wait_until(lambda: time.monotonic() > leaving + 1.3, timeout=5, interval=0.01)
        finally:
            cluster.resume(n2)
        assert _in_flight(log) == slot, "the run ended before n2 resumed: no race"
        assert cluster.procs[n3].wait(timeout=20) == 0
        assert cluster.procs[n1].wait(timeout=20) == 0
        # (Stopped unconfirmed, or confirmed by n2 once it ran again, or with n2's connection
        # closed under it, by timing: the count must reach n2 whichever.)
        assert f"{n3} stopped: left" in cluster.log(n3), cluster.log(n3)[-2000:]
        last = counter_lines(log)[-1]
        assert str(last.slot) == slot, (slot, counter_lines(log)[-2:])
        # n2 took over with n3's hand-over, alone (nobody else may run the task).
        wait_until(lambda: cluster.status(n2).get("role") == "manager", timeout=15)
        assert cluster.stop(n2) == 0
        stopped = time.time()
        cluster.start(n1)  # n3 (whose disk holds the count) comes back only later
        cluster.start(n2)
        after = _count_at_least(log, last.count + 1, after=stopped)
        assert after[0].count == last.count + 1, ("a count repeated after the restart",
                                                  last, after[:3])
        cluster.start(n3)
        cluster.wait_for_manager(timeout=15)


def test_a_successor_asked_to_stop_as_it_takes_over_keeps_the_update_of_its_run(
        tmp_path: Path) -> None:
    """The count-8-repeated full restart, on real processes. n2's run is held in flight
    (cluster_tasks.HeldCounterOnN2) until n2 is leaving; n1 leaves; n2 is frozen while
    its manager n3 leaves and hands it the table (the run in flight with it); n2 runs again
    with its own stop request on its way (the node process passes SIGTERM on within 0.2 s:
    the hand-over can come first). If n2 reads the hand-over first, it is asked to leave
    while it takes over: it must finish that and leave as a manager that drains, with the
    run's result in its table. It left before its scheduler ran: the count was on no disk
    (n3, confirmed, did not wait for a run on a listed member) and the restart repeated it.
    Whichever it reads first, the count must continue."""
    log, hold = tmp_path / "ledger.log", tmp_path / "hold"
    with LocalCluster(3, _held(log, hold, HeldCounterOnN2), start=False) as cluster:
        n1, n2, n3 = cluster.names
        slot = _run_in_flight_on_n3_managed(cluster, log, hold)
        cluster.procs[n1].send_signal(signal.SIGTERM)
        wait_until(lambda: f"member {n1} down (left)" in cluster.log(n3), timeout=10,
                   message=lambda: cluster.log(n3)[-2000:])
        agent = next(c.pid for c in psutil.Process(cluster.procs[n2].pid).children()
                     if any("_boot.py" in a for a in c.cmdline()))  # (supervisor's child)
        cluster.pause(n2)
        try:
            cluster.procs[n3].send_signal(signal.SIGTERM)
            wait_until(lambda: "leaving the cluster" in cluster.log(n3), timeout=10,
                       interval=0.01)
        finally:
            cluster.resume(n2)
            os.kill(agent, signal.SIGTERM)  # the agent's own stop request, at once
        # n2 acts on its stop request (at once, or once it finished taking over): its run ends
        # then. (Not later: n3, if n2's LEAVE came before it could hand over, waits for it.)
        wait_until(lambda: "leaving the cluster" in cluster.log(n2), timeout=15, interval=0.01)
        hold.unlink()
        assert [cluster.procs[n].wait(timeout=30) for n in (n1, n3)] == [0, 0]
        # (n2's node process exits 1: its agent left on a signal the node process did not
        # get, which it reports as the agent stopping on its own.)
        cluster.procs[n2].wait(timeout=30)
        assert f"{n2} stopped: left" in cluster.log(n2), cluster.log(n2)[-2000:]
        stopped = time.time()
        last = counter_lines(log)[-1]
        assert str(last.slot) == slot, ("the run in flight did not finish", slot, last)
        cluster.start_all()
        cluster.wait_for_manager(timeout=15)
        after = _count_at_least(log, last.count + 1, after=stopped)
        assert after[0].count == last.count + 1, ("the in-flight run's update was lost",
                                                  counter_lines(log)[-4:], after[:3])


def test_full_cluster_sigkill_then_start_loses_at_most_the_last_update(tmp_path: Path) -> None:
    log, tasks = _ledger(tmp_path)
    with LocalCluster(3, tasks) as cluster:
        cluster.wait_for_manager(timeout=15)
        _count_at_least(log, 5)
        origin = _row(cluster)["lineage"]
        cluster.kill_all()
        killed = time.time()
        before = counter_lines(log)
        for name in cluster.names:  # the updates since each node's first write: its journal
            data = cluster.data_path(name)
            assert data is not None and list(data.glob("tasks.*.journal")), name
        cluster.start_all()
        cluster.wait_for_manager(timeout=15)
        after = _count_at_least(log, before[-1].count + 1, after=killed)
        assert after[0].count in (before[-1].count, before[-1].count + 1), (
            before[-3:], after[:3])
        assert _row(cluster)["lineage"] == origin


def test_a_cut_off_nodes_fresh_init_never_wins_over_the_clusters_older_lineage(
        tmp_path: Path) -> None:
    log, tasks = _ledger(tmp_path)
    with LocalCluster(4, tasks, start=False) as cluster:
        main, (lone,) = cluster.names[:3], cluster.names[3:]
        for name in main:
            cluster.start(name, seeds=[cluster.address(o) for o in main if o != name])
        cluster.wait_for_manager(timeout=15, names=main)
        _count_at_least(log, 3)
        origin = _row(cluster)["lineage"]
        # The lone node knows no seed: it runs alone, calls init (a younger lineage) and
        # makes more runs than it would need to win on run count alone.
        cluster.start(lone, seeds=[])
        def lone_ran() -> list[CounterLine] | None:
            ls = [x for x in counter_lines(log) if x.node == lone]
            return ls if len(ls) >= 8 else None

        lone_lines = present(wait_until(lone_ran, timeout=30, message="the lone node never ran"))
        assert lone_lines[0].count == 1, "the lone node called init"
        assert cluster.stop(lone) == 0  # its rows are on its disk now
        # Runs may finish between the count above and the stop: count again.
        lone_lines = [x for x in counter_lines(log) if x.node == lone]
        cluster.start(lone)  # this time with every other node as a seed
        merged = time.time()
        cluster.wait_for_manager(timeout=15)
        wait_until(lambda: _row(cluster)["conflicts"] >= len(lone_lines), timeout=15,
                   message=lambda: f"no conflict counted: {_row(cluster)}")
        row = _row(cluster)
        assert row["lineage"] == origin, "the older lineage won"
        assert row["last_conflict"]["dropped"] == len(lone_lines)
        cluster_max = max(x.count for x in counter_lines(log)
                          if x.node != lone and x.started < merged)
        later = _count_at_least(log, cluster_max + 3, after=merged + 0.5)
        assert all(x.count > cluster_max for x in later), later[:3]
        logs = "".join(cluster.log(n) for n in cluster.names)
        assert "conflict task=ledger" in logs


def test_an_unreadable_data_file_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    log, tasks = _ledger(tmp_path)
    with LocalCluster(1, tasks, start=False) as cluster:
        (n1,) = cluster.names
        data = cluster.data_path(n1)
        assert data is not None
        data.mkdir(parents=True)
        (data / "tasks.json").write_text("{ this is not json")
        cluster.start(n1)
        _count_at_least(log, 2)
        aside = [p for p in data.iterdir() if p.name.startswith("tasks.json.unreadable-")]
        assert len(aside) == 1 and aside[0].read_text() == "{ this is not json"
        text = cluster.log(n1)
        assert "moved aside to" in text and str(aside[0]) in text


def test_two_nodes_on_one_data_directory_are_refused_clearly(tmp_path: Path) -> None:
    with LocalCluster(1, insecure=True) as cluster:
        (n1,) = cluster.names
        cluster.wait_for_manager(timeout=15)
        data = cluster.data_path(n1)
        out = subprocess.run(
            [sys.executable, "-m", "clerk.node", "--name", "other@127.0.0.1", "--port",
             str(free_ports(1)[0]),
             "--insecure", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, out
        assert f"data_dir = '{data}'" in out.stderr and "is in use by node n1@127.0.0.1" \
            in out.stderr, out.stderr


def test_a_seed_that_started_cut_off_merges_in_and_its_fresh_init_loses(tmp_path: Path) -> None:
    # Issue 9, item 1: a seed restarted while cut off finds nobody, runs alone as manager and
    # calls init; when the clusters meet (the others probe their seeds), its claim may even be
    # the higher one (same term, higher name), but its younger lineage must not win.
    log, tasks = _ledger(tmp_path)
    with LocalCluster(4, tasks, start=False) as cluster:
        main, lone = cluster.names[:3], cluster.names[3]
        for name in main:
            cluster.start(name)  # every other node is a seed, the lone one too
        cluster.wait_for_manager(timeout=15, names=main)
        _count_at_least(log, 5)
        origin = _row(cluster)["lineage"]
        cluster.start(lone, seeds=[])
        wait_until(lambda: (v := cluster.views([lone])[lone]) and len(v["members"]) == 4,
                   timeout=30,
                   message=lambda: f"never merged: {cluster.log(lone)[-2000:]}")
        cluster.wait_for_manager(timeout=20)  # one cluster of four again
        merged = time.time()
        row = wait_until(lambda: (r := _row(cluster))["lineage"] == origin and r, timeout=10,
                         message=lambda: f"the younger lineage won: {_row(cluster)}")
        cluster_max = max(x.count for x in counter_lines(log) if x.started < merged
                          and x.node != lone)
        _count_at_least(log, cluster_max + 8, after=merged)
        # If the lone node's init ran before the clusters met (its worker may even start it
        # after the merge: the ledger line comes late, its result is dropped), it is counted
        # as a conflict, never kept. (The probes may also find it before its first slot.)
        if any(x.node == lone and x.count == 1 for x in counter_lines(log)):
            wait_until(lambda: _row(cluster)["conflicts"] >= 1, timeout=10,
                       message=lambda: f"no conflict counted: {_row(cluster)}")
        row = wait_until(lambda: (r := _row(cluster))["version"] >= cluster_max + 8 and r,
                         timeout=10, message=lambda: f"behind: {_row(cluster)}")
        assert row["lineage"] == origin, row
        # Every value the cluster's lineage produced continues its count. The lone node's
        # own lineage counts 1, 2, ... while it is alone (on a loaded machine the merge can
        # take seconds: many runs), always below the cluster's count when they meet.
        mains = sorted(x.count for x in counter_lines(log)
                       if (x.node != lone and x.started < merged) or x.count > cluster_max)
        assert len(mains) == len(set(mains)), "no count produced twice"
