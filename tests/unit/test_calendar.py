"""The calendar grids (clerk._calendar): cron fire times across DST changes in three zones
(Europe/Berlin; Australia/Lord_Howe, whose DST shift is 30 minutes; Australia/Adelaide, a
southern-hemisphere half-hour zone), leap days, month ends, macros, seconds, and a property test
against cronsim's own forward iteration."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._calendar import (
    COUNT_EXACT,
    CronGrid,
    IntervalGrid,
    due_datetime,
    due_in_zone,
    parse_cron,
    phase_ms,
)
from clerk._tasks import TaskDef


def at(zone: str, *parts: int, fold: int = 0) -> int:
    """Unix seconds of a local wall time in ``zone``."""
    return int(datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold).timestamp())  # type: ignore[misc, arg-type]


def fires(grid: CronGrid, start: int, n: int) -> list[str]:
    """The next ``n`` fire times after ``start``, as local ISO strings."""
    out, t = [], start
    for _ in range(n):
        nxt = grid.next_after(t)
        assert nxt is not None
        out.append(datetime.fromtimestamp(nxt, grid.zone).isoformat())
        t = nxt
    return out


def walk(grid: CronGrid, start: int, end: int, step: int) -> list[int]:
    """The distinct slots a fake clock sees, stepping from ``start`` to ``end``."""
    seen: list[int] = []
    for t in range(start, end, step):
        slot = grid.slot_at(t * 1000 + 999)
        if not seen or slot != seen[-1]:
            seen.append(slot)
    return seen


# --- DST: Debian cron's rule ---------------------------------------------------------------


def test_berlin_fixed_time_runs_once_on_both_dst_nights() -> None:
    g = CronGrid("30 2 * * *", "Europe/Berlin")
    # Spring forward 2026-03-29 02:00 -> 03:00: 02:30 does not exist, it runs at 03:00.
    assert fires(g, at("Europe/Berlin", 2026, 3, 28, 12), 2) == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    # Fall back 2026-10-25 03:00 -> 02:00: 02:30 happens twice, it runs at the first.
    assert fires(g, at("Europe/Berlin", 2026, 10, 24, 12), 2) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    # Asked from inside the repeated hour (02:10 CET, after 02:30 CEST ran), the library
    # proposes 02:30 CEST again, which is behind: the grid goes on to the next day.
    second_0210 = at("Europe/Berlin", 2026, 10, 25, 2, 10, fold=1)
    assert fires(g, second_0210, 1) == ["2026-10-26T02:30:00+01:00"]
    assert g.slot_at(second_0210 * 1000) == at("Europe/Berlin", 2026, 10, 25, 2, 30)


def test_berlin_hourly_runs_by_elapsed_time() -> None:
    g = CronGrid("30 * * * *", "Europe/Berlin")
    assert fires(g, at("Europe/Berlin", 2026, 3, 29, 1), 2) == [
        "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00"]
    assert fires(g, at("Europe/Berlin", 2026, 10, 25, 2), 3) == [
        "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-25T03:30:00+01:00"]


def test_lord_howe_half_hour_shift() -> None:
    # DST starts 2026-10-04 02:00 -> 02:30: 02:15 does not exist, runs at 02:30.
    g = CronGrid("15 2 * * *", "Australia/Lord_Howe")
    assert fires(g, at("Australia/Lord_Howe", 2026, 10, 3, 12), 2) == [
        "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]
    # DST ends 2026-04-05 02:00 -> 01:30: 01:45 happens twice, runs once (the first).
    g = CronGrid("45 1 * * *", "Australia/Lord_Howe")
    assert fires(g, at("Australia/Lord_Howe", 2026, 4, 4, 12), 2) == [
        "2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]
    # Every 15 minutes runs by elapsed time: the repeated half hour runs again.
    g = CronGrid("*/15 * * * *", "Australia/Lord_Howe")
    assert fires(g, at("Australia/Lord_Howe", 2026, 4, 5, 1, 20), 4) == [
        "2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00",
        "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30"]


def test_adelaide_southern_hemisphere() -> None:
    g = CronGrid("30 2 * * *", "Australia/Adelaide")
    assert fires(g, at("Australia/Adelaide", 2026, 10, 3, 12), 2) == [
        "2026-10-04T03:00:00+10:30", "2026-10-05T02:30:00+10:30"]
    assert fires(g, at("Australia/Adelaide", 2026, 4, 4, 12), 2) == [
        "2026-04-05T02:30:00+10:30", "2026-04-06T02:30:00+09:30"]


def test_seconds_follow_the_same_dst_rule() -> None:
    g = CronGrid("15 30 2 * * *", "Europe/Berlin")
    assert fires(g, at("Europe/Berlin", 2026, 3, 28, 12), 1) == ["2026-03-29T03:00:15+02:00"]
    assert fires(g, at("Europe/Berlin", 2026, 10, 24, 12), 2) == [
        "2026-10-25T02:30:15+02:00", "2026-10-26T02:30:15+01:00"]


def test_fake_clock_walk_over_fall_back_night_sees_each_fire_time_once() -> None:
    g = CronGrid("0,30 2 * * *", "Europe/Berlin")
    start, end = at("Europe/Berlin", 2026, 10, 24, 23), at("Europe/Berlin", 2026, 10, 26, 4)
    slots = walk(g, start, end, 7)
    local = [datetime.fromtimestamp(s, g.zone).isoformat() for s in slots]
    assert local == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:00:00+02:00",
                     "2026-10-25T02:30:00+02:00", "2026-10-26T02:00:00+01:00",
                     "2026-10-26T02:30:00+01:00"]
    assert slots == sorted(set(slots))


def test_fake_clock_walk_over_spring_gap_runs_once_after_the_jump() -> None:
    g = CronGrid("0,15,30,45 2 * * *", "Australia/Adelaide")
    start, end = at("Australia/Adelaide", 2026, 10, 3, 23), at("Australia/Adelaide", 2026, 10, 4, 4)
    local = [datetime.fromtimestamp(s, g.zone).isoformat() for s in walk(g, start, end, 13)]
    # The four times inside the gap collapse into one run at 03:00.
    assert local == ["2026-10-03T02:45:00+09:30", "2026-10-04T03:00:00+10:30"]


# --- calendar corners --------------------------------------------------------------------------


def test_leap_day_and_month_ends() -> None:
    g = CronGrid("0 12 29 2 *", "UTC")
    assert fires(g, at("UTC", 2026, 1, 1), 2) == ["2028-02-29T12:00:00+00:00",
                                                  "2032-02-29T12:00:00+00:00"]
    assert g.slot_at(at("UTC", 2031, 6, 1) * 1000) == at("UTC", 2028, 2, 29, 12)
    last = CronGrid("0 0 L * *", "UTC")
    assert fires(last, at("UTC", 2028, 1, 5), 3) == [
        "2028-01-31T00:00:00+00:00", "2028-02-29T00:00:00+00:00", "2028-03-31T00:00:00+00:00"]
    day31 = CronGrid("0 0 31 * *", "UTC")  # months without a 31st are skipped
    assert fires(day31, at("UTC", 2026, 3, 5), 3) == [
        "2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00", "2026-07-31T00:00:00+00:00"]


def test_yearly_and_other_macros() -> None:
    g = CronGrid("@yearly", "Europe/Berlin")
    assert g.slot_at(at("Europe/Berlin", 2026, 7, 1) * 1000) == at("Europe/Berlin", 2026, 1, 1)
    assert g.due_ms(at("Europe/Berlin", 2026, 1, 1) + 1) == at("Europe/Berlin", 2027, 1, 1) * 1000
    assert g.count(at("UTC", 2020, 1, 1), at("UTC", 2030, 1, 1)) == 10
    assert parse_cron("@annually") == parse_cron("0 0 1 1 *")
    assert parse_cron("@hourly") == ("0 * * * *", (0,))
    assert parse_cron("@WEEKLY") == ("0 0 * * 0", (0,))
    assert parse_cron("0 0 * * mon-fri")[0] == "0 0 * * mon-fri"  # names are the library's


def test_seconds_field_and_counting() -> None:
    assert parse_cron("*/20 * * * * *") == ("* * * * *", (0, 20, 40))
    g = CronGrid("*/20 * * * * *", "UTC")
    t0 = at("UTC", 2026, 12, 2, 3)
    assert g.slot_at(t0 * 1000 + 25_000) == t0 + 20
    assert g.due_ms(t0 + 21) == (t0 + 40) * 1000
    assert g.count(t0, t0 + 3600) == 180
    # Past COUNT_EXACT the count is extrapolated; for a regular grid it is still exact.
    every = CronGrid("* * * * * *", "UTC")
    assert COUNT_EXACT < 86_400
    assert every.count(t0, t0 + 86_400) == 86_400


def test_interval_grid_is_phase_plus_k_interval() -> None:
    g = IntervalGrid("t", 1000)
    assert g.phase == phase_ms("t", 1000)
    assert g.due_ms(5) == g.phase + 5000
    assert g.slot_at(g.phase + 5000) == 5 and g.slot_at(g.phase + 4999) == 4
    assert g.count(3, 7) == 4 and g.count(7, 3) == 0


def test_due_datetime_is_utc_for_intervals_and_the_zone_for_cron() -> None:
    interval = TaskDef(name="i", target="m:C", interval=1000)
    cron = TaskDef(name="c", target="m:C", interval=None, cron="30 2 * * *",
                   timezone="Europe/Berlin")
    ms = at("Europe/Berlin", 2026, 3, 29, 3) * 1000
    assert due_datetime(interval, ms).isoformat() == "2026-03-29T01:00:00+00:00"
    assert due_datetime(cron, ms).isoformat() == "2026-03-29T03:00:00+02:00"
    shown = TaskDef(name="i", target="m:C", interval=1000, timezone="Asia/Kolkata")
    assert due_datetime(shown, ms).isoformat() == "2026-03-29T06:30:00+05:30"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "why"), [
    ("61 * * * *", "not a valid cron expression"),
    ("* * *", "has 3 fields"),
    ("@reboot", "unknown macro"),
    ("0 0 30 2 *", "not a valid cron expression"),
    ("", "must be a cron expression"),
])
def test_bad_expressions_say_why(expr: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cron(expr)


def test_without_the_library_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cronsim", None)
    with pytest.raises(ValueError, match=r'pip install "clerk-cluster\[cron\]"'):
        parse_cron("* * * * *")


# --- property: strictly increasing, and the library's own sequence -----------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
         "Australia/Adelaide", "Asia/Kolkata"]
EXPRS = ["30 2 * * *", "0,30 1-3 * * *", "*/7 * * * *", "15 * * * *", "0 0 L * *",
         "0 12 * * MON#1", "45 1 * 3,4,10,11 SUN", "@daily", "5 */3 * * 1-5"]
# Years with DST changes in every zone above; the strategy lands on transition days often.
START = at("UTC", 2026, 1, 1)
END = at("UTC", 2027, 1, 1)
TRANSITIONS = [at("UTC", 2026, m, d) for m, d in ((3, 8), (3, 29), (4, 5), (10, 4), (10, 25),
                                                  (11, 1))]


@st.composite
def instants(draw: st.DrawFn) -> int:
    if draw(st.booleans()):
        return draw(st.sampled_from(TRANSITIONS)) + draw(st.integers(-86_400, 86_400))
    return draw(st.integers(START, END))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=st.sampled_from(EXPRS), zone=st.sampled_from(ZONES), t=instants())
def test_fire_times_increase_and_match_the_library(expr: str, zone: str, t: int) -> None:
    grid = CronGrid(expr, zone)
    five, _ = parse_cron(expr)
    # The library's own forward iteration, started two days earlier, defines the sequence.
    lib = CronSim(five, datetime.fromtimestamp(t - 2 * 86_400, ZoneInfo(zone)))
    expected: list[int] = []
    prev = None
    while len(expected) < 6:
        x = int(next(lib).timestamp())
        if x <= t:
            prev = x
        else:
            expected.append(x)
    ours: list[int] = []
    nxt = grid.next_after(t)
    while nxt is not None and len(ours) < 6:
        ours.append(nxt)
        nxt = grid.next_after(nxt)
    assert ours == expected
    assert all(a < b for a, b in zip(ours, ours[1:], strict=False))
    if prev is not None:
        assert grid.at_or_before(t) == prev
        assert grid.slot_at(t * 1000 + 500) == prev
        assert grid.due_ms(prev + 1) == expected[0] * 1000


@settings(max_examples=60, deadline=None)
@given(t=st.integers(START, END), step=st.sampled_from([1, 5, 15]))
def test_six_fields_match_the_library_in_utc(t: int, step: int) -> None:
    expr = f"*/{step} 10-12 * * * *"
    grid = CronGrid(expr, "UTC")
    lib = CronSim(expr, datetime.fromtimestamp(t, UTC))
    t_next = t
    for _ in range(5):
        expected = int(next(lib).timestamp())
        t_next = grid.next_after(t_next)  # type: ignore[assignment]
        assert t_next == expected
    assert datetime.fromtimestamp(t_next, UTC) - datetime.fromtimestamp(t, UTC) < timedelta(days=1)


def _due_in_zone_before(due_ms: float, zone: str) -> datetime:
    """clerk._calendar.due_in_zone as it was: the UTC instant, then ``astimezone``."""
    when = datetime.fromtimestamp(due_ms / 1000, UTC)
    try:
        return when.astimezone(ZoneInfo(zone))
    except (ValueError, KeyError):
        return when


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(min_value=0, max_value=4_102_444_800_000, allow_nan=False),
       st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                        "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Chatham"]))
def test_due_in_zone_in_one_step_is_the_conversion_it_replaced(ms: float, zone: str) -> None:
    """The same datetime, zone object, offset and fold as the UTC instant converted with
    ``astimezone`` (what due_in_zone did before it converted in one step)."""
    got, want = due_in_zone(ms, zone), _due_in_zone_before(ms, zone)
    assert got == want and got.isoformat() == want.isoformat()
    assert got.tzinfo is want.tzinfo and got.fold == want.fold


@pytest.mark.parametrize(("zone", "day"), [("Europe/Berlin", (2026, 10, 25)),
                                           ("America/New_York", (2026, 11, 1))])
def test_due_in_zone_keeps_the_fold_of_a_repeated_hour(zone: str,
                                                       day: tuple[int, int, int]) -> None:
    """Both instants of an hour the clocks repeat (the end of summer time) keep their fold."""
    hour = 2 if zone == "Europe/Berlin" else 1
    for fold in (0, 1):
        ms = at(zone, *day, hour, 30, fold=fold) * 1000
        got = due_in_zone(ms, zone)
        assert got.fold == fold and got == _due_in_zone_before(ms, zone)
        assert (got.hour, got.minute) == (hour, 30)


def test_due_in_zone_of_a_zone_it_cannot_load_is_utc() -> None:
    got = due_in_zone(1_764_640_000_250, "No/Such_Zone")
    assert got.tzinfo is UTC and got == _due_in_zone_before(1_764_640_000_250, "No/Such_Zone")
