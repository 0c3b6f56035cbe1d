"""Injected clocks: the fake one moves only when told to, and never backwards."""

import pytest

from clerk._clock import Clock, FakeClock, SystemClock


def test_fake_clock_starts_where_told_and_stands_still():
    c = FakeClock(monotonic=5.0, wall=100.0)
    assert (c.monotonic(), c.wall()) == (5.0, 100.0)
    assert (c.monotonic(), c.wall()) == (5.0, 100.0)


def test_fake_clock_defaults_are_floats():
    c = FakeClock()
    assert isinstance(c.monotonic(), float) and isinstance(c.wall(), float)
    assert c.wall() > 1.7e9  # a plausible Unix time, so grid arithmetic looks real


def test_fake_clock_advance_moves_both_readings_together():
    c = FakeClock(monotonic=1.0, wall=1000.0)
    assert c.advance(0.25) == 1.25
    assert c.advance(0) == 1.25
    assert (c.monotonic(), c.wall()) == (1.25, 1000.25)
    c.advance(3600)
    assert (c.monotonic(), c.wall()) == (3601.25, 4600.25)


def test_fake_clock_never_goes_backwards():
    c = FakeClock(monotonic=10.0, wall=20.0)
    with pytest.raises(ValueError, match="backwards"):
        c.advance(-0.001)
    assert (c.monotonic(), c.wall()) == (10.0, 20.0)


def test_clocks_satisfy_the_protocol_and_repr():
    assert isinstance(FakeClock(), Clock)
    assert isinstance(SystemClock(), Clock)
    assert "FakeClock(monotonic=2.0" in repr(FakeClock(monotonic=2))
    assert repr(SystemClock()) == "SystemClock()"


def test_system_clock_is_sane():
    import time

    c = SystemClock()
    m1, w1 = c.monotonic(), c.wall()
    m2, w2 = c.monotonic(), c.wall()
    assert m2 >= m1
    assert abs(w1 - time.time()) < 5.0
    assert abs(w2 - w1) < 5.0
    assert w1 > 1.7e9
