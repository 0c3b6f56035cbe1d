"""The ledger task of ``tools/chaos.py``: a counter that writes down every run it makes.

Rules:

* The state is a counter and the run that produced it: ``init`` returns ``{"count": 0, "by":
  None}`` and every run returns ``{"count": count + 1, "by": "<node>/<slot>"}`` (a bare integer
  state, from an older ledger, counts as ``{"count": state, "by": None}``).
* Before returning, a run appends one JSON line ``{"slot", "term", "node", "count", "from",
  "due", "start"}`` to ``$CLERK_CHAOS_LEDGER/<node>.jsonl`` (one file per node, opened with
  ``O_APPEND`` and written with one ``write`` call, so the lines of a node's two workers never
  interleave and a line is on disk even if the node is SIGKILLed a moment later).
* ``count`` is the count the run *received* and ``from`` the run that produced it (``None``
  after ``init``): two sides of a partition reach the same counts, so only ``from`` tells which
  side's history a run continues; ``start`` is the wall time (ms) the run started;
  ``due`` is the slot's scheduled wall time (ms): ``clerk.current_run().due`` when the runtime
  provides it, else computed from the grid (``phase_ms(name, interval) + slot * interval``),
  which is the same number.

The nodes import this module (the chaos tool puts ``tools/`` on their ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

import clerk
from clerk._schedule import phase_ms

__all__ = ["INTERVAL_MS", "LEDGER_ENV", "Ledger"]

#: The ledger task's interval: short, so that a few minutes of faults cover ~1000 slots and a
#: failover window of ~50 ms to ~1 s is a handful of them.
INTERVAL_MS = 200
LEDGER_ENV = "CLERK_CHAOS_LEDGER"


def _due_ms(run: Any) -> float:
    due = getattr(run, "due", None)
    if isinstance(due, datetime):
        return due.timestamp() * 1000
    if isinstance(due, int | float):
        return float(due)
    return float(phase_ms(run.task, INTERVAL_MS) + run.slot * INTERVAL_MS)


class Ledger(clerk.Task):
    """Counter task that appends one line per run to its node's ledger file."""

    def init(self, args: Any) -> dict[str, Any]:
        return {"count": 0, "by": None}

    def execute(self, state: Any) -> dict[str, Any]:
        start = time.time() * 1000
        run = clerk.current_run()
        count, parent = _received(state)
        line = json.dumps({"slot": run.slot, "term": run.term, "node": run.node,
                           "count": count, "from": parent, "due": round(_due_ms(run), 3),
                           "start": round(start, 3)}) + "\n"
        folder = os.environ.get(LEDGER_ENV, ".")
        fd = os.open(os.path.join(folder, f"{run.node}.jsonl"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return {"count": count + 1, "by": f"{run.node}/{run.slot}"}


def _received(state: Any) -> tuple[int, str | None]:
    """(count, the run that produced it) of a state as a run receives it (-1: no state)."""
    if isinstance(state, dict) and isinstance(state.get("count"), int):
        by = state.get("by")
        return state["count"], by if isinstance(by, str) else None
    if isinstance(state, int) and not isinstance(state, bool):
        return state, None
    return -1, None
