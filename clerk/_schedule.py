"""The manager's schedule: a pure state machine over the task table (no I/O, time injected).

:class:`Scheduler` is assembled from parts, each in a module that opens with the rules it owns:

* :mod:`clerk._schedstate`: the state, the **grid** (slots, what is due next) and the budgets;
* :mod:`clerk._operator`: pause, resume, trigger, history (the facts: :mod:`clerk._control`);
* :mod:`clerk._adopt`: continuing a table after a hand-over or a crash, merges and **which
  state wins**, ``init`` waiting for the members' OFFERs, changed definitions, draining;
* :mod:`clerk._running`: **one run at a time**, dispatch, deadlines and results;
* here: the views (the replicated table, status).

**The table** (``table()``) is what the manager replicates to every member with its heartbeats
and hands over when it leaves: per task the state, whether a state exists, the last slot
dispatched and finished, the run in flight, counters and the last run, and the operator's
facts (the pause register and the run history: :mod:`clerk._control`). Rows and how they
travel: :mod:`clerk._record`. Every name the scheduler's users need is importable from here.
"""

from __future__ import annotations

import math
from typing import Any

from clerk._adopt import CATCH_UP_GUARD_MS, OFFER_WAIT_MS
from clerk._calendar import due_datetime, phase_ms
from clerk._dispatch import Dispatch, Finished
from clerk._record import PACK_CHUNK, Conflict, TaskRecord, pack_table, unpack_table
from clerk._running import (
    ERROR_KEEP_CHARS,
    OUTCOMES,
    STATES_BUDGET_BYTES,
    TRANSIT_GRACE_MS,
    Running,
)
from clerk._schedstate import NodesFilter, _packed_size

__all__ = ["CATCH_UP_GUARD_MS", "ERROR_KEEP_CHARS", "OFFER_WAIT_MS", "OUTCOMES", "PACK_CHUNK",
           "STATES_BUDGET_BYTES", "TRANSIT_GRACE_MS", "Conflict", "Dispatch", "Finished",
           "NodesFilter", "Scheduler", "TaskRecord", "_packed_size", "pack_table", "phase_ms",
           "unpack_table"]


class Scheduler(Running):
    """The task table and its schedule; active only on the manager. Pause, resume, trigger
    and history: :class:`clerk._operator.OperatorControl`."""

    # --- views --------------------------------------------------------------------------------

    def table(self) -> dict[str, Any]:
        return {"tasks": {name: rec.to_json() for name, rec in self.records.items()},
                "node_runs": dict(self.node_runs)}

    def status(self, wall: float) -> list[dict[str, Any]]:
        return [self.status_row(name, wall) for name in self.defs]

    def status_row(self, name: str, wall: float) -> dict[str, Any]:
        """One task's row of the status (``name`` must be in ``defs``): built on its own, so
        a status can be built in slices between loop turns (clerk._statusjob) and a ``show``
        needs no other task's row."""
        d = self.defs[name]
        rec = self.records[name]
        row = {
            "name": name, "target": d.target, "interval_ms": d.interval, "cron": d.cron,
            "timezone": d.timezone,
            "catch_up": d.catch_up,
            "timeout_ms": d.timeout, "enabled": d.enabled, "instant": d.instant,
            "runs": dict(rec.counts), "last_run": rec.last, "last_slot": rec.slot,
            "running": dict(rec.running) if rec.running else None,
            "next_due": self._next_due(name, rec, wall),
            "has_state": rec.has_state,
            "gone_since": self.gone.get(name),
            "version": rec.version, "lineage": rec.origin, "conflicts": rec.conflicts,
            "last_conflict": rec.last_conflict,
        }
        row.update(self._pause_fields(rec))
        return row

    def _next_due(self, name: str, rec: TaskRecord, wall: float) -> str | None:
        """When the task runs next (ISO 8601 in its zone, with the offset); None if never.
        A follower (inactive) answers from the replicated table: the next slot after both the
        last one done and now."""
        d = self.defs[name]
        if not d.enabled or name not in self._grid or name in self.gone:
            return None
        if self.active:
            slot = self.next_slot[name]
        else:
            slot = max(rec.slot, rec.dispatched, rec.decided, self._slot_at(d, wall * 1000)) + 1
        due = self.due_ms(name, slot)
        return None if due == math.inf else due_datetime(d, due).isoformat()
