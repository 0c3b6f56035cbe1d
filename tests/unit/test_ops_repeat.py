"""A client's repeated request (its answer was late, it sent it again) is applied once
(:mod:`clerk._ops`, "A repeated request gets the first answer"), on the manager's real
``handle_control`` with the pure Scheduler under it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clerk._answered import ANSWER_MEMORY_S, MAX_ANSWERS, Answered
from clerk._messages import Control, ControlReply, Peer
from clerk._ops import handle_control
from clerk._schedule import Dispatch, Scheduler
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started


@dataclass
class FakeCore:
    term: int = 1
    is_manager: bool = True
    manager_claim: Any = None
    dispatch_ok: bool = True


@dataclass
class FakeAgent:
    me: Peer = field(default_factory=lambda: Peer("a", "a:7400", "a-1", 0))
    core: FakeCore = field(default_factory=FakeCore)


class FakeRunner:
    """What handle_control uses of the TaskRunner, with a real Scheduler."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.agent = FakeAgent()
        self.scheduler = scheduler
        self.answered = Answered()
        self.sent: list[Dispatch] = []

    def _follow_replica(self) -> None:
        pass

    def replicate_now(self, now: float) -> None:
        pass

    def loaded(self, wall: float) -> Any:
        return NODES

    def send_dispatch(self, d: Dispatch, now: float) -> None:
        self.sent.append(d)


def client(incarnation: str) -> Peer:
    return Peer("ops@client", "", incarnation, 0)


def ask(runner: FakeRunner, who: Peer, op: str, wall: float, now: float,
        via: str = "") -> ControlReply:
    return handle_control(runner, Control(who, 0, op, "t", via), now,  # type: ignore[arg-type]
                          wall)


def test_a_trigger_sent_again_after_its_run_ended_starts_no_second_run() -> None:
    """The flake of test_trigger_never_overlaps_a_run_in_flight: the client's first attempt
    started the run but its answer came after the client's 2 s wait; the client asked again
    (through the next address, then the manager), after the 4 s run had ended: a third run."""
    s = started(sched(), due("t", K) - 0.1)
    run_ok(s, K)
    r = FakeRunner(s)
    me = client("c-1")
    first = ask(r, me, "trigger", due("t", K) + 0.2, 10.0)
    assert first.ok and len(r.sent) == 1
    d = r.sent[0]
    assert s.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 4.0, "",
                       due("t", K) + 4.3) is not None
    again = ask(r, me, "trigger", due("t", K) + 4.5, 14.5, via="b")
    assert again == first and len(r.sent) == 1
    assert s.records["t"].running is None
    # Another request (another client, or the same operator once more) is a new trigger.
    other = ask(r, client("c-2"), "trigger", due("t", K) + 4.6, 14.6)
    assert other.ok and len(r.sent) == 2 and other.result["run"] != first.result["run"]


def test_a_refused_trigger_is_not_remembered() -> None:
    s = started(sched(), due("t", K) - 0.1)
    r = FakeRunner(s)
    ask(r, client("c-1"), "trigger", due("t", K) + 0.2, 10.0)
    me = client("c-2")
    refused = ask(r, me, "trigger", due("t", K) + 0.3, 10.1)
    assert not refused.ok and "in flight" in refused.error
    d = r.sent[0]
    s.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", due("t", K) + 1.3)
    assert ask(r, me, "trigger", due("t", K) + 1.4, 11.4).ok and len(r.sent) == 2


def test_a_pause_sent_again_keeps_its_time() -> None:
    s = started(sched(), due("t", K) - 0.1)
    r = FakeRunner(s)
    me = client("c-1")
    first = ask(r, me, "pause", due("t", K) + 0.2, 10.0)
    again = ask(r, me, "pause", due("t", K) + 2.5, 12.3)
    assert again == first
    assert s.detail("t", due("t", K) + 3)["paused_at"] == first.result["at"]


def test_answers_are_kept_for_a_while_and_bounded() -> None:
    s = started(sched(), due("t", K) - 0.1)
    r = FakeRunner(s)
    me = client("c-1")
    ask(r, me, "pause", due("t", K) + 0.2, 10.0)
    assert r.answered.get(Control(me, 0, "pause", "t", ""), 10.0 + ANSWER_MEMORY_S - 1)
    assert r.answered.get(Control(me, 0, "pause", "t", ""), 10.0 + ANSWER_MEMORY_S) is None
    for i in range(MAX_ANSWERS + 10):
        r.answered.put(Control(client(f"x{i}"), 0, "pause", "t", ""),
                       ControlReply(r.agent.me, 1, True, "", "", None), 20.0)
    assert len(r.answered) == MAX_ANSWERS
    assert r.answered.get(Control(client("x0"), 0, "pause", "t", ""), 20.0) is None


def test_a_trigger_that_reaches_a_manager_unconfirmed_after_a_stall_is_not_dispatched() -> None:
    """The stall fence (clerk._fence) holds for a trigger as for a slot: a manager whose loop
    stalled past the manager timeout may have been replaced, and the request it finds queued
    may be one its client gave up on and had applied by the new manager. It is answered as
    "no manager yet" (the client tries again), nothing dispatched; once a member confirms
    the claim, the same request is applied."""
    s = started(sched(), due("t", K) - 0.1)
    r = FakeRunner(s)
    r.agent.core.dispatch_ok = False
    me = client("c-1")
    held = ask(r, me, "trigger", due("t", K) + 0.2, 10.0)
    assert not held.ok and held.error.startswith("no manager yet") and r.sent == []
    assert s.records["t"].running is None
    r.agent.core.dispatch_ok = True
    assert ask(r, me, "trigger", due("t", K) + 0.3, 10.1).ok and len(r.sent) == 1


def test_a_pause_or_resume_that_reaches_a_manager_unconfirmed_after_a_stall_is_refused() -> None:
    """Every table-changing command respects the stall fence, not the trigger alone. A pause
    (or resume) applied by a manager that may have been replaced during its stall goes into
    a table nobody follows any more: lost when it steps down, or contradicting the new
    manager's (whose client may have had its own pause or resume applied meanwhile). It is
    answered as "no manager yet", the table unchanged, and nothing remembered: once a member
    confirms the claim (or the client reaches the new manager), the same request is applied."""
    s = started(sched(), due("t", K) - 0.1)
    r = FakeRunner(s)
    r.agent.core.dispatch_ok = False
    me = client("c-1")
    for op in ("pause", "resume"):
        held = ask(r, me, op, due("t", K) + 0.2, 10.0)
        assert not held.ok and held.error.startswith("no manager yet"), held
        assert not s.detail("t", due("t", K) + 0.2)["paused"]
        assert r.answered.get(Control(me, 0, op, "t", ""), 10.0) is None
    r.agent.core.dispatch_ok = True
    paused = ask(r, me, "pause", due("t", K) + 0.3, 10.1)
    assert paused.ok and s.detail("t", due("t", K) + 0.3)["paused"]
