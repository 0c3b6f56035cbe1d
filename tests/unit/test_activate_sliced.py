"""A takeover's activation in slices (``Scheduler.begin_activation`` / ``activate_step``).

``activate`` of 10,000 tasks was one step of ~200 ms of the loop; it is now done in slices of
a time budget, like the table's load. The slicing must not change the outcome: every test here
activates the same table in one step and in many (a clock that runs out every few calls) and
compares everything the scheduler decided, then ticks both and compares what they dispatch.
Meanwhile the scheduler is not active: it dispatches nothing and applies no result (the node
does not acknowledge it, so the result comes again and is applied once it is done).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._schedstate import _packed_size
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef
from tests.unit.test_schedule import IV, K, due, tdef

MEMBERS = {"a": (), "b": ()}


def defs_for(n: int, seed: int) -> list[TaskDef]:
    """A mix: grid tasks, instant ones, instant-only ones, catch-up ones, disabled ones."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.randrange(5)
        if kind == 0:
            out.append(tdef(f"t{i}", None, instant=True))
        elif kind == 1:
            out.append(TaskDef(name=f"t{i}", target="x:Y", interval=IV, timeout=500,
                               catch_up="last"))
        elif kind == 2:
            out.append(tdef(f"t{i}", IV, instant=True))
        elif kind == 3:
            out.append(tdef(f"t{i}", 3 * IV, enabled=rng.random() < 0.7))
        else:
            out.append(tdef(f"t{i}", IV))
    return out


def members(defs: list[TaskDef]) -> dict[str, tuple[str, ...]]:
    return {m: tuple(d.name for d in defs) for m in MEMBERS}


def old_table(defs: list[TaskDef], seed: int, at: float) -> dict[str, Any]:
    """A table as a manager that ran for a while leaves it: states, runs in flight (some
    dispatched, not answered), paused tasks, a row without a definition."""
    rng = random.Random(seed)
    old = Scheduler(defs, random.Random(seed))
    old.activate(at, graceful=False, claim=(1, "a"))
    loaded = members(defs)
    wall = at
    for _ in range(6):
        wall += IV / 1000
        ds, _ = old.tick(wall, loaded)
        for d in ds:
            if rng.random() < 0.7:
                old.on_result(d.task, d.run_id, d.node, "ok", {"n": d.slot, "q": 'a"b\\'},
                              1.0, "", wall + 0.01)
    for td in defs:
        if rng.random() < 0.1:
            old.set_paused(td.name, True, "a", wall)
    table = old.table()
    table["tasks"]["gone-task"] = {**table["tasks"][defs[0].name], "has_state": True,
                                   "state": {"kept": 1}}
    return json.loads(json.dumps(table))


def counting_clock(every: int) -> tuple[Callable[[], float], Callable[[], float]]:
    """A clock that passes the step's deadline every ``every`` readings: (clock, deadline)."""
    reads = [0]

    def clock() -> float:
        reads[0] += 1
        return float(reads[0])

    def deadline() -> float:
        return reads[0] + every - 0.5

    return clock, deadline


def snapshot(s: Scheduler) -> dict[str, Any]:
    return {
        "active": s.active,
        "next_slot": dict(s.next_slot),
        "instant_pending": sorted(s.instant_pending),
        "catch_up_pending": dict(s.catch_up_pending),
        "records": {n: r.to_json() for n, r in s.records.items()},
        "inflight": list(s._inflight.items()),
        "state_bytes": dict(s._state_bytes),
        "states_total": s._states_total,
        "heap": list(s._heap),
        "claim": s.claim,
        "offered": sorted(s.offered),
    }


def pair(defs: list[TaskDef], table: dict[str, Any]) -> tuple[Scheduler, Scheduler]:
    one, sliced = Scheduler(defs, random.Random(7)), Scheduler(defs, random.Random(7))
    one.load(table)
    sliced.load(table)
    return one, sliced


def activate_sliced(s: Scheduler, wall: float, graceful: bool, every: int,
                    during: Callable[[Scheduler], None] | None = None) -> int:
    """Activate ``s`` in slices of ``every`` clock readings; the number of steps."""
    clock, deadline = counting_clock(every)
    s.begin_activation(wall, graceful, claim=(2, "b"))
    steps = 0
    while True:
        steps += 1
        if s.activate_step(deadline(), clock):
            return steps
        assert not s.active and s.activating
        if during is not None:
            during(s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), seed=st.integers(0, 10_000), graceful=st.booleans(),
       every=st.integers(1, 7), gap=st.floats(0.0, 8.0))
def test_sliced_activation_equals_the_one_step_one(n: int, seed: int, graceful: bool,
                                                   every: int, gap: float) -> None:
    defs = defs_for(n, seed)
    at = due("t0", K)
    table = old_table(defs, seed, at)
    one, sliced = pair(defs, table)
    wall = at + 6 + gap
    one.activate(wall, graceful, claim=(2, "b"))
    steps = activate_sliced(sliced, wall, graceful, every)
    assert steps >= (n + len(table["tasks"])) // every  # it did take slices
    assert snapshot(sliced) == snapshot(one)
    assert sliced._state_bytes == {n: _packed_size(r.state)
                                   for n, r in sliced.records.items() if r.has_state}
    # ... and they go on alike: the same dispatches, the same deadlines.
    for k in range(1, 4):
        later = wall + k * IV / 1000
        a, b = one.tick(later, members(defs)), sliced.tick(later, members(defs))
        assert a == b
        assert one.next_deadline(later) == sliced.next_deadline(later)


