"""Restart intensity as a pure function of timestamps (OTP's add_restart/3), fake time."""

from hypothesis import given
from hypothesis import strategies as st

from supervisor._intensity import RestartIntensity, add_restart


def test_defaults_allow_one_restart_per_five_seconds():
    r = RestartIntensity()
    assert (r.intensity, r.period) == (1, 5.0)
    assert r.record(100.0) is True
    assert r.record(104.0) is False  # second restart within 5 s: give up


def test_restarts_older_than_period_are_forgotten():
    r = RestartIntensity(intensity=1, period=5)
    assert r.record(0.0)
    assert r.record(5.5)  # the one at 0.0 is out of the window
    assert r.record(11.0)
    assert r.restarts == (11.0,)


def test_boundary_is_inclusive_like_otp():
    history, ok = add_restart((0.0,), 5.0, intensity=1, period=5)
    assert not ok and history == (5.0, 0.0)
    history, ok = add_restart((0.0,), 5.001, intensity=1, period=5)
    assert ok and history == (5.001,)


def test_intensity_zero_never_restarts():
    assert RestartIntensity(intensity=0, period=5).record(1.0) is False


def test_more_than_intensity_in_period_gives_up():
    r = RestartIntensity(intensity=3, period=10)
    assert [r.record(t) for t in (0, 1, 2, 3)] == [True, True, True, False]


def test_burst_after_quiet_period_is_allowed_again():
    r = RestartIntensity(intensity=2, period=1)
    assert r.record(0.0) and r.record(0.1)
    assert r.record(5.0) and r.record(5.1)
    assert not r.record(5.2)


@given(
    st.integers(min_value=0, max_value=5),
    st.floats(min_value=0.1, max_value=10),
    st.lists(st.floats(min_value=0, max_value=100), max_size=30),
)
def test_matches_a_direct_count_of_restarts_in_the_window(intensity, period, gaps):
    history: tuple[float, ...] = ()
    now = 0.0
    times: list[float] = []
    for gap in gaps:
        now += gap
        times.append(now)
        history, ok = add_restart(history, now, intensity, period)
        in_window = [t for t in times if now - t <= period]
        assert ok == (len(in_window) <= intensity)
        assert len(history) == len(in_window)
