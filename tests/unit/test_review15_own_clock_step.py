"""review15: a run the manager sent to itself does not follow a step of the manager's own wall
clock. Its due time *is* the manager's wall time (the slot's grid), so when that clock steps
the slot's moment moves with it; skew2's ``Job.follow_clock`` (which keeps a run's monotonic
moment, right for a follower whose clock stepped away from its manager's) moved such a run by
the step: a step back of 10 s while it waited for a busy worker started it 10 s before its due
time by the manager's clock (README: a run never starts before its due time), a step forward
started it 10 s late instead of refusing it as stale (no late run). A run from another manager
still follows this node's step (tests/unit/test_skew2_held_step.py). A real Executor whose
workers are test sockets, on fake clocks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from clerk._messages import Execute, Peer
from clerk._tasks import TaskDef
from clerk._workerlink import DONE, pack
from tests.unit.test_executor_exit import DEFS, ME, Harness
from tests.unit.test_skew2_held_step import WALL0, _run_body, clocked

OTHER = Peer("b@127.0.0.1", "127.0.0.1:2", "inc-b", 0)


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Harness, list[float]]]:
    """test_skew2_held_step's harness (node ``ME``, one worker) on fake clocks, with a second
    task ``u`` beside ``t``."""
    u = TaskDef(name="u", target="m:C", interval=5_000, timeout=4_000)
    with clocked(monkeypatch, {**DEFS, "u": u}) as got:
        yield got


def _queued_behind_a_busy_worker(h: Harness, t: list[float], sender: Peer, step_s: float) -> None:
    """``r0`` (task t, due now) takes the only worker; ``r1`` (task u: interval 5 s, timeout
    4 s; due 20 ms ahead: the default dispatch lead) waits for it; the wall clock steps by
    ``step_s``; 3 s later r0 is done and r1 leaves the queue."""
    now_ms = int(t[1] * 1000)
    h.ex.submit(Execute(sender, 1, "t", "r0", 1, {}, 60_000, False, now_ms, now_ms + 60_000),
                "m", t[0])
    assert _run_body(h)[0] == "r0"
    due = now_ms + 20
    h.ex.submit(Execute(sender, 1, "u", "r1", 1, {}, 4_000, False, due, due + 4_000),
                "m", t[0])
    assert len(h.ex.queue) == 1  # waits for the worker
    t[1] += step_s
    t[0] += 3.0
    t[1] += 3.0
    h.links[0].sendall(pack(DONE, json.dumps(["r0", "ok", {}, 3.0, ""]).encode()))
    for _ in range(100):
        h.turn()
        if not h.ex.queue:
            break


@pytest.mark.timeout(20)
@pytest.mark.parametrize("step_s", [-10.0, 10.0])
def test_the_managers_own_run_keeps_the_managers_wall_time(
        clocks: tuple[Harness, list[float]], step_s: float) -> None:
    h, t = clocks
    due = int(WALL0 * 1000) + 20
    _queued_behind_a_busy_worker(h, t, ME, step_s)
    outcomes = [(r.run_id, r.outcome) for r in h.results]
    if step_s < 0:
        # Its due time as sent: the worker holds it to the manager's clock (main: due - 10 s,
        # started at once, 7 s before its due time by that clock).
        assert outcomes == [("r0", "ok")]
        assert _run_body(h)[5] == due
    else:
        # 13 s after its due time by the manager's clock, past its deadline (which the
        # manager times it out by, then sends the next slot): stale, not run late (main: due
        # and deadline + 10 s, sent to the worker, 13 s late).
        assert [o for o in outcomes if o[0] == "r1"] == [("r1", "refused")]
        assert "stale" in next(r.error for r in h.results if r.run_id == "r1")


@pytest.mark.timeout(20)
def test_another_managers_run_still_keeps_its_moment(
        clocks: tuple[Harness, list[float]]) -> None:
    h, t = clocks
    due = int(WALL0 * 1000) + 20
    _queued_behind_a_busy_worker(h, t, OTHER, -10.0)
    assert [(r.run_id, r.outcome) for r in h.results] == [("r0", "ok")]
    assert _run_body(h)[5] == due - 10_000
