"""The executor's run queue, with real worker processes (Unix-socket links), no cluster.

A run queued behind busy workers starts as soon as one of them finishes, not when something
else (the next EXECUTE, the queued run's own timeout) happens to wake the executor up.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

import clerk
from clerk._executor import Executor
from clerk._messages import Execute, Peer, Result
from clerk._tasks import TaskDef
from clerk.testing import wait_until

ROOT = str(Path(__file__).resolve().parents[2])
ME = Peer("a@127.0.0.1", "127.0.0.1:1", "inc", 0)


@contextmanager
def running_executor(
        monkeypatch: pytest.MonkeyPatch, defs: dict[str, TaskDef],
        stale: list[tuple[str, str]] | None = None,
) -> Iterator[tuple[Executor, list[tuple[float, Result]], Callable[[], bool]]]:
    """An executor with one real worker, ready: ``(executor, results, turn)``. ``results``
    holds ``(time.time() when it came, result)``; ``turn()`` is one loop turn as the agent
    does it (poll until the executor's next deadline, at most 20 ms; expire only at it) and
    returns False, for ``wait_until(lambda: turn() or ...)``."""
    # The workers import the task by its module path: give them the repository root.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, *sys.path]))
    poller = zmq.Poller()
    readers: dict[object, object] = {}
    results: list[tuple[float, Result]] = []

    def add_reader(sock: object, callback: object) -> None:
        readers[sock] = callback
        poller.register(sock, zmq.POLLIN)  # type: ignore[arg-type]

    def remove_reader(sock: object) -> None:
        del readers[sock]
        poller.unregister(sock)  # type: ignore[arg-type]

    ex = Executor(node="a@127.0.0.1", defs=defs, workers=1,
                  add_reader=add_reader,  # type: ignore[arg-type]
                  remove_reader=remove_reader,
                  send_result=lambda r, to: results.append((time.time(), r)),
                  me=lambda: (ME, 1), log_level="warning",
                  on_stale=None if stale is None else (
                      lambda msg, why: stale.append((msg.run_id, why))))

    def turn() -> bool:
        wait = max(0.0, min(ex.next_deadline() - time.monotonic(), 0.02))
        for sock, _ in poller.poll(int(wait * 1000)):
            callback = readers.get(sock)  # a dead worker's link may go earlier in the turn
            if callback is not None:
                callback()  # type: ignore[operator]
        if time.monotonic() >= ex.next_deadline():
            ex.expire(time.monotonic())
        return False

    try:
        wait_until(lambda: turn() or ex.workers[0].identity is not None, timeout=30,
                   interval=0)
        yield ex, results, turn
    finally:
        ex.close()


@pytest.mark.timeout(60)
def test_a_queued_run_starts_when_a_worker_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=10_000)
    with running_executor(monkeypatch, {"nap": nap}) as (ex, results, turn):
        began = time.time()
        for i in range(3):  # one EXECUTE each, all at once: two wait in the queue
            ex.submit(Execute(ME, 1, "nap", f"r{i}", i, {"s": 0.2}, 10_000), "m",
                      time.monotonic())
        wait_until(lambda: turn() or len(results) == 3, timeout=20, interval=0)
        assert [r.outcome for _, r in results] == ["ok", "ok", "ok"]
        assert [r.run_id for _, r in results] == ["r0", "r1", "r2"]
        # Back to back: 3 x 0.2 s and a little, far below the 10 s timeout the bug waited for.
        assert results[-1][0] - began < 2.0, [t - began for t, _ in results]


@pytest.mark.timeout(60)
def test_a_second_execute_of_a_run_queued_running_or_done_here_is_ignored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run id names one run: an EXECUTE of a run this executor holds, runs or answered
    for is not started again and gets no second answer (the overlap rule; a "refused"
    answer could overwrite the run's own result at the manager)."""
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=10_000)
    with running_executor(monkeypatch, {"nap": nap}) as (ex, results, turn):
        def execute(run_id: str, slot: int) -> None:
            ex.submit(Execute(ME, 1, "nap", run_id, slot, {"s": 0.3}, 10_000), "m",
                      time.monotonic())

        execute("r0", 0)
        execute("r1", 1)  # queued behind r0 (one worker)
        assert ex.workers[0].job is not None and ex.workers[0].job.msg.run_id == "r0"
        execute("r0", 0)  # running here
        execute("r1", 1)  # queued here
        assert ex.stats()["queued"] == 1 and ex.duplicates == 2
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        execute("r0", 0)  # done here
        assert ex.duplicates == 3 and not ex.busy()
        execute("r2", 2)  # a new run still runs
        wait_until(lambda: turn() or len(results) == 3, timeout=20, interval=0)
        assert [(r.run_id, r.outcome) for _, r in results] == [
            ("r0", "ok"), ("r1", "ok"), ("r2", "ok")]
        assert ex.executed == 3 and not ex.busy() and ex.stats()["duplicates"] == 3


