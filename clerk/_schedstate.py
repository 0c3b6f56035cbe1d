"""The scheduler's state and its grid: what every part of :class:`clerk._schedule.Scheduler`
works on (the parts are mixins over this class, each in its module with the rules it owns).

**Grid.** Each task's slots lie on a grid (:mod:`clerk._calendar`): run ``k`` of an interval
task is due at wall time ``phase + k * interval`` (milliseconds since the epoch, ``phase``
derived from the task name); a cron task's slots are its fire times. Every node computes the
same grid, so a new manager continues it without asking anyone. Slots are counted with the
grid's ``count``, never by subtracting ids (a cron slot's id is its fire time in seconds).

**What is due next** is kept so a tick costs O(what is due), not O(tasks): a heap of
``(due ms of next_slot, task)`` for enabled grid tasks (stale entries are skipped when they
surface: an entry is fresh only while it still names the task's ``next_slot``), and the
deadline of each run in flight. ``next_deadline`` is the earliest of those (a heap entry
``dispatch_lead_ms`` before its due time: :mod:`clerk._lead`), of a slot whose early dispatch
waits for its due time (a run was in flight), of an instant run that can go now (or when its
``init`` stops waiting for OFFERs) and of a catch-up (at once).

**Budgets.** A state's size is what it adds to the packed table (its JSON escaped again into
a string, :func:`_packed_size`); each task's run history gets an equal share of the history
budget (:mod:`clerk._control`), recomputed as tasks come and go.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from clerk._calendar import Grid, grid_for
from clerk._control import HISTORY_BUDGET_BYTES, HISTORY_TASK_BYTES
from clerk._lead import check_lead
from clerk._record import Conflict, TaskRecord
from clerk._tasks import TaskDef

__all__ = ["NodesFilter", "SchedulerState"]

NodesFilter = Callable[[TaskDef, list[str]], list[str]]


def _packed_size(state: Any) -> int:
    """What a state adds to the packed table: its JSON, escaped again into a string."""
    return len(json.dumps(json.dumps(state, separators=(",", ":"))))


def _grid_key(d: TaskDef) -> tuple[int | None, str | None, str]:
    """What a task's grid depends on: a change of it starts a new grid (new slot ids)."""
    return (d.interval, d.cron, d.timezone if d.cron is not None else "UTC")


