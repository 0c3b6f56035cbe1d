"""The agent loop's poll timeout (clerk._agent.poll_timeout_ms): one wake-up per timer unless a
run waits for the tick to start on time; a joiner, or a follower whose manager is due, reads
its mailbox before it elects."""

from __future__ import annotations

import types

from clerk._agent import Agent, poll_timeout_ms
from clerk._core import Role


def test_a_timer_that_may_be_late_by_a_millisecond_is_polled_for_in_one_wake_up() -> None:
    # 7.6 ms away: rounded down, the poll ended 0.6 ms early and the loop woke again after a
    # sleep; rounded up it wakes once, at most 1 ms late.
    assert poll_timeout_ms(0.0076, precise=False) == 8
    assert poll_timeout_ms(0.0004, precise=False) == 1  # never a zero-timeout poll + sleep
    assert poll_timeout_ms(0.007, precise=False) == 7


def test_a_run_that_waits_for_the_tick_is_polled_for_to_the_sub_millisecond() -> None:
    # dispatch_lead = 0: the poll ends before the deadline, the loop sleeps the rest
    assert poll_timeout_ms(0.0076, precise=True) == 7
    assert poll_timeout_ms(0.0004, precise=True) == 0


def test_at_most_a_second() -> None:
    assert poll_timeout_ms(5.0, precise=False) == 1000
    assert poll_timeout_ms(5.0, precise=True) == 1000


class _Stub:
    """What Agent._read_before_electing touches."""

    def __init__(self, role: str, due: float, manager_due: float = float("inf")) -> None:
        self.core = type("C", (), {"role": Role(role), "next_deadline": lambda _s: due,
                                   "manager_due": lambda _s: manager_due})()
        self.transport = type("T", (), {"router_ready": True,
                                        "poll": lambda _s, ms, now, router: []})()
        self.clock = type("K", (), {"monotonic": lambda _s: 5.0})()
        self._read_before = float("-inf")
        self.read = 0

    def _handle_mailbox(self) -> int:
        self.read += 1
        return 1

    def _on_inbound(self, inbound: object, now: float) -> None:
        pass

    def _flush(self, now: float) -> None:
        pass


def test_a_joiner_reads_its_mailbox_before_the_tick_that_would_make_it_a_candidate() -> None:
    stub = _Stub("joining", 4.0)
    assert Agent._read_before_electing(stub, 5.0) is True  # type: ignore[arg-type]
    assert stub.read == 1
    # Once per deadline: the tick comes next, whatever keeps arriving.
    assert Agent._read_before_electing(stub, 5.0) is False  # type: ignore[arg-type]
    assert stub.read == 1
    for role in ("manager", "candidate", "leaving"):
        other = _Stub(role, 4.0)
        assert Agent._read_before_electing(other, 5.0) is False  # type: ignore[arg-type]
        assert other.read == 0


def test_a_follower_reads_its_mailbox_before_the_tick_that_would_suspect_its_manager() -> None:
    """A follower whose own loop ran long (a loaded machine, a joiner applying the table) finds
    its manager's deadline past: the heartbeats waiting in its mailbox are read first (they
    move the deadline), once per deadline. Before, the tick came first: "manager lost" with
    the manager's heartbeats unread. Its other timers (a probe, a fetch) read nothing."""
    stub = _Stub("follower", 4.0, manager_due=4.5)
    assert Agent._read_before_electing(stub, 5.0) is True  # type: ignore[arg-type]
    assert stub.read == 1
    assert Agent._read_before_electing(stub, 5.0) is False  # type: ignore[arg-type]
    assert stub.read == 1
    probe_only = _Stub("follower", 4.0, manager_due=6.0)
    assert Agent._read_before_electing(probe_only, 5.0) is False  # type: ignore[arg-type]
    assert probe_only.read == 0


def _precise(lead: int, active: bool, pending: bool = False) -> bool:
    sched = type("S", (), {"active": active, "due_time_pending": pending})()
    stub = type("A", (), {"config": type("Cfg", (), {"dispatch_lead": lead})(),
                          "tasks": type("R", (), {"scheduler": sched})()})()
    return Agent._precise(stub)  # type: ignore[arg-type]


