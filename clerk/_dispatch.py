"""What the scheduler hands its shell: a run to send (:class:`Dispatch`) and a run that ended
(:class:`Finished`). Plain immutable data, below every other task module in the import order
(:mod:`clerk._control` and the scheduler's parts both name them).

* A :class:`Dispatch` is one EXECUTE: the run id is unique per manager (random prefix and a
  sequence), ``init`` says the state is the task's ``args`` (no node holds a state yet), and
  ``due_ms`` / ``deadline_ms`` let the node refuse a run that reaches it too late.
* A :class:`Finished` is one line of the run log, for every outcome: ``ok``, ``error``,
  ``timeout`` (no result by the deadline, or the node was lost) and ``refused`` (the node
  would not run it), and for slots sent nowhere (empty run id): ``skipped`` when no node was
  eligible, ``error`` when the task's ``nodes()`` raised.

Slotted dataclasses, not frozen ones: the manager makes one of each per run, and a frozen
dataclass's ``__init__`` sets each field through ``object.__setattr__`` (~1.1 us for a
Finished on the benchmark machine, ~0.2 us without: ``tools/bench_hotpath.py``). Nobody
writes to them once made: treat them as frozen. (Not named tuples, which would be cheaper
still: the simulator tells a held dispatch from a held result by ``isinstance(..., tuple)``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Dispatch", "Finished"]


@dataclass(slots=True)
class Dispatch:
    """Send EXECUTE for ``task`` slot ``slot`` to ``node``."""

    task: str
    run_id: str
    slot: int
    node: str
    state: Any
    init: bool
    timeout_ms: int
    #: The slot's due time and the run's deadline (wall ms) that EXECUTE carries: the node
    #: drops a run that reaches it after ``deadline_ms`` (by then this manager has counted it
    #: a timeout) or more than one interval after ``due_ms`` (the next slot is due).
    due_ms: int = 0
    deadline_ms: int = 0


@dataclass(slots=True)
class Finished:
    """A run ended (for logs): outcome ok / error / timeout / refused."""

    task: str
    run_id: str
    slot: int
    node: str
    outcome: str
    duration_ms: float
    error: str
    #: On the manager, from sending EXECUTE to applying the RESULT (dispatch overhead + run).
    round_trip_ms: float = 0.0
    #: From the slot's due time to the dispatch (None for a triggered run, which has no due).
    lateness_ms: float | None = None