@pytest.mark.timeout(60)
def test_a_run_sent_ahead_waits_without_a_worker_and_starts_at_its_due_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """clerk._lead: a run due 0.5 s ahead does not take the only worker meanwhile (a run due
    now, sent after it, goes first) and its task code starts at its due time, never before."""
    stamp = clerk.task("tests.integration.cluster_tasks:StampStart", name="stamp",
                       interval=60_000, timeout=10_000)
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=10_000)
    with running_executor(monkeypatch, {"stamp": stamp, "nap": nap}) as (ex, results, turn):
        due_ms = int((time.time() + 0.5) * 1000)
        ex.submit(Execute(ME, 1, "stamp", "ahead", 1, None, 10_000, False, due_ms,
                          due_ms + 10_000), "m", time.monotonic())
        assert ex.stats()["held"] == 1
        ex.submit(Execute(ME, 1, "nap", "now", 1, {"s": 0.05}, 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        assert [r.run_id for _, r in results] == ["now", "ahead"]
        assert results[0][0] < due_ms / 1000  # the held run did not block the worker
        ahead = results[1][1]
        assert ahead.outcome == "ok", ahead.error
        assert ahead.state["due"] == due_ms / 1000
        assert ahead.state["start"] >= due_ms / 1000  # never before due (the wall clock)
        assert ahead.duration_ms < 400  # counted from its start, not from its arrival


@pytest.mark.timeout(60)
def test_a_worker_killed_mid_run_fails_that_run_and_its_replacement_takes_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """clerk._workerlink: the dead worker's connection ends (its link is dropped: no run goes
    to it), its exit fails the run in flight, and the new worker's link takes the next run."""
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=10_000)
    with running_executor(monkeypatch, {"nap": nap}) as (ex, results, turn):
        first = ex.workers[0].pid
        ex.submit(Execute(ME, 1, "nap", "r0", 0, {"s": 30}, 10_000), "m", time.monotonic())
        assert ex.workers[0].job is not None
        assert isinstance(first, int)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: turn() or len(results) == 1, timeout=20, interval=0)
        failed = results[0][1]
        assert failed.outcome == "error" and "exited during the run" in failed.error
        wait_until(lambda: turn() or (ex.workers[0].identity is not None
                                      and ex.workers[0].pid != first), timeout=30, interval=0)
        assert len(ex._links) == 1  # the dead worker's link is gone, the new one is in
        # (The task that killed its worker is held back here for 0.25 s: clerk._workerdeaths.)
        held = ex.deaths.held["nap"].until
        wait_until(lambda: time.monotonic() >= held, timeout=5, interval=0.01)
        ex.submit(Execute(ME, 1, "nap", "r1", 1, {"s": 0.01}, 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        done = results[1][1]
        assert done.run_id == "r1" and done.outcome == "ok", done.error


def _stopped_for(pid: int, seconds: float) -> None:
    """SIGSTOP ``pid`` for ``seconds`` (the fault's duration, not a wait for a state)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        until = time.monotonic() + seconds
        wait_until(lambda: time.monotonic() >= until, timeout=seconds + 5, interval=0.01)
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(60)
def test_a_run_its_worker_held_while_stopped_past_its_interval_is_refused_stale(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """clerk._lead.too_late, checked again by the worker as the run would start: a run sent
    ahead is in its worker's hands before its due time; a worker stopped then (SIGSTOP of the
    node's tree, a VM stall) until more than one interval past the due time does not start it
    late on waking: it answers ``refused`` (stale), the node counts it, the code never runs."""
    stamp = clerk.task("tests.integration.cluster_tasks:StampStart", name="stamp",
                       interval=200, timeout=10_000)
    stale: list[tuple[str, str]] = []
    with running_executor(monkeypatch, {"stamp": stamp}, stale) as (ex, results, turn):
        due_ms = int((time.time() + 0.3) * 1000)
        ex.submit(Execute(ME, 1, "stamp", "held", 1, None, 10_000, False, due_ms,
                          due_ms + 10_000), "m", time.monotonic())
        worker = ex.workers[0]
        # Released to the worker RELEASE_LEAD_MS before its due time: the worker holds it.
        wait_until(lambda: turn() or worker.job is not None, timeout=10, interval=0)
        assert time.time() * 1000 < due_ms and results == []
        assert worker.pid is not None
        _stopped_for(worker.pid, 0.3 + 0.25)  # past due + one interval (200 ms)
        wait_until(lambda: turn() or len(results) == 1, timeout=20, interval=0)
        result = results[0][1]
        assert (result.run_id, result.outcome, result.state) == ("held", "refused", None)
        assert result.error.startswith("stale: would start "), result.error
        assert "more than one interval (200 ms)" in result.error
        assert stale == [("held", result.error.removeprefix("stale: "))]
        # The worker is free again and runs the next one on time.
        due_ms = int((time.time() + 0.1) * 1000)
        ex.submit(Execute(ME, 1, "stamp", "next", 2, None, 10_000, False, due_ms,
                          due_ms + 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        assert results[1][1].outcome == "ok" and results[1][1].state["start"] >= due_ms / 1000


@pytest.mark.timeout(60)
def test_a_run_queued_behind_a_busy_worker_past_its_interval_is_refused_stale(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that waited for a worker until more than one interval past its due time is not
    handed to one when it frees up: it is refused (stale), and the next queued run goes."""
    stamp = clerk.task("tests.integration.cluster_tasks:StampStart", name="stamp",
                       interval=200, timeout=10_000)
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=10_000)
    stale: list[tuple[str, str]] = []
    with running_executor(monkeypatch, {"stamp": stamp, "nap": nap}, stale) as (
            ex, results, turn):
        now_ms = int(time.time() * 1000)
        ex.submit(Execute(ME, 1, "nap", "busy", 1, {"s": 0.5}, 10_000), "m", time.monotonic())
        ex.submit(Execute(ME, 1, "stamp", "late", 1, None, 10_000, False, now_ms,
                          now_ms + 10_000), "m", time.monotonic())
        ex.submit(Execute(ME, 1, "nap", "after", 2, {"s": 0.0}, 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 3, timeout=20, interval=0)
        by_run = {r.run_id: r for _, r in results}
        assert by_run["busy"].outcome == "ok" and by_run["after"].outcome == "ok"
        late = by_run["late"]
        assert late.outcome == "refused", late
        assert late.error.startswith("stale: reached a worker "), late.error
        assert [run for run, _ in stale] == ["late"]


@pytest.mark.timeout(60)
def test_a_run_whose_done_waits_unread_past_its_timeout_is_ok_not_killed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's loop was late (a long turn elsewhere): the run ended inside its timeout and
    its worker's DONE waits in the link, unread, when the loop's next timer check finds the
    run's deadline past. The executor reads the link before it kills: the run is ``ok`` with
    its new state, and its worker is kept (no kill, no replacement)."""
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=10_000)
    with running_executor(monkeypatch, {"nap": nap}) as (ex, results, turn):
        # A first run makes the task's instance in the worker: the next one takes ~1 ms.
        ex.submit(Execute(ME, 1, "nap", "warm", 0, {"s": 0}, 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 1, timeout=20, interval=0)
        worker = ex.workers[0]
        pid, link = worker.pid, worker.identity
        assert link is not None
        ex.submit(Execute(ME, 1, "nap", "quick", 1, {"s": 0, "n": 1}, 500), "m",
                  time.monotonic())
        job = worker.job
        assert job is not None
        # No turn from here: the DONE arrives and stays unread, then the deadline passes.
        wait_until(lambda: bool(select.select([link], [], [], 0)[0]), timeout=10,
                   interval=0.005)
        assert time.monotonic() < job.deadline  # it ended inside its timeout
        wait_until(lambda: time.monotonic() >= job.deadline, timeout=10, interval=0.005)
        ex.expire(time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        result = results[1][1]
        assert (result.run_id, result.outcome) == ("quick", "ok"), result.error
        assert result.state == {"s": 0, "n": 1} and result.duration_ms < 500
        assert worker.pid == pid and ex.restarts == 0 and worker.identity is link
        # The kept worker runs the next one.
        ex.submit(Execute(ME, 1, "nap", "next", 2, {"s": 0}, 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 3, timeout=20, interval=0)
        assert results[2][1].outcome == "ok" and ex.restarts == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("body", "why"), [
    ('["r0", "ok", {"n": 1}, 1.5', "not JSON: "),  # cut short
    ('["r0", "ok", {"n": 1e400}, 1.5, ""]', "not JSON: 1e400 is not a finite number"),
    ('["r0", "ok"]', "neither an array of the 5 fields"),
    ('{"outcome": "ok"}', "neither an array of the 5 fields"),
    # An int too large for a float (JSON reads it whole): math.isfinite raised OverflowError
    # out of the reader callback and the agent's loop (review6).
    (f'["r0", "ok", {{"n": 1}}, 1{"0" * 400}, ""]', "duration_ms 1000000000"),
])
def test_a_done_the_agent_cannot_read_fails_its_run_at_once_and_frees_the_worker(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, body: str,
        why: str) -> None:
    """A real worker answers its run with a DONE that is not JSON, or in neither form: the
    worker has answered, the run is over. It fails at once (a 20 s timeout, answered within
    a few seconds) with the problem as its error, no state taken, the WARNING logged; the same
    worker (no restart) takes the next run. On main the run waited for its timeout (failed
    for the first and third bodies: a timeout after 20 s, the next run queued behind it)."""
    bad = clerk.task("tests.integration.cluster_tasks:MalformedDone", name="bad",
                     interval=60_000, timeout=20_000)
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=20_000)
    with running_executor(monkeypatch, {"bad": bad, "nap": nap}) as (ex, results, turn):
        pid = ex.workers[0].pid
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="clerk.executor"):
            ex.submit(Execute(ME, 1, "bad", "r0", 0, {"body": body}, 20_000), "m",
                      time.monotonic())
            ex.submit(Execute(ME, 1, "nap", "r1", 1, {"s": 0.01}, 20_000), "m",
                      time.monotonic())
            wait_until(lambda: turn() or len(results) == 2, timeout=30, interval=0)
        failed, done = results[0][1], results[1][1]
        assert (failed.run_id, failed.outcome, failed.state) == ("r0", "error", None)
        assert f"worker process {pid} answered the run with a malformed reply ({why}" \
            in failed.error, failed.error
        assert (done.run_id, done.outcome) == ("r1", "ok"), done.error
        assert time.monotonic() - began < 10  # not the 20 s timeout
        assert ex.workers[0].pid == pid and ex.restarts == 0 and ex.malformed == 1
        assert any("dropped" in r.getMessage() and f"pid {pid}" in r.getMessage()
                   for r in caplog.records)
