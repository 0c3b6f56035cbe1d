"""The scheduler's state and its grid: what every part of :class:`clerk._schedule.Scheduler`
works on (the parts are mixins over this class, each in its module with the rules it owns).

**Grid.** Each task's slots lie on a grid (:mod:`clerk._calendar`): run ``k`` of an interval
task is due at wall time ``phase + k * interval`` (milliseconds since the epoch, ``phase``
derived from the task name); a cron task's slots are its fire times. Every node computes the
same grid, so a new manager continues it without asking anyone. Slots are counted with the
grid's ``count``, never by subtracting ids (a cron slot's id is its fire time in seconds).

**What is due next** is kept so that a loop turn costs O(log tasks) and a tick O(what is due),
never O(tasks): a heap of ``(due ms of next_slot, task)`` for enabled grid tasks (stale entries
are skipped when they surface: an entry is fresh only while the task still has a grid and the
entry still names its ``next_slot``), and the deadlines of the runs in flight
(:class:`Deadlines`, a heap too). ``next_deadline`` is the earliest of those (a heap entry
``dispatch_lead_ms`` before its due time: :mod:`clerk._lead`), of a slot whose early dispatch
waits for its due time (a run was in flight; at most the slots due within one lead), of an
instant run that can go now (or when its ``init`` stops waiting for OFFERs) and of a catch-up
(at once). Nothing is cached beyond those heaps: every change goes through the dict that is
the truth (``next_slot``, ``_inflight``), and a heap entry that no longer matches it is stale,
so no path that forgets to update a cache can leave a wrong deadline behind.

**Budgets.** A state's size is what it adds to the packed table (its JSON escaped again into
a string, :func:`_packed_size`); each task's run history gets an equal share of the history
budget (:mod:`clerk._control`), recomputed as tasks come and go.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clerk._calendar import Grid, grid_for
from clerk._control import HISTORY_BUDGET_BYTES, HISTORY_TASK_BYTES
from clerk._covers import CoverParts
from clerk._jsondump import encoder
from clerk._lead import check_lead
from clerk._record import Conflict, TaskRecord
from clerk._tasks import TaskDef

__all__ = ["Deadlines", "NodesFilter", "SchedulerState", "Touched"]

NodesFilter = Callable[[TaskDef, list[str]], list[str]]


_STATE_DUMP = encoder()  # (one C encoder for every call: clerk._jsondump)


def _packed_size(state: Any) -> int:
    """What a state adds to the packed table: its JSON, escaped again into a string, i.e.
    ``len(json.dumps(json.dumps(state, separators=(",", ":"))))``. Counted rather than
    escaped: the inner JSON is ASCII without control characters (``ensure_ascii``), so the
    outer encoding only adds its two quotes and a backslash before each ``"`` and ``\\``.
    A takeover sizes every state (10,000: a third of its work when encoded twice, with a
    new encoder per call for the separators)."""
    text = _STATE_DUMP(state)
    return len(text) + 2 + text.count('"') + text.count("\\")


def _no(node: str) -> bool:
    return False


def _keeps_all(d: TaskDef) -> bool:
    return True


def _grid_key(d: TaskDef) -> tuple[int | None, str | None, str]:
    """What a task's grid depends on: a change of it starts a new grid (new slot ids)."""
    return (d.interval, d.cron, d.timezone if d.cron is not None else "UTC")


class Touched(set[str]):
    """The names of the rows that changed (``SchedulerState.dirty``), also noted in each set
    of ``watchers``: a status built in slices between loop turns (clerk._statusjob) learns
    which rows changed meanwhile, whoever takes this set first."""

    def __init__(self) -> None:
        super().__init__()
        self.watchers: list[set[str]] = []
        #: Name -> how many times it was marked, ever (:class:`clerk._replicalog.RowEncoder`
        #: splices a dispatch into a row's last text only when the dispatch's mark is the one
        #: mark since that text, ``SchedulerState.dispatch_marks``).
        self.marks: dict[str, int] = {}

    def add(self, name: str) -> None:
        set.add(self, name)
        marks = self.marks
        marks[name] = marks.get(name, 0) + 1
        for watch in self.watchers:
            watch.add(name)


@dataclass
class _Activation:
    """An activation under way (:meth:`clerk._adopt.Adoption.begin_activation`): the tasks
    to decide and the rows to index, and how far it got."""

    wall_ms: float
    graceful: bool
    defs: list[str]
    records: list[str]
    at_def: int = 0
    at_record: int = 0


