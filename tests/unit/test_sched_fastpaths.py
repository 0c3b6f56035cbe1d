"""The manager's per-run shortcuts give what the plain code gave: a history entry's rounding,
the history's one-in-one-out append, the deadlines' nothing-due answer, the cached history cap
(tools/bench_sched.py times them, tree against tree, and checks the same table)."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._control import (
    HISTORY_BUDGET_BYTES,
    HISTORY_MAX_RUNS,
    HISTORY_TASK_BYTES,
    RunHistory,
    entry,
    make_entry,
    round_ms,
)
from clerk._schedstate import Deadlines
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef


@given(st.one_of(st.integers(min_value=-(2**62), max_value=2**62),
                 st.floats(allow_nan=False),
                 st.integers(min_value=-(10**13), max_value=10**13).map(float),
                 st.integers(min_value=0, max_value=10**14).map(lambda n: n / 10),
                 st.integers(min_value=0, max_value=10**14).map(lambda n: n / 100)))
@settings(max_examples=400, deadline=None)
def test_round_ms_is_round_to_a_tenth(value: float) -> None:
    got, want = round_ms(value), round(value, 1)
    assert type(got) is type(want)
    assert json.dumps(got) == json.dumps(want)
    assert got == want or (math.isnan(got) and math.isnan(want))


@pytest.mark.parametrize("error", ["", "boom", "Traceback\n  line\nValueError: " + "x" * 300,
                                   "  \n  ", "last line\n"])
@pytest.mark.parametrize("due", [None, 1764770000100, 1764770000100.0, 1764770000100.25])
def test_entry_is_make_entry(error: str, due: float | None) -> None:
    for start, duration in ((1764770000100, 0.1234567), (1764770000100.37, 12.0),
                            (1764770000099.95, 0.0)):
        old = make_entry(slot=7, due_ms=due, node="n1@h", start_ms=start,
                         duration_ms=duration, outcome="error" if error else "ok",
                         error=error, version=3, trigger=due is None)
        new = entry(7, due, "n1@h", start, round(duration, 3), "error" if error else "ok",
                    error, 3, due is None)
        assert json.dumps(old) == json.dumps(new)


def _plain_append(entries: list[list[object]], e: list[object], cap: int) -> list[list[object]]:
    """What ``RunHistory.append`` keeps, by its definition: the newest entries within
    ``HISTORY_MAX_RUNS`` and ``cap`` bytes of compact JSON (the newest always)."""
    out = [*entries, e]
    while len(out) > HISTORY_MAX_RUNS or (
            sum(len(json.dumps(x, separators=(",", ":"))) + 1 for x in out) > cap
            and len(out) > 1):
        out.pop(0)
    return out


@given(st.lists(st.tuples(st.integers(0, 10**6), st.text(max_size=40)), max_size=120),
       st.sampled_from([HISTORY_TASK_BYTES, 800, 120, 10]))
@settings(max_examples=150, deadline=None)
def test_append_keeps_what_its_definition_keeps(runs: list[tuple[int, str]], cap: int) -> None:
    h = RunHistory()
    want: list[list[object]] = []
    for slot, error in runs:
        e = entry(slot, slot * 100, "n1@h", slot * 100, 0.5, "error" if error else "ok",
                  error, slot, False)
        h.append(e, cap)
        want = _plain_append(want, e, cap)
        assert h.entries == want
    assert json.loads(h.text()) == want
    assert json.loads(json.loads(h.quoted())) == want
    assert h.n == len(runs)


def test_deadlines_nothing_due() -> None:
    d = Deadlines({"a": 10.0, "b": 20.0})
    assert d.due(5.0) == []
    d["a"] = 30.0  # the entry at 10 is stale now
    assert d.due(15.0) == [] and d.earliest() == 20.0
    assert d.due(25.0) == ["b"]
    assert Deadlines().due(1e18) == []


def test_history_cap_follows_the_number_of_tasks() -> None:
    defs = [TaskDef(name=f"t{i}", target="x:Y", interval=100) for i in range(3)]
    s = Scheduler(defs, random.Random(1))
    assert s.history_cap == min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES // 3)
    for i in range(3, 400):
        s.defs[f"t{i}"] = TaskDef(name=f"t{i}", target="x:Y", interval=100)
    assert s.history_cap == HISTORY_BUDGET_BYTES // 400
    s.defs.clear()
    assert s.history_cap == min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES)


def test_dispatch_tag_is_base_tag_as_the_lineage_moves() -> None:
    from clerk._lineage import note_update
    from clerk._running import base_tag

    defs = [TaskDef(name="t", target="x:Y", interval=100)]
    s = Scheduler(defs, random.Random(1))
    rec = s.records["t"]
    assert s._base_tag("t", rec) == base_tag(rec) == "~init"
    rec.state, rec.has_state, rec.version = {"n": 1}, True, 0
    rec.origin = {"term": 1, "node": "a", "time": 5}
    for term, manager in ((1, "a"), (1, "a"), (2, "b"), (2, "b"), (3, "a")):
        note_update(rec, term, manager)
        rec.version += 1
        assert s._base_tag("t", rec) == base_tag(rec)
    rec.origin = {"term": 4, "node": "c", "time": 9}  # a new lineage (a merge's row)
    rec.history = [[4, "c", 0]]
    rec.version = 1
    assert s._base_tag("t", rec) == base_tag(rec)
    rec.history = []  # (a row whose history was cut)
    assert s._base_tag("t", rec) == base_tag(rec)
