"""The agent loop's poll timeout (clerk._agent.poll_timeout_ms): one wake-up per timer unless a
run waits for the tick to start on time."""

from __future__ import annotations

from clerk._agent import poll_timeout_ms


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
