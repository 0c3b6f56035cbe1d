"""The manager's write-ahead (clerk._writeahead): reservations ahead of due time, dispatches
held until their reservation is committed, results until their record is."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._calendar import Grid
from clerk._dispatch import Dispatch
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef
from clerk._writeahead import (
    RESERVE_LEAD_FACTOR,
    RESERVE_LEAD_MAX_MS,
    RESERVE_LEAD_MIN_MS,
    WriteAhead,
)


class Every:
    """A grid: slot k due at k * ms."""

    zone: tzinfo = UTC

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def slot_at(self, wall_ms: float) -> int:
        return int(wall_ms // self.ms)

    def due_ms(self, slot: int) -> float:
        return float(slot * self.ms)

    def count(self, lo: int, hi: int) -> int:
        return max(0, hi - lo)


class Listed:
    """The scheduler's side of the write-ahead (``Upcoming``) over a fixed list."""

    def __init__(self, items: list[tuple[str, int, Every]]) -> None:
        self.items: list[tuple[str, int, Grid]] = list(items)
        self.by: dict[str, tuple[int, Grid]] = {t: (n, g) for t, n, g in items}

    def watch_upcoming(self) -> list[tuple[str, int, Grid]]:
        return list(self.items)

    def take_rescheduled(self) -> list[str]:
        return []

    def upcoming_of(self, task: str) -> tuple[int, Grid] | None:
        return self.by.get(task)


@dataclass
class Rec:
    dispatched: int


def make(learned: dict[str, int | None] | None = None,
         ) -> tuple[WriteAhead, dict[str, int | None]]:
    committed: dict[str, int | None] = {}
    return WriteAhead(learned or {}, committed.get), committed


def test_a_new_manager_continues_after_the_learned_reservations() -> None:
    wa, _ = make({"t": 7, "u": None})
    recs = {"t": Rec(3), "u": Rec(2), "v": Rec(-1)}
    wa.continue_after(recs)
    assert (recs["t"].dispatched, recs["u"].dispatched, recs["v"].dispatched) == (7, 2, -1)
    assert wa.reserve("t", 7) == {}  # already reserved by an earlier ballot: never again
    assert wa.reserve("t", 8) == {"t": {"reserved": 8}}
    assert wa.reserve("t", 8) == {}  # written once


def test_reserve_ahead_only_within_the_lead() -> None:
    wa, _ = make()
    g = Every(100)
    wall = 500.0 - RESERVE_LEAD_MIN_MS  # t's slot 5 is due in one lead, u's slot 9 later
    assert wa.ahead(Listed([("t", 5, g), ("u", 9, g)]), wall) == {"t": {"reserved": 5}}
    assert wa.ahead(Listed([("t", 5, g), ("u", 9, g)]), wall) == {}  # written once


def test_a_lead_longer_than_the_interval_reserves_every_slot_within_it() -> None:
    wa, _ = make()
    for i in range(3):  # commits of 60 ms: a lead of 240 ms on a 100 ms grid
        wa.wrote([i + 1], 0.0)
        wa.on_committed(i + 1, 60.0)
    assert wa.lead_ms == 240.0
    g = Every(100)
    assert wa.ahead(Listed([("t", 5, g)]), 480.0) == {"t": {"reserved": 7}}  # slots 5, 6, 7
    assert wa.next_reserve_ms(Listed([("t", 5, g)])) == 800.0 - 240.0  # for slot 8
    assert wa.ahead(Listed([("t", 6, g)]), 550.0) == {}  # slot 8 is due in 250 ms: not yet
    assert wa.ahead(Listed([("t", 6, g)]), 560.0) == {"t": {"reserved": 8}}


def test_the_lead_has_a_ceiling() -> None:
    wa, _ = make()
    wa.wrote([1], 0.0)
    wa.on_committed(1, 10_000.0)
    assert wa.lead_ms == RESERVE_LEAD_MAX_MS


def test_the_loop_wakes_up_a_lead_before_the_next_unreserved_slot() -> None:
    wa, _ = make()
    up = Listed([("t", 10, Every(100)), ("u", 3, Every(300))])
    assert wa.next_reserve_ms(up) == 900.0 - RESERVE_LEAD_MIN_MS
    wa.reserve("u", 3)
    assert wa.next_reserve_ms(up) == 1000.0 - RESERVE_LEAD_MIN_MS
    wa.reserve("t", 10)
    assert wa.next_reserve_ms(up) == 1100.0 - RESERVE_LEAD_MIN_MS
    assert wa.next_reserve_ms(Listed([])) == float("inf")


def test_the_lead_follows_the_median_commit_latency() -> None:
    wa, _ = make()
    assert wa.lead_ms == RESERVE_LEAD_MIN_MS
    for i, ms in enumerate((10.0, 12.0, 50.0)):
        wa.wrote([i + 1], 0.0)
        wa.on_committed(i + 1, ms)
    assert wa.lead_ms == RESERVE_LEAD_FACTOR * 12.0


def test_dispatch_waits_for_its_reservation_commit() -> None:
    wa, committed = make()
    assert not wa.gate("t", 5)
    wa.hold_dispatch("d5", "t", 5)
    wa.hold_dispatch("d9", "u", 9)
    assert wa.on_committed(1, 0.0) == []  # an unrelated write
    committed["t"] = 5
    assert wa.on_committed(2, 0.0) == ["d5"]
    assert wa.gate("t", 5) and not wa.gate("t", 6)
    assert [h.what for h in wa.held] == ["d9"]


