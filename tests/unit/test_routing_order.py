"""The manager's turn order (clerk._routing): the runs and results a turn queued leave before a
replication round is encoded, and only when a round actually goes (a paced one keeps them
for the end of the turn, where they batch with the rest)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from clerk._routing import REPLICATE_GAP_S, ResultRouting


class _Agent:
    def __init__(self, calls: list[str], manager: bool = True) -> None:
        self.calls = calls
        self.core = SimpleNamespace(
            is_manager=manager, table_log=SimpleNamespace(log="L", seq=1),
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


def test_the_result_of_a_run_on_the_managers_own_node_is_not_held_by_the_gap() -> None:
    """No other node's outbox keeps such a result: its round goes as soon as the cost pacing
    allows, while a member's result (kept in its outbox until acknowledged) waits the gap."""
    calls: list[str] = []
    runner = _Runner(_Agent(calls))
    runner._replicate(10.0)
    calls.clear()
    runner.agent.core.table_log.seq = 2
    runner._replicate_result(False, 10.001)  # a member's result: held for the gap
    assert calls == [] and runner._replicate_dirty
    runner._replicate_result(True, 10.002)  # the manager's own run: at once
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
