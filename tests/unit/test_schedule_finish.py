"""A result's timing facts (clerk._running ``Running._finish``): its start, round trip and
lateness, in the run log (Finished), the row's ``last`` and the history entry, which the
manager computes once per result from the run's sending and its slot's due time.

Each case checks them against their definitions (``OperatorControl._run_start``: a run
starts when it was sent, or at its slot's due time if it was sent ahead of it; lateness is
from the due time to the sending, 0 for a run sent ahead, None without a due time), for a run
sent ahead of its slot (the dispatch lead), one sent late (a stalled loop), a triggered run
and a task off the grid (instant only).
"""

from __future__ import annotations

import random

import pytest

from clerk._control import history_view
from clerk._dispatch import Dispatch, Finished
from clerk._schedule import Scheduler
from tests.unit.test_schedule import IV, NODES, K, due, tdef


def _check(s: Scheduler, name: str, fin: Finished, sent_ms: float, due_ms: float | None,
           result_ms: float) -> None:
    start = sent_ms if due_ms is None else max(sent_ms, due_ms)
    assert fin.round_trip_ms == pytest.approx(max(0.0, result_ms - start))
    if due_ms is None:
        assert fin.lateness_ms is None
    else:
        assert fin.lateness_ms == pytest.approx(max(0.0, sent_ms - due_ms))
        assert type(fin.lateness_ms) is float
    rec = s.records[name]
    assert rec.last is not None
    assert rec.last["round_trip_ms"] == round(fin.round_trip_ms, 3)
    entry = history_view(rec.run_history)[-1]
    assert entry["start"] == pytest.approx(round(start, 1) / 1000)
    assert entry["due"] == (None if due_ms is None else pytest.approx(round(due_ms, 1) / 1000))
    # The entry's start keeps the type its definition gives (an int due time when the run
    # was sent ahead of it): the row's text is what it was.
    assert type(rec.run_history[-1][3]) is type(start)


@pytest.mark.parametrize("early_ms", [20.0, 0.0, -7.5])  # ahead, at, after the due time
def test_a_grid_runs_start_round_trip_and_lateness(early_ms: float) -> None:
    s = Scheduler([tdef(timeout=5000)], random.Random(3), dispatch_lead_ms=20.0)
    s.activate(due("t", K) + 0.2, graceful=False)
    sent = due("t", K + 1) - early_ms / 1000
    ds, _ = s.tick(sent, NODES)
    assert [d.slot for d in ds] == [K + 1]
    d = ds[0]
    fin = s.on_result("t", d.run_id, d.node, "ok", {"n": 1}, 0.25, "", sent + 0.004)
    assert fin is not None and fin.outcome == "ok"
    _check(s, "t", fin, sent * 1000, s.due_ms("t", K + 1), (sent + 0.004) * 1000)


def test_a_triggered_run_has_no_due_time() -> None:
    s = Scheduler([tdef(timeout=5000)], random.Random(3))
    s.activate(due("t", K) + 0.2, graceful=False)
    wall = due("t", K) + 0.3
    d, why = s.trigger("t", wall, NODES)
    assert d is not None, why
    fin = s.on_result("t", d.run_id, d.node, "error", None, 1.5, "boom", wall + 0.01)
    assert fin is not None and fin.outcome == "error"
    _check(s, "t", fin, wall * 1000, None, (wall + 0.01) * 1000)


def test_a_task_off_the_grid_has_no_due_time() -> None:
    s = Scheduler([tdef("i", interval=None, instant=True, timeout=5000)], random.Random(3))
    nodes = {n: ("i",) for n in NODES}
    wall = 1_700_000_000.5
    s.activate(wall, graceful=False)
    ds, _ = s.tick(wall, nodes)
    assert [d.task for d in ds] == ["i"]
    fin = s.on_result("i", ds[0].run_id, ds[0].node, "ok", {"n": 1}, 0.5, "", wall + 0.02)
    assert fin is not None
    _check(s, "i", fin, wall * 1000, None, (wall + 0.02) * 1000)


def test_a_timed_out_run_is_judged_like_a_result() -> None:
    s = Scheduler([tdef(timeout=500)], random.Random(3))
    s.activate(due("t", K) + 0.2, graceful=False)
    sent = due("t", K + 1) + 0.003
    ds, _ = s.tick(sent, NODES)
    assert len(ds) == 1
    end = sent + 0.5 + 1.0 + 0.01  # past timeout + TRANSIT_GRACE_MS
    _, finished = s.tick(end, NODES)
    (fin,) = [f for f in finished if f.outcome == "timeout"]
    _check(s, "t", fin, sent * 1000, s.due_ms("t", K + 1), end * 1000)
    assert s.records["t"].last is not None and s.records["t"].last["outcome"] == "timeout"
    assert IV == 1000


def test_dispatch_and_finished_are_not_tuples() -> None:
    """The simulator tells a held dispatch from a held result by ``isinstance(item, tuple)``
    (clerk._simtasks): these stay plain objects (slotted dataclasses)."""
    d = Dispatch("t", "r", 1, "a", None, True, 500)
    f = Finished("t", "r", 1, "a", "ok", 0.1, "")
    assert not isinstance(d, tuple) and not isinstance(f, tuple)
    assert d == Dispatch("t", "r", 1, "a", None, True, 500, 0, 0)
    assert repr(f) == ("Finished(task='t', run_id='r', slot=1, node='a', outcome='ok', "
                       "duration_ms=0.1, error='', round_trip_ms=0.0, lateness_ms=None)")
