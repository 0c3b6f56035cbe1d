"""Clock offsets to the manager (clerk._clockskew): the estimate from heartbeat stamps, its
one-sided error, its window, and how EXECUTE's times move into the node's time base."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._clock import TEST_OFFSET_ENV, skew_for_tests
from clerk._clockskew import (
    CLOCK_MARK,
    CORRECT_MS,
    WINDOW_S,
    SkewEstimator,
    local_due,
    reads_clock,
)
from clerk._messages import Heartbeat

from .corenet import Net

pytestmark = pytest.mark.timeout(60)


def test_no_stamp_no_estimate():
    est = SkewEstimator()
    assert est.offset(10.0, 1000.0) is None
    assert est.status(10.0, 1000.0)["offset_ms"] is None


def test_minimum_filters_queuing_delay_and_errs_only_upwards():
    # This node's clock is 2 s behind: wall = manager's wall - 2. Delays 1-30 ms, one 0.4 ms.
    est = SkewEstimator()
    mono0, wall0, offset = 100.0, 1_800_000_000.0, -2.0
    rng = random.Random(1)
    for i in range(40):
        sent = wall0 + i * 0.1  # the manager's wall time at the stamp
        delay = 0.0004 if i == 17 else rng.uniform(0.001, 0.030)
        est.sample("m/1", round(sent * 1000), mono0 + i * 0.1 + delay)
    mono = mono0 + 4.0
    off = est.offset(mono, mono - mono0 + wall0 + offset)
    assert off is not None
    assert offset <= off + 0.0005  # (the stamp's ms rounding)
    assert off - offset < 0.0015  # the smallest delay (0.4 ms) and the rounding


def test_own_clock_step_does_not_age_the_window():
    est = SkewEstimator()
    for i in range(10):
        est.sample("m/1", 1_000_000 + i * 100, 50.0 + i * 0.1)  # offset 0, no delay
    # Our wall clock is stepped 3 s forward: the offset follows at once, no new stamp needed.
    mono = 51.0
    assert est.offset(mono, 1000.0 + (mono - 50.0)) == pytest.approx(0.0, abs=1e-6)
    assert est.offset(mono, 1003.0 + (mono - 50.0)) == pytest.approx(3.0, abs=1e-6)


def test_window_expires_and_a_new_manager_starts_over():
    est = SkewEstimator()
    est.sample("m/1", 1_000_000, 10.0)
    assert est.offset(10.0 + WINDOW_S - 0.01, 0.0) is not None
    assert est.offset(10.0 + WINDOW_S + 0.01, 0.0) is None  # no stamp for a whole window
    est.sample("m/1", 1_000_000, 20.0)  # sample value 20 - 1000 = -980
    est.sample("n/1", 1_000_000, 20.5)  # another manager: its own window only
    assert est.source == "n/1" and est.count == 1
    assert est.offset(20.5, 20.5) == pytest.approx(20.5 - 1000.0)


@settings(max_examples=200, deadline=None)
@given(offset=st.floats(-30, 30), delays=st.lists(st.floats(0, 0.5), min_size=1, max_size=80),
       step=st.floats(0.01, 0.3))
def test_estimate_is_never_below_the_offset(offset, delays, step):
    """The property the tolerance rests on: every sample is offset + a delay >= 0, so the
    estimate is at least the offset (within the stamp's 1 ms rounding) and above it by the
    smallest delay of the window."""
    est = SkewEstimator()
    mono0, wall0 = 7.0, 1_800_000_000.0
    t = 0.0
    for d in delays:
        sent_ms = int((wall0 + t) * 1000)  # stamps are whole ms, truncated like int()
        est.sample("m/1", sent_ms, mono0 + t + d)
        t += step
    mono = mono0 + t
    off = est.offset(mono, wall0 + t + offset)
    window = [d for i, d in enumerate(delays) if i * step >= t - WINDOW_S]
    if not window:
        assert off is None
        return
    assert off is not None
    assert off >= offset - 1e-6
    assert off <= offset + min(window) + 0.001 + 1e-6


def test_local_due_moves_only_past_the_threshold_and_rounds_safely():
    assert local_due(None, 5000, 6000) is None
    assert local_due(CORRECT_MS / 1000 / 2, 5000, 6000) is None
    assert local_due(-2.0, 5000, 6000) == (3000, 4000)
    assert local_due(0.0105, 5000, 0) == (5011, 0)  # due rounded up, 0 stays "not given"
    assert local_due(0.0105, 0, 6000) == (0, 6010)  # deadline rounded down


def test_test_offset_env_is_checked():
    assert skew_for_tests({}) == 0.0
    assert skew_for_tests({TEST_OFFSET_ENV: "-2.5"}) == -2.5
    with pytest.raises(ValueError, match=TEST_OFFSET_ENV):
        skew_for_tests({TEST_OFFSET_ENV: "two"})
    with pytest.raises(ValueError, match="finite number of seconds within a day"):
        skew_for_tests({TEST_OFFSET_ENV: "1e9"})


def test_manager_stamps_heartbeats_only_to_members_that_read_them():
    """A member of an older build (no CLOCK_MARK) gets heartbeats without ``wall_ms`` (it
    would refuse the field); a member with the mark gets the stamp and estimates its offset."""
    net = Net()
    a = net.node("a", 9, incarnation="a-1" + CLOCK_MARK)
    b = net.node("b", 1, seeds=["a"], incarnation="b-1" + CLOCK_MARK)
    c = net.node("c", 1, seeds=["a"], incarnation="c-1")
    assert reads_clock(b.me.incarnation) and not reads_clock(c.me.incarnation)
    wall0 = 1_800_000_000.0
    # a's wall clock: our fake wall is net.now + wall0; b is 2 s behind a (so b's wall is
    # net.now + wall0 - 2); no network delay in this net.
    a.wall_ms = lambda: int((wall0 + net.now) * 1000)
    b.wall_ms = lambda: int((wall0 + net.now - 2.0) * 1000)
    c.wall_ms = lambda: int((wall0 + net.now + 5.0) * 1000)  # (it gets no stamp to use)
    mark = len(net.log)
    net.advance(1.0)
    beats = [(src, e) for _, src, e in net.log[mark:]
             if type(getattr(e, "msg", None)) is Heartbeat]
    to_b = [e.msg for _, e in beats if e.to == b.me.address]
    to_c = [e.msg for _, e in beats if e.to == c.me.address]
    assert to_b and to_c
    assert all(m.wall_ms is not None for m in to_b if m.members is None and m.table is None)
    assert all(m.wall_ms is None for m in to_c)
    off = b.clock_skew.offset(net.now, wall0 + net.now - 2.0)
    assert off == pytest.approx(-2.0, abs=0.0011)
    assert c.clock_skew.offset(net.now, wall0 + net.now) is None
    # b reports its offset in its ACKs (a reads them: CLOCK_MARK); the manager's status shows
    # it. c, of an older build, reports nothing. Followers show no member's clock.
    net.advance(1.0)
    clocks = a.status()["member_clocks"]
    assert set(clocks) == {"b"} and abs(clocks["b"] + 2000) <= 1.1, clocks
    assert "member_clocks" not in b.status()


def test_a_delayed_execute_is_still_late_in_the_managers_time_base():
    """The window's estimate, not the EXECUTE's own send time, moves its due time: a message
    held 500 ms in the network (interval 200 ms) is refused as late by a node 2 s behind,
    where an offset taken from that message alone would have absorbed the delay."""
    from clerk._lead import too_late

    est = SkewEstimator()
    for i in range(20):  # heartbeats, 0.3 ms on the way; the node's clock is 2 s behind
        est.sample("m/1", 1_000_000 + i * 100, 50.0 + i * 0.1 + 0.0003)
    mono = 52.0
    wall = 1000.0 + (mono - 50.0) - 2.0  # the node's wall clock
    due_ms, deadline_ms = int((1000.0 + 1.5) * 1000), int((1000.0 + 3.5) * 1000)
    # The EXECUTE was sent at 1001.48 (manager's clock) and arrives now (1002.0): 500 ms late.
    moved = local_due(est.offset(mono, wall), due_ms, deadline_ms)
    assert moved is not None
    assert "after its slot was due" in too_late(wall * 1000, moved[0], moved[1], 200)
    per_message = wall - 1001.48  # what the message's own stamp would say: -1.48 s
    alone = local_due(per_message, due_ms, deadline_ms)
    assert alone is not None and too_late(wall * 1000, alone[0], alone[1], 200) == ""


def test_the_human_status_shows_the_offset():
    from clerk.__main__ import render_status

    est = SkewEstimator()
    est.sample("n1@h/abc+c", 1_000_000, 10.0)
    st = {"node": "n2", "role": "follower", "manager": "n1@h", "clock": est.status(10.0, 998.0)}
    assert st["clock"]["manager"] == "n1@h" and st["clock"]["samples"] == 1
    text = render_status(st)
    assert "clock: -2000.0 ms from the manager's (runs held and judged" in text
    assert "clock:" not in render_status({**st, "clock": {"offset_ms": None}})
    assert "clock:" not in render_status({k: v for k, v in st.items() if k != "clock"})
    boss = render_status({"node": "n1", "manager": "n1", "clock": {"offset_ms": None},
                          "member_clocks": {"n3": 0.2, "n2": -2000.0}})
    assert "member clocks (ms from the manager's): n2 -2000.0, n3 +0.2" in boss
