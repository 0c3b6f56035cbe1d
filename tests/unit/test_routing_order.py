"""The manager's turn order (clerk._routing): the runs and results a turn queued leave before a
replication round is encoded, and only when a round actually goes (a paced one keeps them
for the end of the turn, where they batch with the rest)."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace
from typing import Any

import pytest

from clerk._routing import LOCAL_GAP_S, REPLICATE_GAP_S, ResultRouting


class _Agent:
    def __init__(self, calls: list[str], manager: bool = True) -> None:
        self.calls = calls
        self.core = SimpleNamespace(
            is_manager=manager, table_log=SimpleNamespace(log="L", seq=1, complete=True),
            heartbeat_now=lambda now: ["heartbeat round"])

    def flush_urgent(self, now: float) -> None:
        self.calls.append("flush")

    def apply(self, effects: list[Any], now: float) -> None:
        self.calls.extend(effects)


class _Runner(ResultRouting):
    def __init__(self, agent: _Agent) -> None:
        self.agent = agent  # type: ignore[assignment]
        self._replicate_after = -math.inf
        self._replicate_dirty = False
        self._sent = ("", -1)

    def _encode_rows(self, deadline: float) -> bool:
        self.agent.calls.append("rows encoded")  # type: ignore[attr-defined]
        return True

    def _stamp_acks(self) -> None:
        pass


def test_queued_runs_leave_before_the_round_is_encoded() -> None:
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)
    assert calls == ["flush", "rows encoded", "heartbeat round"]


def test_a_paced_round_leaves_them_to_the_end_of_the_turn() -> None:
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate_after = 11.0  # the last round was expensive: the next waits
    runner._replicate(10.0)
    assert calls == [] and runner._replicate_dirty
    runner._replicate(10.0, force=True)  # an operator's command: at once
    assert calls == ["flush", "rows encoded", "heartbeat round"]


def test_a_follower_does_not_flush() -> None:
    calls: list[str] = []
    runner = _Runner(_Agent(calls, manager=False))
    runner._replicate(10.0)
    assert calls == []


def test_a_round_holds_the_next_for_the_gap() -> None:
    """REPLICATE_GAP_S: the changes that follow a round within the gap share the next one
    (a round is four ZeroMQ messages on 3 nodes, ~12 wake-ups); one after it goes at once."""
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)
    assert calls == ["flush", "rows encoded", "heartbeat round"]
    calls.clear()
    runner._replicate(10.0 + REPLICATE_GAP_S / 2)  # a result right after: held
    assert calls == [] and runner._replicate_dirty
    assert runner._replicate_after >= 10.0 + REPLICATE_GAP_S
    runner.agent.core.table_log.seq = 2  # the held change is in the log
    runner._replicate(10.0 + REPLICATE_GAP_S)  # the gap is over (the loop's deadline)
    assert calls == ["flush", "rows encoded", "heartbeat round"]
    assert not runner._replicate_dirty


def test_a_takeovers_encoding_slices_are_not_held_by_the_gap() -> None:
    """A round that left rows to encode (a takeover's slices) keeps the cost pacing only: the
    next slice may go at once."""
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._encode_rows = lambda deadline: False  # type: ignore[method-assign]
    runner._replicate(10.0)
    assert runner._replicate_dirty and runner._replicate_after < 10.0 + REPLICATE_GAP_S


def test_the_result_of_a_run_on_the_managers_own_node_waits_only_the_local_gap() -> None:
    """No other node's outbox keeps such a result: its round waits LOCAL_GAP_S after the last
    round (not REPLICATE_GAP_S), while a member's result (kept in its outbox until
    acknowledged) waits the whole gap."""
    assert LOCAL_GAP_S < REPLICATE_GAP_S
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)
    calls.clear()
    runner.agent.core.table_log.seq = 2
    runner._replicate_result(False, 10.001)  # a member's result: held for the gap
    assert calls == [] and runner._replicate_dirty
    runner._replicate_result(True, 10.002)  # the manager's own run: held for the local gap
    assert calls == [] and runner._replicate_dirty
    assert runner._replicate_after == 10.0 + LOCAL_GAP_S
    runner._replicate(10.0 + LOCAL_GAP_S)  # the loop's deadline
    assert calls == ["flush", "rows encoded", "heartbeat round"]
    assert not runner._replicate_dirty


def test_an_own_result_after_the_local_gap_goes_at_once() -> None:
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)
    calls.clear()
    runner.agent.core.table_log.seq = 2
    runner._replicate_result(True, 10.0 + LOCAL_GAP_S + 0.001)  # inside the gap, past it
    assert calls == ["flush", "rows encoded", "heartbeat round"]
    assert not runner._replicate_dirty


def test_an_own_result_still_keeps_the_cost_pacing() -> None:
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)
    calls.clear()
    runner._paced_after = runner._replicate_after = 10.5  # the last round was expensive
    runner._replicate_result(True, 10.1)
    assert calls == [] and runner._replicate_dirty


def test_slices_after_a_recent_round_encode_on_and_send_one_round() -> None:
    """A step that leaves rows to encode within REPLICATE_GAP_S of the last round sends no
    round of its own: the next steps encode on, and one round carries every row."""
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)  # a round
    calls.clear()
    steps = iter([False, False, True])
    runner._encode_rows = lambda deadline: (  # type: ignore[method-assign]
        calls.append("rows encoded"), next(steps))[1]  # type: ignore[func-returns-value]
    runner.agent.core.table_log.seq = 2
    runner._replicate_after = -math.inf  # (whatever the pacing: the gap is the point here)
    runner._replicate(10.005)
    runner._replicate(10.006)
    assert calls == ["flush", "rows encoded", "flush", "rows encoded"]
    assert runner._replicate_dirty and runner._replicate_after <= 10.006  # the next turn
    runner._replicate(10.007)
    assert calls[-2:] == ["rows encoded", "heartbeat round"]
    assert calls.count("heartbeat round") == 1 and not runner._replicate_dirty


def test_slices_past_the_gap_still_send_rounds() -> None:
    """A takeover's fill (rows left step after step) reaches the members at least every gap:
    a partial step past it is followed by a round of what was encoded, as before."""
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._encode_rows = lambda deadline: (  # type: ignore[method-assign]
        calls.append("rows encoded"), False)[1]  # type: ignore[func-returns-value]
    runner._replicate(10.0)  # no round yet: the step's rows go in the next step's round
    runner._replicate(10.0)
    assert calls[-1] == "heartbeat round" and calls.count("heartbeat round") == 1
    runner.agent.core.table_log.seq = 2
    runner._replicate(10.001)  # within the gap: encodes on
    runner._replicate(10.002)
    assert calls.count("heartbeat round") == 1
    runner.agent.core.table_log.seq = 3
    runner._replicate(10.0 + REPLICATE_GAP_S)  # the gap passed: this slice's round is next
    runner._replicate(10.0 + REPLICATE_GAP_S)
    assert calls[-1] == "heartbeat round" and calls.count("heartbeat round") == 2


def test_a_takeovers_fill_sends_a_round_after_each_slice_as_before() -> None:
    """While the log is not complete (a takeover's fill), the gap does not hold its slices'
    rounds: what is encoded reaches the members step after step."""
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)  # a round
    calls.clear()
    runner.agent.core.table_log.complete = False
    runner.agent.core.table_log.seq = 2
    runner._encode_rows = lambda deadline: (  # type: ignore[method-assign]
        calls.append("rows encoded"), False)[1]  # type: ignore[func-returns-value]
    runner._replicate_after = -math.inf
    runner._replicate(10.001)  # a slice
    runner._replicate(10.001)  # its round, at once
    assert calls[-1] == "heartbeat round"


def test_stale_executes_are_one_warning_a_second_and_all_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    """STALE_LOG_S: on an overloaded node nearly every run can arrive stale; a WARNING per run
    fed the overload. The first of a burst is logged in full, the rest counted into the next
    line; ``stale`` (the status) counts every one."""
    from clerk._messages import Execute, Peer
    from clerk._routing import STALE_LOG_S

    clock = [100.0]
    runner = _Runner(_Agent([]))
    runner.agent.clock = SimpleNamespace(monotonic=lambda: clock[0])  # type: ignore[attr-defined]
    runner.stale = 0
    sender = Peer("m@127.0.0.1", "127.0.0.1:7400", "i")

    def execute(slot: int) -> Execute:
        return Execute(sender, 1, "t", f"r{slot}", slot, None, 1000, False, 0, 0)

    with caplog.at_level(logging.INFO, logger="clerk.tasks"):
        for slot in range(50):
            runner._stale(execute(slot), "late")
            clock[0] += STALE_LOG_S / 100  # 50 in half the window
        lines = [r.getMessage() for r in caplog.records if "stale EXECUTE" in r.getMessage()]
        assert len(lines) == 1 and "slot=0 " in lines[0] and "more" not in lines[0]
        clock[0] += STALE_LOG_S
        runner._stale(execute(99), "late")
        lines = [r.getMessage() for r in caplog.records if "stale EXECUTE" in r.getMessage()]
    assert len(lines) == 2 and "slot=99 " in lines[1] and "and 49 more" in lines[1]
    assert runner.stale == 51


def test_refused_runs_are_one_manager_warning_a_second(
        caplog: pytest.LogCaptureFixture) -> None:
    """The manager's line per finished run (``_log_finished``): a run its node refused (stale,
    on an overloaded cluster nearly every run) was a WARNING each, ~6 % of the manager's loop
    at 1,400 runs/s; now as ``_stale``: the first of a burst in full, the rest at DEBUG and
    counted into the next line. Failed runs stay a WARNING each."""
    from clerk._dispatch import Finished
    from clerk._routing import STALE_LOG_S

    clock = [100.0]
    runner = _Runner(_Agent([]))
    runner.agent.clock = SimpleNamespace(monotonic=lambda: clock[0])  # type: ignore[attr-defined]
    runner.agent.metrics = SimpleNamespace(  # type: ignore[attr-defined, assignment]
        observe_run=lambda *a: None)

    def refused(slot: int) -> Finished:
        return Finished("t", f"r{slot}", slot, "n1", "refused", 0.0, "stale: late")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    with caplog.at_level(logging.INFO, logger="clerk.tasks"):
        for slot in range(50):
            runner._log_finished(refused(slot))
            clock[0] += STALE_LOG_S / 100
        assert len(warnings()) == 1 and "slot=0 " in warnings()[0]
        runner._log_finished(Finished("t", "e1", 60, "n1", "error", 1.0, "boom"))
        runner._log_finished(Finished("t", "e2", 61, "n1", "timeout", 1.0, "late"))
        assert len(warnings()) == 3  # failures: every one
        clock[0] += STALE_LOG_S
        runner._log_finished(refused(99))
        lines = warnings()
    assert len(lines) == 4 and "slot=99 " in lines[3] and "and 49 more" in lines[3]
