"""The Scheduler with cron tasks and catch_up, on a fake clock: each fire time once, the
failover window skipped and counted through the grid, catch_up = "last" running the most
recent missed fire time once, and next_due in the task's zone."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from clerk._schedule import CATCH_UP_GUARD_MS, Scheduler, TaskRecord, phase_ms
from clerk._tasks import TaskDef

NODES = {"a": ("t",), "b": ("t",)}
BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*parts: int, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=BERLIN, fold=fold).timestamp()  # type: ignore[misc, arg-type]


def cron_def(expr: str = "0,30 2 * * *", *, catch_up: str = "skip", instant: bool = False,
             zone: str = "Europe/Berlin") -> TaskDef:
    return TaskDef(name="t", target="x:Y", interval=None, cron=expr, timezone=zone,
                   catch_up=catch_up, instant=instant, timeout=500)


def sched(d: TaskDef) -> Scheduler:
    return Scheduler([d], random.Random(3))


def drive(s: Scheduler, start: float, end: float, step: float) -> list[tuple[int, float]]:
    """Tick from ``start`` to ``end``, answering every dispatch ok at once: (slot, wall)."""
    out: list[tuple[int, float]] = []
    t = start
    while t < end:
        ds, _ = s.tick(t, NODES)
        for d in ds:
            out.append((d.slot, t))
            s.on_result(d.task, d.run_id, d.node, "ok", len(out), 1.0, "", t + 0.001)
        t += step
    return out


def test_each_fire_time_runs_once_over_both_dst_nights() -> None:
    s = sched(cron_def())
    for night in ((2026, 3, 28, 22), (2026, 10, 24, 22)):
        start = berlin(*night)
        s.activate(start, graceful=False)
        runs = drive(s, start, start + 8 * 3600, 5.0)
        slots = [slot for slot, _ in runs]
        assert slots == sorted(set(slots)), "each fire time once, in order"
        for slot, when in runs:
            assert slot <= when < slot + 5.0, "run at its fire time (within one tick)"
        local = [datetime.fromtimestamp(x, BERLIN).strftime("%H:%M%z") for x in slots]
        if night[1] == 3:  # 02:00 and 02:30 do not exist: one run right after the jump
            assert local == ["03:00+0200"]
        else:  # 02:00 and 02:30 happen twice: each runs once, at its first occurrence
            assert local == ["02:00+0200", "02:30+0200"]
        s.deactivate()


def test_slot_ids_are_fire_times_and_next_due_is_in_the_zone() -> None:
    s = sched(cron_def("30 2 * * *"))
    s.activate(berlin(2026, 3, 28, 12), graceful=False)
    (row,) = s.status(berlin(2026, 3, 28, 12))
    assert row["next_due"] == "2026-03-29T03:00:00+02:00"
    assert (row["cron"], row["timezone"], row["catch_up"]) == ("30 2 * * *", "Europe/Berlin",
                                                               "skip")
    ((slot, _),) = drive(s, berlin(2026, 3, 29, 1, 59), berlin(2026, 3, 29, 3, 1), 1.0)
    assert slot == berlin(2026, 3, 29, 3)
    assert s.status(berlin(2026, 3, 29, 4))[0]["next_due"] == "2026-03-30T02:30:00+02:00"
    # A follower answers from the replicated table the same way.
    follower = sched(cron_def("30 2 * * *"))
    follower.load(s.table())
    assert follower.status(berlin(2026, 3, 29, 4))[0]["next_due"] == "2026-03-30T02:30:00+02:00"


def takeover(d: TaskDef, done: float, at: float) -> Scheduler:
    """A new manager at ``at`` with a table whose last finished slot is ``done``."""
    s = sched(d)
    s.load({"tasks": {"t": TaskRecord(slot=int(done), dispatched=int(done), runs=3,
                                      has_state=True, state=1).to_json()}})
    s.activate(at, graceful=False)
    return s


def test_crash_takeover_skips_and_counts_the_missed_fire_times() -> None:
    d = cron_def("*/10 * * * *", zone="UTC")
    base = datetime(2026, 12, 2, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    s = takeover(d, base, base + 30 * 60 + 5)  # 03:10, 03:20, 03:30 missed
    assert s.records["t"].counts["skipped"] == 3
    assert drive(s, base + 30 * 60 + 5, base + 41 * 60, 5.0)[0][0] == base + 40 * 60


def test_catch_up_last_runs_the_most_recent_missed_fire_time_once_at_start() -> None:
    d = cron_def("*/10 * * * *", zone="UTC", catch_up="last")
    base = datetime(2026, 12, 2, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    s = takeover(d, base, base + 30 * 60 + 7)
    runs = drive(s, base + 30 * 60 + 7, base + 41 * 60, 5.0)
    assert [slot for slot, _ in runs] == [base + 30 * 60, base + 40 * 60]
    assert runs[0][1] == base + 30 * 60 + 7, "at once, at the first tick"
    assert s.records["t"].counts["skipped"] == 2  # 03:10 and 03:20


def test_catch_up_never_runs_a_fire_time_the_dead_manager_may_just_have_sent() -> None:
    # 03:30 fell due 2 s before the takeover: the dead manager may have dispatched it without
    # the table showing it yet, so it is skipped; 03:20 certainly did not run: it is caught up.
    d = cron_def("*/10 * * * *", zone="UTC", catch_up="last")
    base = datetime(2026, 12, 2, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert CATCH_UP_GUARD_MS == 5000
    s = takeover(d, base, base + 30 * 60 + 2)
    runs = drive(s, base + 30 * 60 + 2, base + 41 * 60, 1.0)
    assert [slot for slot, _ in runs] == [base + 20 * 60, base + 40 * 60]
    assert s.records["t"].counts["skipped"] == 2  # 03:10 and 03:30
    # A crash with a short failover window: nothing older than the guard was missed.
    s = takeover(d, base + 30 * 60, base + 30 * 60 + 0.05)
    assert drive(s, base + 30 * 60 + 0.05, base + 30 * 60 + 30, 1.0) == []


def test_catch_up_needs_history_and_never_doubles_with_instant() -> None:
    base = datetime(2026, 12, 2, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    fresh = sched(cron_def("*/10 * * * *", zone="UTC", catch_up="last"))
    fresh.activate(base + 5 * 60, graceful=False)
    assert drive(fresh, base + 5 * 60, base + 9 * 60, 5.0) == []  # a first start missed nothing
    both = sched(cron_def("*/10 * * * *", zone="UTC", catch_up="last", instant=True))
    both.activate(base + 5 * 60, graceful=False)
    runs = drive(both, base + 5 * 60, base + 11 * 60, 5.0)
    assert [slot for slot, _ in runs] == [base, base + 10 * 60]  # instant once, then the grid


def test_catch_up_after_a_graceful_hand_over_has_nothing_to_do() -> None:
    d = cron_def("*/10 * * * *", zone="UTC", catch_up="last")
    base = datetime(2026, 12, 2, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    s = sched(d)
    s.load({"tasks": {"t": TaskRecord(slot=int(base), dispatched=int(base), runs=1).to_json()}})
    s.activate(base + 60, graceful=True)
    assert [slot for slot, _ in drive(s, base + 60, base + 11 * 60, 5.0)] == [base + 600]
    assert s.records["t"].counts["skipped"] == 0


def test_catch_up_works_on_an_interval_grid_too() -> None:
    d = TaskDef(name="t", target="x:Y", interval=1000, catch_up="last", timeout=500)
    k = 1_700_000
    due = (phase_ms("t", 1000) + k * 1000) / 1000
    s = sched(d)
    s.load({"tasks": {"t": TaskRecord(slot=k, dispatched=k, runs=1).to_json()}})
    s.activate(due + 60.5, graceful=False)
    ds, _ = s.tick(due + 60.5, NODES)
    assert [x.slot for x in ds] == [k + 55]  # the latest at least CATCH_UP_GUARD_MS old
    assert s.records["t"].counts["skipped"] == 59


def test_a_stalled_loop_counts_missed_cron_fire_times() -> None:
    d = cron_def("* * * * * *", zone="UTC")  # every second
    base = datetime(2026, 12, 2, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    s = sched(d)
    s.activate(base + 0.5, graceful=False)
    drive(s, base + 1, base + 2, 1.0)
    runs: list[Any] = drive(s, base + 10.2, base + 10.3, 1.0)  # the loop stalled 8 s
    assert [slot for slot, _ in runs] == [base + 10]
    assert s.records["t"].counts["skipped"] == 8  # 02..09


def test_clerk_status_shows_the_next_fire_time_in_the_zone_and_in_utc() -> None:
    from clerk.__main__ import render_status

    s = sched(cron_def("30 2 * * *"))
    s.activate(berlin(2026, 10, 24, 12), graceful=False)
    st = {"node": "a", "role": "manager", "manager": "a", "term": 1, "highest_term": 1,
          "members": [], "tasks": s.status(berlin(2026, 10, 24, 12))}
    text = render_status(st)
    assert "30 2 * * *" in text
    assert ("next 2026-10-25 02:30:00+02:00 (Europe/Berlin) = 2026-10-25 00:30:00 UTC"
            in text), text


def test_a_cron_dispatch_carries_its_fire_time_as_due() -> None:
    s = sched(cron_def("30 2 * * *"))
    s.activate(berlin(2026, 3, 28, 12), graceful=False)
    (d,) = s.tick(berlin(2026, 3, 29, 3, 0, 0) + 0.004, NODES)[0]
    assert d.due_ms == int(berlin(2026, 3, 29, 3) * 1000)  # 03:00+02:00, the fire time