def test_only_a_node_that_schedules_wakes_to_the_sub_millisecond() -> None:
    """A follower sends no runs: with ``dispatch_lead = 0`` its timers (heartbeats, the data
    directory, its executor's deadlines) were polled for to the sub-millisecond too, two
    wake-ups each."""
    assert _precise(0, active=True) is True
    assert _precise(0, active=False) is False
    assert _precise(5, active=True) is False
    assert _precise(5, active=True, pending=True) is True
    assert _precise(5, active=False, pending=True) is False


class _Mailbox:
    """What Agent._handle_mailbox touches: a mailbox of ``n`` messages, each taking 1 ms."""

    def __init__(self, n: int) -> None:
        from collections import Counter

        self.t = 10.0
        self.clock = type("K", (), {"monotonic": lambda _s: self.t})()
        msgs = list(range(n))
        self.transport = type("T", (), {"stats": Counter(),
                                        "receive": lambda _s: iter(msgs)})()
        self.outgoing = type("O", (), {"overdue": lambda _s, now: False})()
        self.handled: list[object] = []
        self._ran = False

    def _flush(self, now: float) -> None:
        pass

    def _on_inbound(self, inbound: object, now: float) -> None:
        self.handled.append(inbound)
        self.t += 0.001


def test_traffic_that_ended_a_precise_wait_is_read_up_to_the_deadline_only() -> None:
    """Transport.wait ends on traffic now (it held a RESULT for up to 1 ms before): what came
    is read until the deadline the loop waited for, then its tick goes first; the rest stays
    queued for the next turn."""
    box = _Mailbox(5)
    assert Agent._handle_mailbox(box, until=10.0015) == 2  # type: ignore[arg-type]
    assert box.handled == [0, 1]
    assert box.transport.stats["drain_cut_due"] == 1
    whole = _Mailbox(5)
    assert Agent._handle_mailbox(whole) == 5  # type: ignore[arg-type]  # no deadline: all


class _RunMailbox(_Mailbox):
    """A mailbox whose first message is an EXECUTE (a RUN written to a worker that wrote its
    DONE at once), then a replication round; what the turn did, in order, in ``steps``."""

    def __init__(self, done_ready: bool, n: int = 2) -> None:
        super().__init__(n)
        self.steps: list[str] = []
        self._urgent = False
        box = self

        def poll_readers(_s: object) -> bool:
            box.steps.append("read workers")
            if done_ready:
                box._urgent = True  # the DONE's RESULT queued (AgentFeed.send)
            return done_ready

        self.transport.poll_readers = types.MethodType(poll_readers, self.transport)
        self.transport.mailbox_waiting = types.MethodType(  # (another message after it?)
            lambda _s: len(box.handled) < n, self.transport)
        self.clock.wall = lambda: self.t  # type: ignore[attr-defined]

    def _on_inbound(self, inbound: object, now: float) -> None:
        super()._on_inbound(inbound, now)
        self.steps.append("EXECUTE" if inbound == 0 else "HEARTBEAT")
        self._ran = inbound == 0

    def _flush(self, now: float) -> None:
        self.steps.append("flush")
        self._urgent = False

    def _results_now(self) -> None:
        Agent._results_now(self)  # type: ignore[arg-type]


def test_a_result_ready_after_an_execute_leaves_before_the_next_mailbox_message() -> None:
    """The worker wrote its DONE while the loop handed it the run (it ran on the loop's
    core): the RESULT left only after the turn's other messages (a replication round's
    rows, 250-400 µs) and the next poll. Now the workers' links are read right after the
    EXECUTE's message and the RESULT is flushed before the next message is handled."""
    box = _RunMailbox(done_ready=True)
    assert Agent._handle_mailbox(box) == 2  # type: ignore[arg-type]
    assert box.steps == ["EXECUTE", "read workers", "flush", "HEARTBEAT"]
    idle = _RunMailbox(done_ready=False)  # the worker on the other core, not done yet
    assert Agent._handle_mailbox(idle) == 2  # type: ignore[arg-type]
    assert idle.steps == ["EXECUTE", "read workers", "HEARTBEAT"]  # one poll, nothing sent
    # Nothing else in the mailbox: the result goes with the end of the turn's flush, just
    # before the loop sleeps (a send in the middle of the turn waited for ZeroMQ's I/O thread).
    alone = _RunMailbox(done_ready=True, n=1)
    assert Agent._handle_mailbox(alone) == 1  # type: ignore[arg-type]
    assert alone.steps == ["EXECUTE", "read workers"]
    assert alone._urgent  # (queued, for the turn's flush)