class Deadlines:
    """Task -> the deadline (wall ms) of its run in flight, with the earliest at hand.

    The dict is the truth; a heap of ``(deadline, order, task)`` beside it is read lazily: an
    entry is fresh while the dict still holds that deadline with that order, and stale ones
    are dropped when they surface, so ``earliest`` is O(log n) amortized and ``due`` O(what
    is due). ``order`` is when the task entered the dict (writing an existing task keeps it,
    as a dict keeps a key's place): ``due`` answers in that order, which is the order the
    whole-dict scan it replaces answered in (the order runs time out in, in the run log)."""

    __slots__ = ("_at", "_heap", "_seq")

    def __init__(self, items: Mapping[str, float] | None = None) -> None:
        self._at: dict[str, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        for name, deadline in (items or {}).items():
            self[name] = deadline

    def __setitem__(self, name: str, deadline: float) -> None:
        old = self._at.get(name)
        if old is None:
            self._seq += 1
            order = self._seq
        else:
            order = old[1]
        self._at[name] = (deadline, order)
        heapq.heappush(self._heap, (deadline, order, name))

    def pop(self, name: str, default: float | None = None) -> float | None:
        got = self._at.pop(name, None)
        return default if got is None else got[0]

    def get(self, name: str) -> float | None:
        got = self._at.get(name)
        return None if got is None else got[0]

    def __contains__(self, name: object) -> bool:
        return name in self._at

    def __len__(self) -> int:
        return len(self._at)

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def items(self) -> Iterable[tuple[str, float]]:
        return [(name, at[0]) for name, at in self._at.items()]

    def values(self) -> Iterable[float]:
        return [at[0] for at in self._at.values()]

    def clear(self) -> None:
        self._at.clear()
        self._heap.clear()

    def earliest(self) -> float:
        """The earliest deadline (wall ms); ``inf`` if no run is in flight."""
        heap, at = self._heap, self._at
        while heap:
            deadline, order, name = heap[0]
            if at.get(name) == (deadline, order):
                return deadline
            heapq.heappop(heap)
        return math.inf

    def due(self, wall_ms: float) -> list[str]:
        """The tasks whose deadline is ``<= wall_ms``, in the order they entered. They stay in
        the dict (the caller ends their runs); a task the caller does not end must be handed
        back with :meth:`keep`, or its deadline is no longer seen by ``earliest``."""
        heap, at = self._heap, self._at
        if not heap or heap[0][0] > wall_ms:
            return []  # (most loop turns: nothing is due)
        out: list[tuple[int, str]] = []
        while heap and heap[0][0] <= wall_ms:
            deadline, order, name = heapq.heappop(heap)
            if at.get(name) == (deadline, order):
                out.append((order, name))
        out.sort()
        return [name for _, name in out]

    def keep(self, name: str) -> None:
        """Hand back a task from :meth:`due` whose run was not ended (see there)."""
        got = self._at.get(name)
        if got is not None:
            heapq.heappush(self._heap, (got[0], got[1], name))


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
        #: Whether the filter gives a task the members it is asked with, as they are (no
        #: ``nodes()`` of its own): then a dispatch neither calls it nor checks its answer
        #: (``clerk._running``'s ``_allowed``). A filter without ``keeps``: always called.
        self.filter_keeps: Callable[[TaskDef], bool] | None = (
            _keeps_all if nodes_filter is None else getattr(nodes_filter, "keeps", None))
        self.records: dict[str, TaskRecord] = {name: TaskRecord() for name in self.defs}
        self.next_slot: dict[str, int] = {}
        # What is due next, so a tick and next_deadline cost O(what is due), not O(tasks):
        # (due ms of next_slot, task) for enabled grid tasks, with stale entries skipped when
        # they surface; and the deadline (wall ms) of each run in flight.
        self._heap: list[tuple[float, str]] = []
        self._inflight = {}  # a Deadlines (see the property)
        #: Task -> (run id, wall ms): the bound ``bound_run`` set on that run in flight (a run
        #: on a node a takeover did not list: clerk._adoptedruns), kept so that a claim again
        #: while scheduling, which rebuilds the deadlines from the rows, keeps it too.
        self._bounds: dict[str, tuple[str, float]] = {}
        #: The activation's clock offset to the previous manager's (clerk._adopt.
        #: begin_activation): its runs in flight time out this much later (ms).
        self._ahead_ms = 0.0
        #: ... and to each manager followed lately, by name (``sender_base_ms``).
        self._ahead_of: dict[str, float] = {}
        #: Each task's place in ``defs`` (which only ever grows at its end): the order in
        #: which pending tasks are decided, without walking every task (see ``in_defs_order``).
        self._order: dict[str, int] = {}
        #: Slots are sent this long before they are due (clerk._lead; 0: at their due time).
        self.dispatch_lead_ms = check_lead(dispatch_lead_ms)
        #: Tasks whose next slot came up for early dispatch while a run was in flight: the
        #: decision waits for the slot's due time (task -> due ms; out of the heap meanwhile).
        self._deferred: dict[str, float] = {}
        self._state_bytes: dict[str, int] = {}
        self._states_total = 0
        self.instant_pending: set[str] = set()
        self.gone: dict[str, float] = {}  # task -> wall time (s) since no live member has it
        #: Tasks this node has in its own task set but does not announce yet: its workers are
        #: starting (or all being replaced). Such a task "gone" is not loaded *yet*, not
        #: removed: a trigger of it says so ("try again"). Kept by the node (clerk._runnerdefs).
        self.loading_here: frozenset[str] = frozenset()
        # Instant runs waiting for a node that has the task loaded (nodes advertise their tasks
        # only once their workers are ready: at a cluster's start, none for a moment). Retried
        # at every tick rather than skipped; not a reason to wake the loop by themselves.
        self._instant_waiting: dict[str, int] = {}  # task -> last slot counted skipped meanwhile
        self.catch_up_pending: dict[str, int] = {}  # task -> the missed slot to run at start
        self.active = False
        self._activation: _Activation | None = None  # under way (clerk._adopt)
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
        #: (Cleared per claim, not at a member's drop: a member that offered under this claim
        #: and was dropped and came back holds no row this table lacks unless it followed
        #: another manager meanwhile, a partition, whose rows its merge HANDOVER brings; and
        #: a step-down covers it only if it acknowledged this claim's heartbeats lately,
        #: clerk._covers. Sim sweeps with a prune at the drop: the same bad seeds, none.)
        self.offered: set[str] = set()
        #: Does a node's build always send an OFFER when it follows a manager? (The shell
        #: sets it: a look at the member's incarnation; see clerk._adopt.)
        self.always_offers: Callable[[str], bool] = _no
        self._member_since: dict[str, float] = {}
        #: Live nodes not members (yet) whose OFFERs a takeover waits for as a member's, at
        #: most ``OFFER_WAIT_MS`` (clerk._adopt; set by the layer: ``take_rejoin_heard``).
        self.expected: set[str] = set()
        #: The parts of merge HANDOVERs merged, per step-down (clerk._covers).
        self._cover_parts = CoverParts()
        self._init_wait_ms = 0.0  # instant inits held until this wall ms (see next_deadline)
        #: Tasks whose state a load kept over the loaded row's (ours is better: a row of our
        #: data directory the manager has not merged yet), as of each task's last load.
        self.kept_own: set[str] = set()
        #: Conflicts found by merges, for the shell to log (drained by it).
        self.conflicts_out: list[Conflict] = []
        #: What changed since the shell last took it (``take_dirty``): the rows replication
        #: must encode again (clerk._replica). ``all_dirty``: every row (a load, an activation).
        self.dirty: Touched = Touched()
        #: Name -> ``dirty.marks[name]`` right after a dispatch that changed nothing in the row
        #: but ``dispatched``, ``decided`` and ``running`` since the row's mark before it
        #: (``Running._dispatch``): the table log may splice it (clerk._replicalog).
        self.dispatch_marks: dict[str, int] = {}
        #: Name -> ``dirty.marks[name]`` right after a slot skipped because the run before it
        #: is still in flight, when that changed only ``decided`` and ``counts`` since the
        #: row's mark before it (``Running._tick_task``): spliced the same way.
        self.skip_marks: dict[str, int] = {}
        self.all_dirty = True
        self.runs_dirty = True  # node_runs
        #: Quorum mode's write-ahead watches the next slots (``watch_upcoming``): the tasks
        #: whose next slot was (re)scheduled since it last looked. None: nobody watches.
        self._rescheduled: set[str] | None = None
        self._history_caps: dict[int, int] = {}  # number of tasks -> history_cap
        #: task -> (origin, last branch, checksum) of its last dispatch's base tag
        #: (``Running._base_tag``).
        self._tags: dict[str, tuple[Any, Any, str]] = {}

    @property
    def activating(self) -> bool:
        """An activation is under way (``begin_activation``, :mod:`clerk._adopt`): the
        scheduler is not ``active`` until it is done."""
        return self._activation is not None

    @property
    def _inflight(self) -> Deadlines:
        """The deadline (wall ms) of each run in flight (:class:`Deadlines`). Assigned a plain
        mapping (a takeover rebuilds it from the records), it makes a Deadlines of it."""
        return self._deadlines

    @_inflight.setter
    def _inflight(self, value: Mapping[str, float]) -> None:
        self._deadlines = value if isinstance(value, Deadlines) else Deadlines(value)

    def in_flight(self) -> list[str]:
        """The tasks with a run in flight, in the order their runs entered (O(runs))."""
        return list(self._deadlines)

    def in_defs_order(self, names: Iterable[str]) -> list[str]:
        """``names`` that have a definition, in the order of ``defs`` (O(k log k) for k names,
        where walking ``defs`` would be O(tasks)). ``defs`` only ever gains tasks at its end
        (a changed definition keeps its place), so its length tells when to renumber."""
        order = self._order
        if len(order) != len(self.defs):
            order = self._order = {name: i for i, name in enumerate(self.defs)}
        return sorted((n for n in names if n in order), key=order.__getitem__)

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
        if self._rescheduled is not None:
            self._rescheduled.add(name)
        d = self.defs[name]
        if ((self.active or self._activation is not None) and d.enabled and name in self._grid
                and name not in self.gone
                and not self.records[name].paused and name not in self._deferred):
            heapq.heappush(self._heap, (self.due_ms(name, self.next_slot[name]), name))

    def _fresh(self, due: float, name: str) -> bool:
        # A deploy may take a task's schedule away (an interval task made instant-only): its
        # old entries are stale, not a KeyError on the loop.
        grid = self._grid.get(name)
        return grid is not None and due == grid.due_ms(self.next_slot[name])

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

    def upcoming_of(self, name: str) -> tuple[int, Grid] | None:
        """One task's entry of :meth:`upcoming` (its next slot and grid), None if it has none."""
        d = self.defs.get(name)
        grid = self._grid.get(name)
        nxt = self.next_slot.get(name)
        if (d is None or grid is None or nxt is None or not d.enabled or name in self.gone
                or self.records[name].paused):
            return None
        return nxt, grid

    def watch_upcoming(self) -> list[tuple[str, int, Grid]]:
        """:meth:`upcoming` now, and from now on remember the tasks whose next slot is
        (re)scheduled (``take_rescheduled``): every path that makes a task upcoming again or
        moves its next slot goes through ``_push`` (activation, tick, merge, resume, deploy).
        Bounded: a set of task names."""
        self._rescheduled = set()
        return self.upcoming()

    def take_rescheduled(self) -> list[str]:
        """The tasks whose next slot was (re)scheduled since the last call (see
        ``watch_upcoming``), sorted (a deterministic order for the simulator)."""
        got = self._rescheduled
        if not got:
            return []
        self._rescheduled = set()
        return sorted(got)

    @property
    def due_time_pending(self) -> bool:
        """Slots wait to be sent at their due time, without the lead (their predecessor was
        running at their dispatch instant): the loop must wake for them to the
        sub-millisecond (clerk._agent's poll rounding)."""
        return bool(self._deferred)

    def next_deadline(self, wall: float) -> float:
        """Wall time (s) of the next thing to do; ``inf`` when inactive."""
        if not self.active:
            return math.inf
        if self.catch_up_pending:
            return wall
        best = self._deadlines.earliest() / 1000
        pending = self.instant_pending
        if pending and not pending <= self._instant_waiting.keys():
            # Now, unless an init is held for the members' OFFERs (then when that ends).
            best = min(best, max(wall, self._init_wait_ms / 1000))
        if self.draining:
            return best
        if self._deferred:  # the slots due within one lead whose predecessor was running
            best = min(best, min(self._deferred.values()) / 1000)
        heap = self._heap
        while heap:
            due, name = heap[0]
            if self._fresh(due, name):
                return min(best, (due - self.dispatch_lead_ms) / 1000)
            heapq.heappop(heap)
        return best

    @property
    def history_cap(self) -> int:
        """Each task's share of the history budget (see clerk._control); tasks come and go
        (computed again when their number changes: it is read at every result)."""
        tasks = len(self.defs)
        cap = self._history_caps.get(tasks)
        if cap is None:
            cap = min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES // max(1, tasks))
            self._history_caps = {tasks: cap}
        return cap

    def state_bytes(self, name: str) -> int:
        """What the task's state takes in the replicated table."""
        rec = self.records[name]
        return _packed_size(rec.state) if rec.has_state else 0
