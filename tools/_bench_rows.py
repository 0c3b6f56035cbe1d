"""Rows of ``tools/bench_hotpath.py`` for the replication of the task table (both ends).

* ``row text, a run``: a task row's text as the manager's table log takes it at a run's
  dispatch and again at its result (``TaskRecord.to_text``, ``RowEncoder.step``), the row
  changed in between as the scheduler changes it (``dispatched`` and ``running``; then
  ``slot``, ``running``, ``counts``, ``last``, ``runs``, ``version``, the run history).
  Before: every part of the row but its history encoded at each call
  (``TaskRecord._text_whole``, what ``to_text`` was); after: the parts unchanged since the
  last call reused (``clerk._record._Parts``). The mutations are in both timings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clerk._control import HISTORY_BUDGET_BYTES, HISTORY_TASK_BYTES, make_entry
from clerk._record import TaskRecord

__all__ = ["rows_cases"]

Case = tuple[str, Callable[[], Any], Callable[[], Any]]
_CAP = min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES // 140)  # as at 140 tasks (1,400 runs/s)


def _record() -> TaskRecord:
    rec = TaskRecord(state={"dir": "/tmp/bench-stamps-x"}, has_state=True, version=1,
                     origin={"term": 3, "node": "n0@127.0.0.1", "time": 1764770000000},
                     history=[[3, "n0@127.0.0.1", 0]])
    rec.slot = rec.dispatched = 17647700000
    return rec


def _run(rec: TaskRecord, text: Callable[[TaskRecord], str]) -> Callable[[], Any]:
    """One run of ``rec``: dispatch, its text, result, its text (as the scheduler does)."""

    def run() -> Any:
        slot = rec.dispatched + 1
        due = slot * 100.0 + 0.4
        rec.dispatched = slot
        rec.running = {"run": f"2265b1f5-{slot}/3/n0@127.0.0.1~30.f6ba9422", "slot": slot,
                       "node": "n2@127.0.0.1", "started": due, "deadline": due + 5000.0,
                       "claim": [3, "n0@127.0.0.1"]}
        a = text(rec)
        rec.running = None
        rec.slot = slot
        rec.counts["ok"] += 1
        rec.last = {"node": "n2@127.0.0.1", "slot": slot, "duration_ms": 0.12,
                    "outcome": "ok", "error": "", "finished": due + 2.1,
                    "round_trip_ms": 2.0}
        rec.runs += 1
        rec.version += 1
        rec.run_history.append(make_entry(slot=slot, due_ms=due - 0.4, node="n2@127.0.0.1",
                                          start_ms=due, duration_ms=0.12, outcome="ok",
                                          error="", version=rec.version, trigger=False),
                               _CAP)
        return a, text(rec)

    for _ in range(60):  # a full history
        run()
    return run


def rows_cases() -> list[Case]:
    old, new = _run(_record(), TaskRecord._text_whole), _run(_record(), TaskRecord.to_text)
    assert old() == new()
    return [("row text, a run", old, new)]
