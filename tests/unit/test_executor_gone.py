"""A worker pool gone for good escalates (clerk._executor): its supervisor gave up, or a worker
killed past a timeout could not be started again. A real Executor whose worker is a test
socket; the supervisor is a fake whose ``start_child`` may fail."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import clerk._workerpool
from clerk._executor import Executor
from clerk._messages import Execute, Result
from clerk._workerlink import READY, RUN, pack, recv_msg
from supervisor import ChildStartError, Event, ShutdownInfo, ShutdownReason
from tests.unit.test_executor_exit import ME, Harness, _Sup


class _FailingSup(_Sup):
    """``start_child`` fails its first ``fails`` calls, as a fork that finds the system out
    of processes does."""

    fails = 0

    def start_child(self, spec: Any) -> int:
        self.calls.append(("start", spec.id))
        if _FailingSup.fails > 0:
            _FailingSup.fails -= 1
            raise ChildStartError(spec.id, "OSError(11, 'Resource temporarily unavailable')")
        return 0


Pool = tuple[Executor, socket.socket, list[Result], list[str]]


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pool]:
    monkeypatch.setattr(clerk._workerpool, "Supervisor", _FailingSup)
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (0.0, 0.0))
    _FailingSup.fails = 0
    failed: list[str] = []
    h = Harness(on_failed=failed.append)
    try:
        link, = h.ready()
        yield h.ex, link, h.results, failed
    finally:
        h.close()


def _events(ex: Executor) -> None:
    """The loop's turn: what the supervisor's (or a helper) thread sent it."""
    assert select.select([ex._events_r], [], [], 5)[0], "no event came"
    ex._on_worker_events()


def _execute(run: str, slot: int) -> Execute:
    return Execute(ME, 1, "t", run, slot, {"n": 0}, 5_000)


@pytest.mark.timeout(20)
def test_a_supervisor_that_gave_up_fails_the_pool_and_refuses_its_runs(pool: Pool) -> None:
    """On main the shutdown was ignored: the queued run waited for its timeout ("no free
    worker") and every later EXECUTE queued behind it, on a node that had no worker left."""
    ex, link, results, failed = pool
    ex.submit(_execute("r1", 1), "m", 0.0)
    assert recv_msg(link)[0] == RUN
    ex.submit(_execute("r2", 2), "m", 0.0)  # queued: the only worker runs r1
    # The supervisor ends its children (each exit fails its run), then says it gave up.
    ex._hook(Event(kind="exit", supervisor="s", child_id="worker-0", pid=100, reason=None))
    info = ShutdownInfo(ShutdownReason.INTENSITY, "worker-0")
    ex._hook(Event(kind="shutdown", supervisor="s", info=info))
    _events(ex)
    assert [(r.run_id, r.outcome) for r in results] == [("r1", "error"), ("r2", "refused")]
    assert "worker pool of a@127.0.0.1 is gone" in results[1].error
    assert failed == [f"worker supervisor gave up: {info}"] and ex.failed
    assert not ex.busy()
    ex.submit(_execute("r3", 3), "m", 0.0)  # after: refused at once, not queued
    assert results[-1].run_id == "r3" and results[-1].outcome == "refused"
    assert not ex.busy()


@pytest.mark.timeout(20)
def test_an_orderly_stop_of_the_supervisor_is_no_failure(pool: Pool) -> None:
    ex, _link, _results, failed = pool
    ex._hook(Event(kind="shutdown", supervisor="s", info=ShutdownInfo(ShutdownReason.STOPPED)))
    assert not select.select([ex._events_r], [], [], 0.1)[0]
    assert failed == [] and not ex.failed


def _replace_and_join(ex: Executor) -> None:
    ex._replace_worker(ex.workers[0])
    for killer in ex._killers:
        killer.join(5)


@pytest.mark.timeout(20)
def test_a_replacement_that_fails_to_start_once_is_started_again(pool: Pool) -> None:
    """On main a failed start_child was only logged: worker 0 had no process, for good."""
    ex, _link, _results, failed = pool
    _FailingSup.fails = 1
    _replace_and_join(ex)
    calls = ex.sup.calls  # type: ignore[attr-defined]
    assert calls == [("start", "worker-0-1"), ("terminate", "worker-0"),
                     ("start", "worker-0-1")]
    assert failed == [] and not ex.failed


@pytest.mark.timeout(20)
def test_a_replacement_that_never_starts_fails_the_pool(pool: Pool) -> None:
    ex, _link, results, failed = pool
    _FailingSup.fails = 99
    _replace_and_join(ex)
    starts = [c for c in ex.sup.calls if c[0] == "start"]  # type: ignore[attr-defined]
    assert len(starts) == 3  # the first try and one after each of the two pauses
    _events(ex)
    assert len(failed) == 1 and "could not start worker-0-1" in failed[0]
    ex.submit(_execute("r1", 1), "m", 0.0)
    assert [(r.run_id, r.outcome) for r in results] == [("r1", "refused")]


@pytest.mark.timeout(20)
def test_a_pool_that_gave_up_with_a_worker_still_up_is_no_longer_eligible(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """review11: worker 0 was killed past a timeout and its replacement never starts, worker
    1 is up. The pool is gone (every EXECUTE is refused from then on, the slot skipped), so the
    node withdraws its tasks at once, as it does when no worker is left: the manager sends the
    next runs to a node that can start them, also during the turns before this one's leave
    begins (a manager finishing a take-over waits up to 2 s). On main the capacity stayed
    True (worker 1 has a link): the node stayed eligible and refused every run sent to it,
    and a later READY or DONE kept it so."""
    monkeypatch.setattr(clerk._workerpool, "Supervisor", _FailingSup)
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (0.0, 0.0))
    _FailingSup.fails = 0
    failed: list[str] = []
    capacity: list[bool] = []
    h = Harness(workers=2, on_failed=failed.append, on_ready=lambda: None,
                on_capacity=capacity.append)
    ex, results, turn = h.ex, h.results, h.turn
    try:
        links = h.ready()
        assert capacity == []  # (ready: eligible, as announced)
        _FailingSup.fails = 99
        ex._replace_worker(ex.workers[0])
        for killer in ex._killers:
            killer.join(5)
        _events(ex)
        assert len(failed) == 1 and ex.failed
        assert ex.workers[1].identity is not None  # worker 1 is up, and keeps its link
        assert capacity == [False], capacity
        # Worker 1 runs nothing more here; whatever it says, the node stays withdrawn.
        links[1].sendall(pack(READY, json.dumps({"wid": 1, "pid": 101}).encode()))
        for _ in range(5):
            turn()
        ex.expire(0.0)
        assert capacity == [False], capacity
        ex.submit(_execute("r1", 1), "m", 0.0)
        assert [(r.run_id, r.outcome) for r in results] == [("r1", "refused")]
    finally:
        h.close()


@pytest.mark.timeout(20)
def test_the_agent_is_told_even_if_answering_a_refused_run_raises(pool: Pool) -> None:
    """review11: _give_up marks the pool failed, answers what is left, then tells the agent.
    It ran inside the events reader's ``except (ValueError, KeyError, IndexError): continue``
    (meant for a malformed line), so an answer that raised one of those (the manager's own
    run applied locally, an encoding error) was swallowed before ``on_failed``: the pool
    refused every run from then on and the agent never left, the node sat there for good
    without saying so (what workerfail set out to end). The agent is now told first-hand in
    any case, and the error is not hidden (it reaches the loop: the agent crashes and is
    restarted, as OTP would)."""
    ex, link, results, failed = pool
    ex.submit(_execute("r1", 1), "m", 0.0)
    assert recv_msg(link)[0] == RUN
    ex.submit(_execute("r2", 2), "m", 0.0)  # queued
    sent = ex.send_result

    def send(result: Result, to: str) -> None:
        if result.outcome == "refused":
            raise ValueError("cannot encode that answer")
        sent(result, to)

    ex.send_result = send  # type: ignore[method-assign]
    info = ShutdownInfo(ShutdownReason.INTENSITY, "worker-0")
    ex._hook(Event(kind="exit", supervisor="s", child_id="worker-0", pid=100, reason=None))
    ex._hook(Event(kind="shutdown", supervisor="s", info=info))
    with pytest.raises(ValueError, match="cannot encode"):
        _events(ex)
    assert failed == [f"worker supervisor gave up: {info}"] and ex.failed


@pytest.mark.timeout(20)
def test_a_run_killed_past_its_timeout_is_killed_before_its_replacement_is_tried_again(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """review11: the worker that held a run past its timeout was terminated only once its
    replacement had started or every retry failed, up to 0.1 + 0.5 + 1.5 s later: the run
    answered ``timeout`` went on meanwhile (its side effects beside the next slot's run on
    another node), and on a system out of processes it held the very slot the retries
    wanted. Now it is terminated at the first failed start, before the pause."""
    ex, _link, _results, _failed = pool
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (0.0, 0.0))
    _FailingSup.fails = 2
    _replace_and_join(ex)
    calls = ex.sup.calls  # type: ignore[attr-defined]
    assert calls == [("start", "worker-0-1"), ("terminate", "worker-0"),
                     ("start", "worker-0-1"), ("start", "worker-0-1")], calls
