"""skew2: a run held in the executor (sent ahead of its due time, waiting to go to a worker)
keeps its moment when this node's wall clock steps meanwhile (NTP stepping it, ``date -s``):
its due time and deadline move with the step as it leaves the queue
(clerk._runqueue.Job.follow_clock). Before, the run kept its wall time: a step forward past
its deadline refused it as stale (lost), a smaller one started it early by the step (by the
manager's clock too), and a step back held it that much longer. The OFFER still lists it as
it came. A real Executor whose worker is a test socket, on fake clocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import clerk._workerpool
from clerk._messages import Execute, Peer
from clerk._tasks import TaskDef
from clerk._workerlink import RUN, recv_msg
from tests.unit.test_executor_exit import Harness, _Sup

WALL0 = 1_800_000_000.0
LEAD_S = 2.0  # the run came this long before its due time
#: Its manager: another node (a run this node sent itself as manager does not follow a step
#: of its own clock, whose grid its due time is: tests/unit/test_review15_own_clock_step.py).
MANAGER = Peer("m@127.0.0.1", "127.0.0.1:2", "inc-m", 0)


@contextmanager
def clocked(monkeypatch: pytest.MonkeyPatch,
            defs: dict[str, TaskDef] | None = None) -> Iterator[tuple[Harness, list[float]]]:
    """The harness (its worker ready) on fake clocks: ``t[0]`` monotonic, ``t[1]`` this node's
    wall clock; ``defs``: its tasks instead of test_executor_exit's."""
    monkeypatch.setattr(clerk._workerpool, "Supervisor", _Sup)
    t = [100.0, WALL0]
    h = Harness(now=lambda: t[0], wall=lambda: t[1])
    if defs is not None:
        h.ex.defs = defs
    try:
        h.ready()
        yield h, t
    finally:
        h.close()


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Harness, list[float]]]:
    with clocked(monkeypatch) as got:
        yield got


def _run_body(h: Harness) -> list[Any]:
    kind, body = recv_msg(h.links[0])
    assert kind == RUN
    got: list[Any] = json.loads(body)
    return got


@pytest.mark.timeout(20)
@pytest.mark.parametrize("step_s", [10.0, 0.5, -10.0, 0.0])
def test_a_held_run_keeps_its_moment_when_the_wall_clock_steps(
        clocks: tuple[Harness, list[float]], step_s: float) -> None:
    h, t = clocks
    due = int((WALL0 + LEAD_S) * 1000)
    msg = Execute(MANAGER, 1, "t", "r1", 1, {"n": 0}, 5_000, False, due, due + 5_000)
    h.ex.submit(msg, "m", t[0])
    assert h.ex.queue.held_count == 1  # held: no worker yet
    t[1] += step_s  # the step
    # Time goes on (both clocks) to the run's release (RELEASE_LEAD_MS before it is due).
    t[0] += LEAD_S - 0.03
    t[1] += LEAD_S - 0.03
    h.ex.expire(t[0])
    assert [(r.outcome, r.error) for r in h.results] == []  # (main, +10 s: refused stale)
    body = _run_body(h)
    step_ms = round(step_s * 1000)
    # Its due time on this clock now: the same moment (main: the wall time as it came).
    assert (body[5], body[6]) == (due + step_ms, due + 5_000 + step_ms)
    assert body[12] == due  # slot_due_ms, current_run().due: the slot's time as sent
    # What this node's OFFER lists: the times as they came.
    [listed] = h.ex.runs_in_flight()
    assert (listed.due_ms, listed.deadline_ms) == (due, due + 5_000)