class SchedulerState:
    """The task table, the schedule's bookkeeping and the grid (see the module docstring)."""

    def __init__(self, defs: Sequence[TaskDef], rng: random.Random,
                 nodes_filter: NodesFilter | None = None, *, await_offers: bool = False,
                 dispatch_lead_ms: float = 0.0) -> None:
        self.defs = {d.name: d for d in defs}
        # Each scheduled task's grid, built once (an interval's phase hashes the name).
        self._grid: dict[str, Grid] = {d.name: g for d in defs if (g := grid_for(d)) is not None}
        self.rng = rng
        self.nodes_filter = nodes_filter or (lambda d, members: members)
        self.records: dict[str, TaskRecord] = {name: TaskRecord() for name in self.defs}
        self.next_slot: dict[str, int] = {}
        # What is due next, so a tick and next_deadline cost O(what is due), not O(tasks):
        # (due ms of next_slot, task) for enabled grid tasks, with stale entries skipped when
        # they surface; and the deadline (wall ms) of each run in flight.
        self._heap: list[tuple[float, str]] = []
        self._inflight: dict[str, float] = {}
        #: Slots are sent this long before they are due (clerk._lead; 0: at their due time).
        self.dispatch_lead_ms = check_lead(dispatch_lead_ms)
        #: Tasks whose next slot came up for early dispatch while a run was in flight: the
        #: decision waits for the slot's due time (task -> due ms; out of the heap meanwhile).
        self._deferred: dict[str, float] = {}
        self._state_bytes: dict[str, int] = {}
        self._states_total = 0
        self.instant_pending: set[str] = set()
        self.gone: dict[str, float] = {}  # task -> wall time (s) since no live member has it
        # Instant runs waiting for a node that has the task loaded (nodes advertise their tasks
        # only once their workers are ready: at a cluster's start, none for a moment). Retried
        # at every tick rather than skipped; not a reason to wake the loop by themselves.
        self._instant_waiting: dict[str, int] = {}  # task -> last slot counted skipped meanwhile
        self.catch_up_pending: dict[str, int] = {}  # task -> the missed slot to run at start
        self.active = False
        #: A leaving manager: dispatches nothing more, but still applies the results of its
        #: runs in flight (and expires them), so its last table (on disk too) holds them.
        self.draining = False
        self._run_seq = 0
        self._run_prefix = f"{rng.getrandbits(32):08x}"
        self.node_runs: dict[str, int] = {}
        #: The claim this scheduler updates states under (term, manager name): opens a branch
        #: in a state's history and names the origin of an ``init``.
        self.claim: tuple[int, str] = (0, "")
        #: Members whose durable rows were merged (OFFER), and when each was first seen.
        #: With ``await_offers`` (nodes with data directories), an ``init`` waits for them.
        self.await_offers = await_offers
        self.offered: set[str] = set()
        self._member_since: dict[str, float] = {}
        self._init_wait_ms = 0.0  # instant inits held until this wall ms (see next_deadline)
        #: Conflicts found by merges, for the shell to log (drained by it).
        self.conflicts_out: list[Conflict] = []
        #: What changed since the shell last took it (``take_dirty``): the rows replication
        #: must encode again (clerk._replica). ``all_dirty``: every row (a load, an activation).
        self.dirty: set[str] = set()
        self.all_dirty = True
        self.runs_dirty = True  # node_runs

    def take_dirty(self) -> tuple[list[str], bool]:
        """The tasks whose rows changed since the last call, and whether ``node_runs`` did."""
        if self.all_dirty:
            self.all_dirty = False
            self.dirty.clear()
            names = list(self.records)
        else:
            names = [n for n in self.dirty if n in self.records]
            self.dirty.clear()
        runs, self.runs_dirty = self.runs_dirty, False
        return names, runs

    # --- the grid -----------------------------------------------------------------------------

    def _push(self, name: str) -> None:
        d = self.defs[name]
        if (self.active and d.enabled and name in self._grid and name not in self.gone
                and not self.records[name].paused and name not in self._deferred):
            heapq.heappush(self._heap, (self.due_ms(name, self.next_slot[name]), name))

    def _fresh(self, due: float, name: str) -> bool:
        return due == self.due_ms(name, self.next_slot[name])

    def _slot_at(self, d: TaskDef, wall_ms: float) -> int:
        return self._grid[d.name].slot_at(wall_ms)

    def due_ms(self, name: str, slot: int) -> float:
        return self._grid[name].due_ms(slot)

    def upcoming(self) -> list[tuple[str, int, Grid]]:
        """Each scheduled grid task's next slot and its grid: what quorum mode reserves ahead
        of time (:mod:`clerk._writeahead`)."""
        return [(name, self.next_slot[name], self._grid[name])
                for name, d in self.defs.items()
                if d.enabled and name in self._grid and name in self.next_slot
                and name not in self.gone and not self.records[name].paused]

    def next_deadline(self, wall: float) -> float:
        """Wall time (s) of the next thing to do; ``inf`` when inactive."""
        if not self.active:
            return math.inf
        if self.catch_up_pending:
            return wall
        best = min(self._inflight.values(), default=math.inf) / 1000
        if self.instant_pending - self._instant_waiting.keys():
            # Now, unless an init is held for the members' OFFERs (then when that ends).
            best = min(best, max(wall, self._init_wait_ms / 1000))
        if self.draining:
            return best
        if self._deferred:
            best = min(best, min(self._deferred.values()) / 1000)
        while self._heap:
            due, name = self._heap[0]
            if self._fresh(due, name):
                return min(best, (due - self.dispatch_lead_ms) / 1000)
            heapq.heappop(self._heap)
        return best

    @property
    def history_cap(self) -> int:
        """Each task's share of the history budget (see clerk._control); tasks come and go."""
        return min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES // max(1, len(self.defs)))

    def state_bytes(self, name: str) -> int:
        """What the task's state takes in the replicated table."""
        rec = self.records[name]
        return _packed_size(rec.state) if rec.has_state else 0