def test_results_wait_for_every_write_of_their_record() -> None:
    wa, _ = make()
    wa.hold_result("r", "t", [3, 4])
    assert wa.on_committed(3, 0.0) == []
    assert wa.on_committed(4, 0.0) == ["r"]
    wa.hold_result("again", "t", [3])  # already committed: released at the next commit
    assert wa.on_committed(9, 0.0) == ["again"]


def test_drop_held() -> None:
    wa, _ = make()
    wa.hold_dispatch(("d", 1), "t", 1)
    wa.hold_dispatch(("d", 2), "t", 2)
    assert wa.drop_held(lambda w: w[1] > 1) == [("d", 1)]
    assert [h.what for h in wa.held] == [("d", 2)]


# --- the reserve heap against the whole-table walk it replaces ------------------------------------


class Walk(WriteAhead):
    """The write-ahead as it was: ``ahead`` and ``next_reserve_ms`` walk every upcoming task."""

    def ahead(self, up: Any, wall_ms: float) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        lead = self.lead_ms
        for task, nxt, grid in up.upcoming():
            first = self._first_unreserved(task, nxt)
            if grid.due_ms(first) - wall_ms <= lead:
                rows.update(self.reserve(task, max(first, grid.slot_at(wall_ms + lead))))
        return rows

    def next_reserve_ms(self, up: Any) -> float:
        lead = self.lead_ms
        return min((grid.due_ms(self._first_unreserved(task, nxt)) - lead
                    for task, nxt, grid in up.upcoming()), default=float("inf"))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(0, 9), min_size=20, max_size=120))
def test_the_reserve_heap_answers_as_the_whole_table_walk(seed: int, ops: list[int]) -> None:
    """A real Scheduler driven by random ticks, results, pauses, resumes, deploys that take
    tasks away and bring them back, triggers and commit latencies: at every step the heap's
    ``next_reserve_ms`` and ``ahead`` equal the walk's (each on its own write-ahead)."""
    rng = random.Random(seed)
    defs = [TaskDef(name=f"t{i}", target="x:Y", interval=rng.choice((100, 250, 1000)),
                    timeout=80) for i in range(12)]
    defs.append(TaskDef(name="once", target="x:Y", interval=None, timeout=80, instant=True))
    s = Scheduler(defs, random.Random(seed))
    wall = 1_700_000_000.0
    s.activate(wall, graceful=False)
    none: dict[str, int | None] = {}
    heap_wa, walk_wa = WriteAhead({}, none.get), Walk({}, none.get)
    members = {"a": frozenset(d.name for d in defs)}
    live = {d.name: d for d in defs}
    seq = 0
    for op in ops:
        wall += rng.choice((0.005, 0.02, 0.07, 0.3))
        name = rng.choice(defs).name
        if op <= 3:  # a tick: dispatches, and results of some runs in flight
            ds, _ = s.tick(wall, members)
            for d in ds:
                if rng.random() < 0.7:
                    s.on_result(d.task, d.run_id, d.node, "ok", None, 1.0, "", wall)
        elif op == 4:
            s.set_paused(name, True, "a", wall)
        elif op == 5:
            s.set_paused(name, False, "a", wall)
        elif op == 6:  # a deploy takes a task away, or brings one back
            if name in live and len(live) > 1:
                del live[name]
            else:
                live[name] = next(d for d in defs if d.name == name)
            s.update_defs(dict(live), wall)
        elif op == 7:
            s.trigger(name, wall, members)
        elif op == 8:  # a commit: the lead follows its latency
            seq += 1
            ms = rng.choice((1.0, 30.0, 90.0))
            for wa in (heap_wa, walk_wa):
                wa.wrote([seq], wall * 1000 - ms)
                wa.on_committed(seq, wall * 1000)
        else:  # a dispatch reserved at once (not ahead)
            for wa in (heap_wa, walk_wa):
                wa.reserve(name, s.next_slot.get(name, 0))
        assert heap_wa.next_reserve_ms(s) == walk_wa.next_reserve_ms(s)
        assert heap_wa.ahead(s, wall * 1000) == walk_wa.ahead(s, wall * 1000)
        assert heap_wa.asked == walk_wa.asked


@dataclass
class RunRec:
    dispatched: int
    running: dict | None
    counts: dict = field(default_factory=lambda: {"skipped": 0})


def test_runs_that_never_left_are_not_adopted() -> None:
    """A run in flight above the learned reservation, or one this node held itself when its
    ballot was lost, never left: the next ballot drops it instead of waiting for it until its
    deadline (its slot is skipped, never run again). One at or below a reservation it did not
    hold may have left: adopted."""
    old, _ = make()
    old.hold_dispatch(Dispatch("h", "r-h", 9, "n1", None, False, 1000), "h", 9)
    old.hold_result("a result", "h", [3])
    never = old.never_left()
    assert never == {("h", "r-h")}
    wa, _ = make({"t": 7, "h": 9})
    recs = {"t": RunRec(7, {"run": "r-t", "slot": 7}), "u": RunRec(4, {"run": "r-u", "slot": 5}),
            "h": RunRec(9, {"run": "r-h", "slot": 9})}
    assert sorted(wa.continue_after(recs, never)) == ["h", "u"]
    assert recs["t"].running is not None  # reserved on a majority: it may have left
    assert recs["u"].running is None and recs["u"].dispatched == 5
    assert recs["u"].counts["skipped"] == 1
    assert recs["h"].running is None and recs["h"].dispatched == 9