def test_a_big_table_takes_many_steps_and_nothing_happens_meanwhile() -> None:
    defs = [tdef(f"t{i}", IV) for i in range(300)]
    at = due("t0", K)
    table = old_table(defs, 3, at)
    running = [(n, r["running"]) for n, r in table["tasks"].items() if r["running"]]
    assert running, "the old manager left runs in flight"
    _, s = pair(defs, table)
    wall = at + 7

    def during(s: Scheduler) -> None:
        # Not active: no dispatch, no deadline to wake for, no result applied (the node is
        # not acknowledged and sends it again).
        assert s.tick(wall + 5, members(defs)) == ([], [])
        assert s.next_deadline(wall) == float("inf")
        name, run = running[0]
        assert s.on_result(name, run["run"], run["node"], "ok", {"n": -1}, 1.0, "",
                           wall) is None

    steps = activate_sliced(s, wall, graceful=True, every=4, during=during)
    assert steps > 100
    assert s.active and not s.activating
    # The result held meanwhile is applied once it is done (its node sent it again).
    name, run = running[0]
    fin = s.on_result(name, run["run"], run["node"], "ok", {"n": 99}, 1.0, "", wall + 0.1)
    assert fin is not None and fin.outcome == "ok"
    assert s.records[name].state == {"n": 99}


def test_a_merge_during_the_activation_is_not_undone() -> None:
    """A merge (a partition's hand-over) between slices: a task decided already has its next
    slot moved past the merged row, one not decided yet is decided from the merged row."""
    defs = [tdef(f"t{i}", IV) for i in range(20)]
    at = due("t0", K)
    table = old_table(defs, 5, at)
    ahead = json.loads(json.dumps(table))
    for row in ahead["tasks"].values():  # another side ran three more slots of each
        row["slot"] = row["dispatched"] = max(row["slot"], row["dispatched"]) + 3
        row["running"] = None
        if row["has_state"]:
            row["version"] += 3
            row["state"] = {"n": row["slot"], "from": "the other side"}
    assert any(row["has_state"] for row in ahead["tasks"].values())
    one, sliced = pair(defs, table)
    wall = at + 6.5
    merged = [False]

    def during(s: Scheduler) -> None:
        if not merged[0] and s._activation is not None and s._activation.at_def == 10:
            merged[0] = True
            s.merge(ahead, wall, source="c")

    activate_sliced(sliced, wall, graceful=True, every=1, during=during)
    assert merged[0]
    one.activate(wall, graceful=True, claim=(2, "b"))
    one.merge(ahead, wall, source="c")
    assert sliced.next_slot == one.next_slot
    assert sliced._state_bytes == one._state_bytes
    assert sliced._states_total == one._states_total
    # Either way every state is counted as it is now (the row without a definition too).
    truth = {n: _packed_size(r.state) for n, r in one.records.items() if r.has_state}
    assert {n: b for n, b in one._state_bytes.items() if b} == truth
    assert one._states_total == sum(truth.values())


def test_deactivate_ends_an_activation_under_way() -> None:
    defs = [tdef(f"t{i}", IV) for i in range(30)]
    s = Scheduler(defs, random.Random(1))
    clock, deadline = counting_clock(3)
    s.begin_activation(due("t0", K), graceful=False, claim=(1, "a"))
    assert not s.activate_step(deadline(), clock)
    s.deactivate()
    assert not s.activating and not s.active
    assert s.activate_step(deadline(), clock) is False  # nothing under way: not active
    assert s.tick(due("t0", K + 1), members(defs)) == ([], [])


def test_tasks_defined_during_the_activation_are_scheduled_too() -> None:
    defs = [tdef(f"t{i}", IV) for i in range(10)]
    s = Scheduler(defs, random.Random(1))
    wall = due("t0", K)
    added = [False]

    def during(s: Scheduler) -> None:
        if not added[0]:
            added[0] = True
            s.update_defs({d.name: d for d in [*defs, tdef("late", IV)]}, wall)

    activate_sliced(s, wall, graceful=False, every=2, during=during)
    assert "late" in s.next_slot
    ds, _ = s.tick(due("late", K + 2), members([*defs, tdef("late", IV)]))
    assert "late" in {d.task for d in ds}


def _packed_size_by_encoding(state: Any) -> int:
    """The definition: the state's JSON, escaped again into a string (as it was computed)."""
    return len(json.dumps(json.dumps(state, separators=(",", ":"))))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(state=_JSON)
def test_a_states_size_is_counted_as_encoding_it_twice_would(state: Any) -> None:
    assert _packed_size(state) == _packed_size_by_encoding(state)


def test_a_states_size_with_every_kind_of_escape() -> None:
    for state in ['"', "\\", "\n\t\x00\x1f\x7f", "é\u2028\ud800\U0001f600", {'k"\\': ['"\\']},
                  float("inf"), -0.0, 1e300, [None, True, {"": ""}]]:
        assert _packed_size(state) == _packed_size_by_encoding(state)
