"""The executor's run queue, with real worker processes (Unix-socket links), no cluster.

A run queued behind busy workers starts as soon as one of them finishes, not when something
else (the next EXECUTE, the queued run's own timeout) happens to wake the executor up.
"""

from __future__ import annotations

import os
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
def running_executor(monkeypatch: pytest.MonkeyPatch, defs: dict[str, TaskDef]
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
                  me=lambda: (ME, 1), log_level="warning")

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
        ex.submit(Execute(ME, 1, "nap", "r1", 1, {"s": 0.01}, 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        done = results[1][1]
        assert done.run_id == "r1" and done.outcome == "ok", done.error
