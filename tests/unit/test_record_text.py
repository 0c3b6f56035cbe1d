"""``TaskRecord.to_text`` is the row's JSON, character for character, whatever changes between
two calls (a field replaced, a dict or list changed in place, a value of an unusual type): the
guard for any cache of a row's text (one that reused unchanged parts' texts was reverted: a
takeover lost a task's state with it, 3 of 8 runs of test_takeover_replica's joined-moments-
ago test, and this test did not catch why)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._control import make_entry
from clerk._record import TaskRecord

pytestmark = pytest.mark.timeout(60)


def _json(rec: TaskRecord) -> str:
    return json.dumps(rec.to_json(), separators=(",", ":"), allow_nan=False)


def _row() -> TaskRecord:
    return TaskRecord(state={"dir": "/tmp/x"}, has_state=True, version=1,
                      origin={"term": 3, "node": "n0", "time": 1764770000000},
                      history=[[3, "n0", 0]])


def _dispatch(rec: TaskRecord, rng: random.Random) -> None:
    rec.dispatched += 1
    rec.running = {"run": f"r{rec.dispatched}", "slot": rec.dispatched, "node": "n2",
                   "started": rng.random() * 1e12, "deadline": 5.5, "claim": [3, "n0"]}


def _result(rec: TaskRecord, rng: random.Random) -> None:
    rec.running, rec.slot = None, rec.dispatched
    rec.counts["ok"] += 1
    rec.last = {"node": "n2", "slot": rec.slot, "duration_ms": rng.random(), "outcome": "ok",
                "error": "", "finished": rng.random() * 1e12, "round_trip_ms": 2.0}
    rec.runs += 1
    rec.version += 1
    rec.run_history.append(make_entry(slot=rec.slot, due_ms=1.0, node="n2", start_ms=2.0,
                                      duration_ms=0.1, outcome="ok", error="",
                                      version=rec.version, trigger=False), 800)


def _in_place(rec: TaskRecord, rng: random.Random) -> None:
    """One of the changes other code makes to a row's objects in place, or a replacement."""
    choice = rng.randrange(16)
    if choice == 0:
        rec.counts["skipped"] += 1
    elif choice == 1 and rec.last is not None:
        rec.last["error"] = "x\"y"
    elif choice == 2 and rec.origin is not None:
        rec.origin["term"] += 1
    elif choice == 3:
        rec.history.append([rec.version, "n1", rec.version])
    elif choice == 4 and rec.history:
        rec.history[-1][0] += 1  # an entry of the lineage changed in place
    elif choice == 5:
        rec.conflict_seen[f"b{rng.randrange(3)}"] = rng.randrange(9)
    elif choice == 6:
        rec.pause = {"paused": bool(rng.randrange(2)), "time": 1.5, "by": "op"}
    elif choice == 7 and rec.pause is not None:
        rec.pause["paused"] = not rec.pause["paused"]
    elif choice == 8:
        rec.conflicts += 1
        rec.last_conflict = {"time": 2.0, "dropped": 1, "kept": "a", "lost": "b", "from": "n1"}
    elif choice == 9 and rec.last_conflict is not None:
        rec.last_conflict["dropped"] += 1
    elif choice == 10:
        # Reordered in place (same keys, same values): a new text.
        ok = rec.counts.pop("ok")
        rec.counts["ok"] = ok
    elif choice == 11 and rec.last is not None:
        rec.last["nested"] = {"a": [1, 2]}  # not flat: encoded at every call
    elif choice == 12 and rec.last is not None and "nested" in rec.last:
        rec.last["nested"]["a"].append(3)
    elif choice == 13:
        rec.origin = None if rec.origin else {"term": 1, "node": "n\u00e9", "time": 0}
    elif choice == 14:
        rec.state = {"n": rng.randrange(5), "s": "\u00e9\"\\"}
    elif choice == 15:
        rec.history = [list(h) for h in rec.history]  # an equal copy: the same text


@given(st.lists(st.integers(0, 3), min_size=1, max_size=60), st.integers(0, 2**32))
@settings(max_examples=150, deadline=None)
def test_a_row_text_is_its_json_through_any_sequence_of_changes(
        steps: list[int], seed: int) -> None:
    rng = random.Random(seed)
    rec = _row()
    acts: list[Callable[[TaskRecord, random.Random], None]] = [
        _dispatch, _result, _in_place, lambda r, g: None]
    for step in steps:
        acts[step](rec, rng)
        assert rec.to_text() == _json(rec)


def test_a_row_of_numbers_and_flags_of_other_types_is_encoded_as_json_spells_them() -> None:
    rec = _row()
    assert rec.to_text() == _json(rec)
    odd: list[tuple[str, Any]] = [("has_state", 1), ("slot", True), ("runs", 2.0),
                                  ("version", 3.5), ("conflicts", False)]
    for attr, value in odd:
        before = getattr(rec, attr)
        setattr(rec, attr, value)
        assert rec.to_text() == _json(rec)
        setattr(rec, attr, before)
        assert rec.to_text() == _json(rec)


def test_a_state_json_cannot_carry_fails_as_before() -> None:
    rec = _row()
    rec.to_text()
    rec.state = {"x": float("nan")}
    with pytest.raises(ValueError):
        rec.to_text()
    rec.state = {"x": 1}
    assert rec.to_text() == _json(rec)
    rec.last = {"x": float("inf")}
    with pytest.raises(ValueError):
        rec.to_text()


def test_the_parts_a_run_changes_are_their_json_in_any_form() -> None:
    # ``counts``, ``last`` and ``running`` are written by hand in their usual form: any
    # other form is the encoder's text (or its ValueError), never a text of its own.
    rec = _row()
    last = {"node": "n2", "slot": 7, "duration_ms": 0.25, "outcome": "ok", "error": "é\"\n",
            "finished": 1764770003587.123, "round_trip_ms": 1.5}
    run = {"run": "r1~é", "slot": 7, "node": "n2", "started": 1764770003587.5,
           "deadline": 1764770008607.25, "claim": [3, "n0"]}
    lasts: list[Any] = [last, {**last, "node": None}, {**last, "duration_ms": 1},
                        {**last, "slot": True}, {**last, "extra": 1},
                        dict(reversed(list(last.items()))), {**last, "round_trip_ms": 1e308}]
    runs: list[Any] = [None, run, {**run, "trigger": True}, {**run, "claim": (3, "n0")},
                       {**run, "claim": [3, "n0", 1]}, {**run, "started": 5},
                       {**run, "slot": 7.0}, dict(reversed(list(run.items())))]
    counts: list[Any] = [dict(rec.counts), {**rec.counts, "ok": True},
                         {**rec.counts, "new": 1}, dict(reversed(list(rec.counts.items())))]
    for rec.last in lasts:
        for rec.running in runs:
            for rec.counts in counts:
                assert rec.to_text() == _json(rec)
    rec.running = None
    for bad in (float("nan"), float("inf"), -float("inf")):
        for rec.last, rec.running in (({**last, "finished": bad}, None),
                                      (last, {**run, "deadline": bad})):
            with pytest.raises(ValueError):
                rec.to_text()
