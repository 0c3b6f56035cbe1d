"""review5: a merged row's ``decided`` (44b4778) escapes the guard that refuses a row from the
future, so one OFFER can push a task's next slot out of reach."""

from __future__ import annotations

import pytest

from clerk._record import TaskRecord
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started


@pytest.mark.parametrize("field", ["slot", "dispatched", "decided"])
def test_a_merged_row_from_the_future_does_not_push_the_next_slot_out_of_reach(
        field: str) -> None:
    """Case: the manager merges an OFFER (``Scheduler.merge`` with ``wall``) whose row says
    a slot a million intervals ahead was decided (a forged OFFER under ``--insecure``; or a
    member's durable row of the same task from an older, finer grid: an interval made longer
    in a deploy, for a task whose slots were only ever skipped, so its ``slot`` and
    ``dispatched`` are -1). ``slot`` and ``dispatched`` that far ahead are refused (the
    docstring: "a forged table must not push a task's next slot out of reach"); ``decided``
    is taken (merged by max) and ``next_slot`` becomes ``decided + 1``: the task never runs
    again. (The ``slot`` and ``dispatched`` cases pass on main: they show the guard.)

    Cause: clerk/_adopt.py ``Adoption.merge``: the guard reads
    ``max(rec.slot, rec.dispatched) > self._slot_at(d, wall_ms) + 1``, which 44b4778 did not
    extend when it added ``decided`` to ``merge_rows`` and to the ``next_slot`` below it.
    Fixed: ``max(rec.slot, rec.dispatched, rec.decided)`` in that guard (a real row's
    ``decided`` is at most the slot due 50 ms after its manager's now, at most one ahead with
    the 100 ms minimum interval, as ``dispatched``). The ``decided`` case fails on main."""
    s = started(sched(), due("t", K) + 0.1)
    run_ok(s, K + 1, state={"n": 1})
    row = TaskRecord.from_json(s.records["t"].to_json())
    assert row is not None
    setattr(row, field, K + 1_000_000)
    s.merge({"tasks": {"t": row.to_json()}}, due("t", K + 1) + 0.5, source="forged")
    assert [d.slot for d in s.tick(due("t", K + 2), NODES)[0]] == [K + 2]  # main: []
