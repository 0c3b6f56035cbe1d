"""The offsets to earlier managers (clerk._clockskew.SkewEstimator.ahead_by_manager): kept by
name as the manager followed changes or the node takes over, so that a new manager moves a run
a member offered by its offset to the manager that sent it (review15)."""

from __future__ import annotations

import pytest

from clerk._clockskew import CORRECT_MS, PAST_KEEP_S, PAST_MAX, SkewEstimator

pytestmark = pytest.mark.timeout(30)

WALL0 = 1_800_000_000.0  # this node's wall clock at mono 0


def follow(est: SkewEstimator, source: str, ahead_s: float, mono0: float, n: int = 5,
           delay_s: float = 0.001) -> float:
    """``n`` heartbeats from ``source`` (a clock ``ahead_s`` behind this node's), one every
    100 ms from ``mono0``, each ``delay_s`` on its way; the monotonic time after the last."""
    mono = mono0
    for i in range(n):
        mono = mono0 + i * 0.1
        stamp_ms = int((WALL0 + mono - delay_s - ahead_s) * 1000)
        est.sample(source, stamp_ms, mono)
    return mono


def test_each_manager_followed_is_kept_by_name_through_a_takeover() -> None:
    est = SkewEstimator()
    mono = follow(est, "m1@h/i1", 4.0, 0.0)  # m1 is 4 s behind this node
    mono = follow(est, "m2@h/i2", 0.0, mono + 1.0)  # m2 agrees with this node
    est.reset()  # this node takes over
    got = est.ahead_by_manager(mono + 0.5, WALL0 + mono + 0.5)
    assert set(got) == {"m1@h", "m2@h"}
    assert got["m1@h"] == pytest.approx(4000, abs=2)  # (the delay and the ms truncation)
    assert got["m2@h"] == 0.0  # within CORRECT_MS: no shift, as local_due takes it
    assert est.offset(mono + 0.5, WALL0 + mono + 0.5) is None  # (no source now)


def test_the_current_source_counts_even_past_the_window() -> None:
    est = SkewEstimator()
    mono = follow(est, "m1@h/i1", 2.0, 0.0)
    later = mono + 30.0  # the manager died 30 s ago: no estimate for EXECUTEs, but kept here
    assert est.offset(later, WALL0 + later) is None
    assert est.ahead_by_manager(later, WALL0 + later)["m1@h"] == pytest.approx(2000, abs=2)


def test_behind_or_within_the_threshold_is_no_shift() -> None:
    est = SkewEstimator()
    mono = follow(est, "m1@h/i1", -3.0, 0.0)  # m1 3 s ahead of us: we are behind it
    mono = follow(est, "m2@h/i1", CORRECT_MS / 2000, mono + 1.0)
    got = est.ahead_by_manager(mono, WALL0 + mono)
    assert got == {"m1@h": 0.0, "m2@h": 0.0}


def test_a_restarted_manager_replaces_its_name_and_old_ones_are_forgotten() -> None:
    est = SkewEstimator()
    mono = follow(est, "m1@h/i1", 4.0, 0.0)
    mono = follow(est, "m2@h/i1", 1.0, mono + 1.0)
    mono = follow(est, "m1@h/i2", 0.5, mono + 1.0)  # m1 again, restarted: its newest clock
    est.reset()
    got = est.ahead_by_manager(mono, WALL0 + mono)
    assert got["m1@h"] == pytest.approx(500, abs=2) and got["m2@h"] == pytest.approx(1000, abs=2)
    late = mono + PAST_KEEP_S + 1.0
    assert est.ahead_by_manager(late, WALL0 + late) == {}


def test_at_most_past_max_managers_the_oldest_dropped() -> None:
    est = SkewEstimator()
    mono = 0.0
    for i in range(PAST_MAX + 3):
        mono = follow(est, f"m{i}@h/i", 1.0, mono + 1.0, n=1)
    est.reset()
    got = est.ahead_by_manager(mono, WALL0 + mono)
    assert len(got) == PAST_MAX
    assert "m0@h" not in got and f"m{PAST_MAX + 2}@h" in got
