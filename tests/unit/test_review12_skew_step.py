"""The offset estimate under faults (review12, clerk._clockskew): a manager whose wall clock
steps back is followed at its next heartbeat, so a corrected node does not hold its runs to
due times earlier than the manager's for the rest of the window; heartbeats that waited in a
frozen node's socket do not raise the estimate; the OFFER's runs keep the times their manager
sent (AsSent); an ACK reports no offset taken from another manager's stamps."""

from __future__ import annotations

import functools

import pytest

from clerk._clockskew import WINDOW_S, SkewEstimator, local_due

pytestmark = pytest.mark.timeout(30)


def _beats(est: SkewEstimator, mono0: float, stamp0_ms: int, n: int, delay: float = 0.001,
           gap: float = 0.1) -> float:
    for i in range(n):
        est.sample("m/1", stamp0_ms + round(i * gap * 1000), mono0 + i * gap + delay)
    return mono0 + (n - 1) * gap + delay


@pytest.mark.parametrize("step_s", [0.5, 2.0, 30.0])
def test_a_manager_clock_stepping_back_is_followed_at_its_next_heartbeat(step_s: float) -> None:
    # This node is 2 s behind the manager (offset -2 s); then the manager's clock steps back
    # by step_s, so the true offset becomes -2 + step_s.
    est = SkewEstimator()
    mono0, manager0 = 100.0, 1_800_000_000.0
    offset = -2.0
    mono = _beats(est, mono0, round(manager0 * 1000), 20)
    wall = lambda m: manager0 + (m - mono0) + offset  # noqa: E731 (this node's wall clock)
    assert est.offset(mono, wall(mono)) == pytest.approx(offset, abs=0.002)
    # One heartbeat after the step (the manager's clock reads step_s less).
    mono += 0.1
    stamp = round((manager0 + (mono - 0.001 - mono0) - step_s) * 1000)
    est.sample("m/1", stamp, mono)
    off = est.offset(mono, wall(mono))
    assert off is not None
    true = offset + step_s
    assert off >= true - 0.002, (off, true)  # never below: a run held to it is never early
    # A run due 50 ms after the step by the manager's (new) clock is not held to a due time
    # earlier than that on this node's clock.
    due_ms = stamp + 50
    moved = local_due(off, due_ms, due_ms + 1000)
    local = moved[0] if moved is not None else due_ms
    assert local >= due_ms + true * 1000 - 2, (local, due_ms + true * 1000)
    assert mono - mono0 < WINDOW_S  # (within the window that held the old samples)


def test_a_late_heartbeat_does_not_restart_the_window() -> None:
    """Only a stamp before the previous one restarts it: a delayed heartbeat (queuing) keeps
    the window's minimum."""
    est = SkewEstimator()
    mono = _beats(est, 10.0, 1_000_000, 10)
    est.sample("m/1", 1_000_000 + 1000, mono + 0.1 + 0.3)  # 300 ms late
    assert est.offset(mono + 0.4, 1_000.0 + (mono + 0.4 - 10.0)) == pytest.approx(0.001,
                                                                                   abs=1e-6)


def test_heartbeats_that_waited_past_the_window_do_not_raise_the_estimate() -> None:
    """A node frozen 6.5 s (its clock agrees with the manager's) reads on waking the stamps
    queued meanwhile, each ~6.5 s late: the window is by stamps, so the ones from before the
    freeze stay in it and an EXECUTE queued with them is not moved 6.5 s later (as late as
    the stamps) but judged late (tests/integration/test_review12_skew_frozen.py)."""
    est = SkewEstimator()
    mono0, manager0 = 50.0, 1_800_000_000.0
    wall = lambda m: manager0 + (m - mono0)  # noqa: E731 (offset 0)
    mono = _beats(est, mono0, round(manager0 * 1000), 20)  # until mono0 + 1.9
    frozen = mono + 6.5
    assert est.offset(frozen, wall(frozen)) is None  # nothing heard for 6.5 s: no estimate
    # The heartbeats sent in the freeze's first 1.5 s (until the manager gave up on it).
    for i in range(15):
        stamp = round((manager0 + 2.0 + i * 0.1) * 1000)
        est.sample("m/1", stamp, frozen + i * 0.0001)
        off = est.offset(frozen + i * 0.0001, wall(frozen + i * 0.0001))
        assert off is not None and abs(off) < 0.005, off
        assert local_due(off, stamp, stamp + 200) is None  # not moved: judged late


def test_as_sent_keeps_the_runs_in_flight_and_the_one_just_noted() -> None:
    """clerk._clockskew.AsSent: an OFFER's runs with the times their manager sent; pruned to
    the runs in flight when it doubles, never dropping the run being noted (it reaches the
    executor only after it is noted)."""
    from clerk._clockskew import AsSent
    from clerk._offerruns import OfferedRun

    sent = AsSent()
    in_flight: set[str] = set()
    for i in range(200):
        run = f"r{i}"
        sent.note(run, 1000 + i, 2000 + i, functools.partial(frozenset, in_flight))
        in_flight = {run}  # only the last one is still in flight
        got = sent.offered([OfferedRun("t", i, run, 1, 5, 6)])
        assert (got[0].due_ms, got[0].deadline_ms) == (1000 + i, 2000 + i), (i, got)
    assert len(sent._sent) <= 64
    other = OfferedRun("t", 1, "never-moved", 1, 5, 6)
    assert sent.offered([other]) == [other]


def test_an_ack_reports_no_offset_to_another_manager_than_the_estimates() -> None:
    """A follower's ACK reports its estimate only to the manager whose stamps made it: an
    unstamped heartbeat of a new manager (one outside its rounds) answered while the window
    still holds the previous manager's stamps put that manager's offset in the new one's
    ``member_clocks``."""
    from clerk._clockskew import CLOCK_MARK
    from clerk._heartbeats import acknowledge
    from clerk._messages import Ack, Heartbeat

    from .corenet import Net

    net = Net()
    a = net.node("a", 9, incarnation="a-1" + CLOCK_MARK)
    b = net.node("b", 1, seeds=["a"], incarnation="b-1" + CLOCK_MARK)
    wall0 = 1_800_000_000.0
    a.wall_ms = lambda: int((wall0 + net.now) * 1000)
    b.wall_ms = lambda: int((wall0 + net.now - 2.0) * 1000)
    net.advance(1.0)
    assert b.clock_skew.source == f"a/{a.me.incarnation}"
    # The window now holds another manager's stamps (b followed "old" 5 s ahead of a).
    b.clock_skew.sample("old/1" + CLOCK_MARK, int((wall0 + net.now + 5.0) * 1000), net.now)
    b._out.clear()
    beat = Heartbeat(a.me, a.term, 10_000, a.members.epoch, a.members.infos(), None)
    acknowledge(b, beat, net.now)
    acks = [e.msg for e in b._out if isinstance(e.msg, Ack)]
    assert acks and acks[-1].clock_ms is None, acks
