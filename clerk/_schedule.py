"""The manager's schedule: a pure state machine over the task table (no I/O, time injected).

**Grid.** Each task's slots lie on a grid (:mod:`clerk._calendar`): run ``k`` of an interval
task is due at wall time ``phase + k * interval`` (milliseconds since the epoch, ``phase``
derived from the task name); a cron task's slots are its fire times. Every node computes the
same grid, so a new manager continues it without asking anyone. Slots are counted with the
grid's ``count``, never by subtracting ids (a cron slot's id is its fire time in seconds).

**One run at a time.** A slot that comes while the previous run is still in flight is
*skipped* and counted, never overlapped. Each run gets a run id and a deadline
(``timeout`` + a transit grace); past it the manager records a timeout even if the node never
answers (a node that dies mid-run is a timeout, not a hang). A worker node's disconnect fails
its runs at once.

**The table** (``table()``) is what the manager replicates to every member with its heartbeats
and hands over when it leaves: per task the state, whether a state exists, the last slot
dispatched and finished, the run in flight, counters and the last run, and the operator's
facts (the pause register and the run history: :mod:`clerk._control`). From it a new manager
continues:

* after a graceful hand-over, with the very next slot (nothing missed, nothing doubled) and
  the run in flight adopted (its result comes to the new manager);
* after a crash, with the first slot due after it took over: a slot that fell due while no
  manager was known may or may not have been dispatched by the dead one, so it is skipped
  rather than risked twice (the guarantee: at most the slots inside the failover window).
  A task with ``catch_up = "last"`` instead runs, once and at once, the most recent missed
  slot that fell due at least ``CATCH_UP_GUARD_MS`` before the takeover (the others are
  skipped); a task that never ran has missed nothing.

``init(args)`` runs only when no node holds a state for the task (the EXECUTE carries the
args and ``init=True``); with ``await_offers`` (a real node) the manager first waits for every
live member's OFFER of its durable rows, at most ``OFFER_WAIT_MS`` per member.

**Which state wins** is never decided here by terms or slots: every load, merge and takeover
goes through lineage and version (:mod:`clerk._lineage`, rows in :mod:`clerk._record`). An
``init`` result starts a lineage under the manager's claim; each ok result adds one to its
version under the claim that dispatched the run. A merge that replaces the state of a run in
flight marks it ``rebased``: its result descends from the losing state, so it is dropped and
counted as a conflict. A leaving manager *drains*: it dispatches nothing more but still applies
the results of its runs in flight.

**Definitions change** (rolling deploys, see :mod:`clerk._deploy`): :meth:`Scheduler.update_defs`
adds a task some live member has loaded, applies changed parameters from the next slot of the
new grid, and stops a task no live member has any more (``gone_since`` in status) until one
loads it again. Records of tasks this node has no definition for are kept (and replicated) so
their state survives until a definition comes back.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from clerk._calendar import Grid, due_datetime, grid_for, phase_ms
from clerk._control import HISTORY_BUDGET_BYTES, HISTORY_TASK_BYTES, merge_run_history
from clerk._dispatch import Dispatch, Finished
from clerk._lineage import better, note_update
from clerk._operator import OperatorControl
from clerk._record import (
    PACK_CHUNK,
    Conflict,
    TaskRecord,
    merge_rows,
    pack_table,
    unpack_table,
)
from clerk._tasks import TaskDef

__all__ = ["PACK_CHUNK", "Conflict", "Dispatch", "Finished", "Scheduler", "TaskRecord",
           "pack_table", "phase_ms", "unpack_table"]

#: Extra time the manager waits past a run's timeout for the node's own timeout report.
TRANSIT_GRACE_MS = 1000
#: ``catch_up = "last"`` never runs a slot that fell due this shortly before a crash takeover:
#: the dead manager may have dispatched it in its last moments, before a heartbeat carried that
#: (a slot due earlier was dispatched at its time and replicated within milliseconds, so the
#: table knows). A crash is taken over in ~50 ms and a freeze in < 1 s; 5 s leaves room for a
#: loaded machine's stalls. Such a slot is skipped, as without catch_up: at most once holds.
CATCH_UP_GUARD_MS = 5000
OUTCOMES = ("ok", "error", "timeout")


#: All tasks' states together, as they travel in the packed table (JSON text escaped into a
#: string), may take this much of the one heartbeat (1 MiB) that carries the whole table; the
#: rest is for the table's rows and the member list. A result whose state would go over is an
#: error naming the task (the state is kept): a table too big to send would stop the heartbeats
#: themselves, and every follower would call an election every 0.7 s.
STATES_BUDGET_BYTES = 512 * 1024
#: The error text kept in the table (and shown by status): its tail, where the exception is.
#: The whole remote traceback is in the manager's log.
ERROR_KEEP_CHARS = 1000
#: Before it calls ``init`` for a task without state, the manager waits for every live member
#: to offer the rows of its data directory (OFFER: sent as soon as it follows the manager, so
#: it normally comes within a round trip), or for this long after it first saw the member (an
#: OFFER lost, or a node of an older version that sends none). ``init`` runs only when no
#: member holds a state; 1 s is 10 heartbeats, far above a loaded machine's round trip.
OFFER_WAIT_MS = 1000


def _packed_size(state: Any) -> int:
    """What a state adds to the packed table: its JSON, escaped again into a string."""
    return len(json.dumps(json.dumps(state, separators=(",", ":"))))


def _nothing_new(raw: Any, mine: TaskRecord | None) -> bool:
    """A merged row that cannot change ours: the same state (lineage, version, branch) and
    nothing further along. Checked on the raw dict, so that the OFFERs every follower sends
    a new manager (mostly the very rows it already holds) cost microseconds per row, not a
    full parse: 20 followers' OFFERs of 1000 tasks cost ~90 ms each without it."""
    if mine is None or not isinstance(raw, dict):
        return False
    try:
        hist = raw.get("history")
        tip = hist[-1] if isinstance(hist, list) and hist else None
        return (raw.get("has_state") is mine.has_state and raw.get("version") == mine.version
                and raw.get("origin") == mine.origin
                and tip == (mine.history[-1] if mine.history else None)
                and type(raw.get("slot", -1)) is int and raw.get("slot", -1) <= mine.slot
                and type(raw.get("dispatched", -1)) is int
                and raw.get("dispatched", -1) <= mine.dispatched
                and type(raw.get("runs", 0)) is int and raw.get("runs", 0) <= mine.runs
                and type(raw.get("conflicts", 0)) is int
                and raw.get("conflicts", 0) <= mine.conflicts
                # the operator's facts (clerk._control): the same register and runs
                and raw.get("pause") == mine.pause
                and raw.get("run_history") in (None, mine.run_history.text()))
    except TypeError:
        return False


NodesFilter = Callable[[TaskDef, list[str]], list[str]]


def _grid_key(d: TaskDef) -> tuple[int | None, str | None, str]:
    """What a task's grid depends on: a change of it starts a new grid (new slot ids)."""
    return (d.interval, d.cron, d.timezone if d.cron is not None else "UTC")


class Scheduler(OperatorControl):
    """The task table and its schedule; active only on the manager. Pause, resume, trigger
    and history: :class:`clerk._operator.OperatorControl`."""

    def __init__(self, defs: Sequence[TaskDef], rng: random.Random,
                 nodes_filter: NodesFilter | None = None, *, await_offers: bool = False) -> None:
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

    # --- activation ---------------------------------------------------------------------------

    def load(self, table: Any) -> None:
        """Adopt a replicated table (as a follower, or before taking over): the manager's rows,
        except that a state of ours that is better by lineage and version is kept (a row read
        from our data directory that the manager has not merged yet)."""
        table = unpack_table(table)
        if not isinstance(table, Mapping):
            return
        tasks = table.get("tasks")
        if isinstance(tasks, Mapping):
            for name, raw in tasks.items():
                rec = TaskRecord.from_json(raw)
                if rec is not None and isinstance(name, str):
                    mine = self.records.get(name)
                    if mine is not None and better(mine, rec):
                        rec.take_state(mine)
                    self.records[name] = rec  # kept even without a definition (see above)
        runs = table.get("node_runs")
        if isinstance(runs, Mapping):
            self.node_runs = {k: v for k, v in runs.items() if type(v) is int}

    def merge(self, table: Any, wall: float | None = None, source: str = "") -> bool:
        """Merge another table (a partition healed, or a member's OFFER of its durable rows):
        per task the state by lineage and version, the schedule by the furthest slot (see
        :func:`clerk._record.merge_rows`); conflicts go to ``conflicts_out``. True if anything
        changed. With ``wall``, a record claiming a slot beyond the current one is refused: no
        real manager can have run the future, and a forged table must not push a task's next
        slot out of reach."""
        table = unpack_table(table)
        changed = False
        if not isinstance(table, Mapping) or not isinstance(table.get("tasks"), Mapping):
            return False
        wall_ms = (wall or 0.0) * 1000
        for name, raw in table["tasks"].items():
            mine = self.records.get(name)
            if _nothing_new(raw, mine):
                continue
            rec = TaskRecord.from_json(raw)
            if rec is None or not isinstance(name, str):
                continue
            if name not in self.defs:
                # A task no live member has loaded now: its state is kept (and replicated)
                # until a definition comes back, by the same lineage rules.
                rec.running = None
                if mine is None:
                    self.records[name] = rec
                    changed = True
                else:
                    row_changed, conflict = merge_rows(name, mine, rec, wall_ms, source)
                    changed |= row_changed
                    if conflict is not None:
                        self.conflicts_out.append(conflict)
                continue
            if mine is None:
                continue
            d = self.defs[name]
            if wall is not None and name in self._grid and (
                max(rec.slot, rec.dispatched) > self._slot_at(d, wall_ms) + 1
            ):
                continue
            if self._merge_pause(name, rec.pause, wall):
                changed = True
            runs = merge_run_history(mine.run_history, rec.run_history, self.history_cap)
            if runs is not mine.run_history:
                mine.run_history = runs
                changed = True
            version = (mine.origin, mine.version, mine.has_state)
            row_changed, conflict = merge_rows(name, mine, rec, wall_ms, source)
            if conflict is not None:
                self.conflicts_out.append(conflict)
            if not row_changed:
                continue
            changed = True
            if (mine.origin, mine.version, mine.has_state) != version:
                size = _packed_size(mine.state) if mine.has_state else 0
                self._states_total += size - self._state_bytes.get(name, 0)
                self._state_bytes[name] = size
            if self.active and name in self._grid:
                nxt = max(self.next_slot.get(name, 0), mine.dispatched + 1, mine.slot + 1)
                if nxt != self.next_slot.get(name):
                    self.next_slot[name] = nxt
                    self._push(name)
        return changed

    def offer_from(self, node: str) -> None:
        """``node``'s durable rows are merged: an ``init`` no longer waits for it."""
        self.offered.add(node)
        self._init_wait_ms = 0.0

    def _init_held(self, members: Mapping[str, Iterable[str]], wall_ms: float) -> float:
        """Until when (wall ms) an ``init`` must wait for members' OFFERs; 0 if it need not."""
        until = 0.0
        if not self.await_offers:
            return until
        for node in members:
            if node in self.offered:
                continue
            since = self._member_since.setdefault(node, wall_ms)
            if wall_ms < since + OFFER_WAIT_MS:
                until = max(until, since + OFFER_WAIT_MS)
        return until

    def activate(self, wall: float, graceful: bool,
                 claim: tuple[int, str] | None = None) -> None:
        """Become the scheduler under ``claim`` (term, own name): decide each task's next slot
        (see the module docstring)."""
        self.active = True
        if claim is not None:
            self.claim = claim
            self.offered.add(claim[1])  # our own durable rows were loaded at start
        wall_ms = wall * 1000
        for name, d in self.defs.items():
            rec = self.records[name]
            if name not in self._grid:
                self.next_slot[name] = 0
            else:
                done = max(rec.slot, rec.dispatched)
                if rec.running is not None:
                    done = max(done, int(rec.running.get("slot", -1)))
                current = self._slot_at(d, wall_ms)
                if graceful:
                    self.next_slot[name] = done + 1 if done >= 0 else current + 1
                else:
                    self.next_slot[name] = max(done + 1, current + 1)
                    if done >= 0 and current > done and not rec.paused:
                        # The failover window: due while no manager was known, not run.
                        missed = self._grid[name].count(done + 1, current + 1)
                        late = self._slot_at(d, wall_ms - CATCH_UP_GUARD_MS)
                        if d.catch_up == "last" and d.enabled and late > done:
                            self.catch_up_pending[name] = late  # runs at the first tick
                            missed -= 1
                        rec.counts["skipped"] += missed
            fresh = rec.runs == 0 and rec.slot < 0 and rec.dispatched < 0 and rec.running is None
            if d.instant and d.enabled and fresh and name not in self.gone and not rec.paused:
                self.instant_pending.add(name)
        self._inflight = {name: float(rec.running["deadline"])
                          for name, rec in self.records.items() if rec.running is not None}
        self._state_bytes = {name: _packed_size(rec.state)
                             for name, rec in self.records.items() if rec.has_state}
        self._states_total = sum(self._state_bytes.values())
        self._heap = []
        for name in self.defs:
            self._push(name)

    def update_defs(self, defs: Mapping[str, TaskDef], wall: float) -> list[str]:
        """Adopt the definitions the live members announce (see the module docstring).
        Returns what changed, as sentences for the log."""
        notes: list[str] = []
        wall_ms = wall * 1000
        for name, d in defs.items():
            old = self.defs.get(name)
            back = name in self.gone
            if old == d and not back:
                continue
            try:
                grid = grid_for(d)
            except ValueError as exc:  # a cron expression or zone this node cannot evaluate
                notes.append(f"task={name} announced with a schedule this node cannot use "
                             f"({exc}): keeping the previous definition")
                continue
            self.defs[name] = d
            if grid is None:
                self._grid.pop(name, None)
            else:
                self._grid[name] = grid
            rec = self.records.setdefault(name, TaskRecord())
            self.gone.pop(name, None)
            if old is None:
                notes.append(f"task={name} is loaded by a live member: scheduling it")
            elif back:
                notes.append(f"task={name} is loaded by a live member again: scheduling it")
            else:
                changes = ", ".join(f"{k} {v} -> {d.to_json()[k]}"
                                    for k, v in old.to_json().items() if d.to_json()[k] != v)
                notes.append(f"task={name} definition changed ({changes})")
            if not self.active:
                continue
            if grid is None:
                self.next_slot[name] = 0
            else:
                current = self._slot_at(d, wall_ms)
                if old is not None and _grid_key(old) != _grid_key(d):
                    # A new grid: its slot numbers are not the old one's. Carry on from the
                    # next slot of the new grid; the old ones count as done.
                    rec.slot = rec.dispatched = current
                self.next_slot[name] = max(current, rec.slot, rec.dispatched) + 1
            fresh = rec.runs == 0 and rec.slot < 0 and rec.dispatched < 0 and rec.running is None
            # (Also a task that was "gone" before it ever ran: at a cluster's start no member
            # announces its tasks until its workers are ready; its instant run is still due.)
            if d.instant and d.enabled and fresh and (old is None or back) and not rec.paused:
                self.instant_pending.add(name)
            self._push(name)
        for name in self.defs:
            if name not in defs and name not in self.gone:
                self.gone[name] = wall
                self.instant_pending.discard(name)
                self.catch_up_pending.pop(name, None)
                notes.append(f"task={name} is no longer loaded by any live member: stopped")
        return notes

    def drain(self) -> None:
        """Stop dispatching; keep applying results (see ``draining``)."""
        self.draining = True
        self.instant_pending.clear()

    def deactivate(self) -> None:
        self.active = False
        self.draining = False
        self.instant_pending.clear()
        self._instant_waiting.clear()
        self.catch_up_pending.clear()
        self._heap = []
        self._inflight = {}
        self.offered.clear()
        self._member_since.clear()

    def _push(self, name: str) -> None:
        d = self.defs[name]
        if (self.active and d.enabled and name in self._grid and name not in self.gone
                and not self.records[name].paused):
            heapq.heappush(self._heap, (self.due_ms(name, self.next_slot[name]), name))

    def _fresh(self, due: float, name: str) -> bool:
        return due == self.due_ms(name, self.next_slot[name])

    # --- the grid -----------------------------------------------------------------------------

    def _slot_at(self, d: TaskDef, wall_ms: float) -> int:
        return self._grid[d.name].slot_at(wall_ms)

    def due_ms(self, name: str, slot: int) -> float:
        return self._grid[name].due_ms(slot)

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
        while self._heap:
            due, name = self._heap[0]
            if self._fresh(due, name):
                return min(best, due / 1000)
            heapq.heappop(self._heap)
        return best

    # --- running ------------------------------------------------------------------------------

    def tick(
        self, wall: float, members: Mapping[str, Iterable[str]]
    ) -> tuple[list[Dispatch], list[Finished]]:
        """Expire overdue runs and dispatch due slots. ``members``: live node -> its tasks."""
        if not self.active:
            return [], []
        wall_ms = wall * 1000
        finished = self._expire(wall_ms)
        dispatches: list[Dispatch] = []
        if self.draining:
            return dispatches, finished
        pending = self.instant_pending | self.catch_up_pending.keys()
        due = [n for n in self.defs if n in pending] if pending else []
        while self._heap and self._heap[0][0] <= wall_ms:
            when, name = heapq.heappop(self._heap)
            if self._fresh(when, name) and name not in due:
                due.append(name)
        for name in due:
            dispatches += self._tick_task(name, wall_ms, members, finished)
            self._push(name)
        return dispatches, finished

    def _tick_task(self, name: str, wall_ms: float, members: Mapping[str, Iterable[str]],
                   finished: list[Finished]) -> list[Dispatch]:
        d = self.defs[name]
        rec = self.records[name]
        dispatches: list[Dispatch] = []
        if not d.enabled or name in self.gone:
            return dispatches
        if rec.paused:
            self.instant_pending.discard(name)
            return dispatches
        if name in self.instant_pending:
            if not any(d.name in tasks for tasks in members.values()):
                self._instant_waiting.setdefault(name, -1)
                if name in self._grid:  # the grid goes on meanwhile (nobody can run it)
                    current = self._slot_at(d, wall_ms)
                    if current >= self.next_slot[name]:
                        rec.counts["skipped"] += self._grid[name].count(self.next_slot[name],
                                                                        current + 1)
                        self.next_slot[name] = current + 1
                        self._instant_waiting[name] = current
                return dispatches
            if not rec.has_state:
                held = self._init_held(members, wall_ms)
                if held:
                    self._init_wait_ms = max(self._init_wait_ms, held)
                    return dispatches  # stays pending: init waits for the members' rows
            self.instant_pending.discard(name)
            slot = self._slot_at(d, wall_ms) if name in self._grid else 0
            counted = self._instant_waiting.pop(name, -1)
            if counted >= 0 and counted == slot:
                rec.counts["skipped"] -= 1  # counted while it waited; it runs after all
            self.next_slot[name] = slot + 1
            return self._dispatch(d, rec, slot, wall_ms, members, finished, instant=True)
        if name in self.catch_up_pending:
            slot = self.catch_up_pending.pop(name)
            if rec.running is not None:
                rec.counts["skipped"] += 1  # an adopted run is still going: never overlap
                return dispatches
            # A cron catch-up carries its fire time as due (the end of the missed window); an
            # interval one is due when sent (a node drops a run more than an interval late).
            return self._dispatch(d, rec, slot, wall_ms, members, finished,
                                  instant=d.cron is None)
        if name in self._grid:
            current = self._slot_at(d, wall_ms)
            nxt = self.next_slot[name]
            if current < nxt:
                return dispatches
            # Slots before ``current`` were missed (the loop stalled): count them skipped.
            missed = self._grid[name].count(nxt, current)
            if missed:
                rec.counts["skipped"] += missed
            self.next_slot[name] = current + 1
            if rec.running is not None:
                rec.counts["skipped"] += 1  # in flight: never overlap
                return dispatches
            dispatches += self._dispatch(d, rec, current, wall_ms, members, finished)
        return dispatches

    def _allowed(self, d: TaskDef,
                 members: Mapping[str, Iterable[str]]) -> tuple[list[str], str, str]:
        """The nodes that may run ``d`` now; if none, why, and how that slot counts
        (``skipped``, or ``error`` when ``nodes()`` raised)."""
        eligible = sorted(n for n, tasks in members.items() if d.name in tasks)
        try:
            allowed = [n for n in self.nodes_filter(d, list(eligible)) if n in eligible]
        except Exception as exc:  # user code in nodes(): an error of this run
            return [], f"nodes() raised {type(exc).__name__}: {exc}", "error"
        return (allowed, "no eligible node (none alive has the task, or nodes() returned none)",
                "skipped")

    def _dispatch(self, d: TaskDef, rec: TaskRecord, slot: int, wall_ms: float,
                  members: Mapping[str, Iterable[str]], finished: list[Finished],
                  instant: bool = False, trigger: bool = False) -> list[Dispatch]:
        allowed, error, outcome = self._allowed(d, members)
        if allowed and not rec.has_state and self._init_held(members, wall_ms):
            allowed = []
            error = "init waits for the members' durable states (OFFER)"
        if not allowed:
            rec.counts[outcome] += 1
            # Done with: a successor must neither rerun nor count it again.
            rec.slot = max(rec.slot, slot)
            rec.last = {"node": None, "slot": slot, "duration_ms": 0.0, "outcome": outcome,
                        "error": error, "finished": wall_ms}
            finished.append(Finished(d.name, "", slot, "", outcome, 0.0, error))
            return []
        node = self.rng.choice(sorted(allowed))
        self._run_seq += 1
        run_id = f"{self._run_prefix}-{self._run_seq}"
        rec.dispatched = slot
        rec.running = {"run": run_id, "slot": slot, "node": node, "started": wall_ms,
                       "deadline": wall_ms + d.timeout + TRANSIT_GRACE_MS,
                       "claim": list(self.claim)}
        if trigger:
            rec.running["trigger"] = True
        self._inflight[d.name] = rec.running["deadline"]
        init = not rec.has_state
        # A run started by a trigger (instant) is due when sent; a grid run at its slot's time.
        due = wall_ms if instant or trigger or d.name not in self._grid else min(
            wall_ms, self.due_ms(d.name, slot))
        return [Dispatch(d.name, run_id, slot, node, d.args if init else rec.state, init,
                         d.timeout, int(due), int(wall_ms + d.timeout))]

    def _expire(self, wall_ms: float) -> list[Finished]:
        out: list[Finished] = []
        for name in [n for n, deadline in self._inflight.items() if wall_ms >= deadline]:
            rec = self.records[name]
            run = rec.running
            if run is not None:
                out.append(self._finish(name, rec, "timeout", None, wall_ms - run["started"],
                                        "no result from the node before the deadline", wall_ms))
        return out

    def fail_node(self, node: str, wall: float) -> list[Finished]:
        """The node died (disconnect or dropped): its runs end as timeouts now."""
        wall_ms = wall * 1000
        return [
            self._finish(name, rec, "timeout", None, wall_ms - rec.running["started"],
                         f"node {node} was lost during the run", wall_ms)
            for name, rec in self.records.items()
            if rec.running is not None and rec.running["node"] == node
        ]

    def expects(self, task: str, run_id: str, node: str) -> bool:
        """Is this the run of ``task`` in flight, sent to ``node``?"""
        rec = self.records.get(task)
        run = rec.running if rec is not None else None
        return run is not None and run["run"] == run_id and run["node"] == node

    def on_result(self, task: str, run_id: str, node: str, outcome: str, state: Any,
                  duration_ms: float, error: str, wall: float) -> Finished | None:
        """Apply a node's RESULT; None if it is not for a run in flight (late or unknown) or
        does not come from the node the run was sent to."""
        if not self.expects(task, run_id, node):
            return None
        rec = self.records[task]
        if outcome not in (*OUTCOMES, "refused"):
            outcome, error = "error", f"unknown outcome {outcome!r}: {error}"
        return self._finish(task, rec, outcome, state, duration_ms, error, wall * 1000)

    def _finish(self, name: str, rec: TaskRecord, outcome: str, state: Any,
                duration_ms: float, error: str, wall_ms: float) -> Finished:
        run = rec.running
        assert run is not None
        rec.running = None
        self._inflight.pop(name, None)
        rec.slot = max(rec.slot, int(run["slot"]))
        rec.runs += 1
        if outcome == "ok":
            size = _packed_size(state)
            others = self._states_total - self._state_bytes.get(name, 0)
            if others + size > STATES_BUDGET_BYTES:
                outcome = "error"
                error = (f"task {name!r} returned a state of {size} bytes (as replicated); with "
                         f"the other tasks' states ({others} bytes) that is over the "
                         f"{STATES_BUDGET_BYTES}-byte budget of the replicated table: the "
                         "previous state is kept")
            elif run.get("rebased"):
                # The state this run started from was replaced by a better one (a merge) while
                # it ran: its result descends from the losing state and is dropped, counted.
                rec.conflicts += 1
                rec.last_conflict = {"time": wall_ms, "dropped": 1, "kept": rec.describe(),
                                     "lost": f"the result of run {run['run']}",
                                     "from": str(run["node"])}
                self.conflicts_out.append(Conflict(name, 1, rec.describe(),
                                                   f"the result of run {run['run']}"))
            else:
                if not rec.has_state:  # an init: a new lineage
                    rec.origin = {"term": self.claim[0], "node": self.claim[1],
                                  "time": int(wall_ms)}
                    rec.version, rec.history = 0, []
                # The branch of the claim that dispatched the run: a successor that adopted it
                # (hand-over) and the leaving manager that drained it record the same update.
                claim = run.get("claim")
                if (isinstance(claim, list) and len(claim) == 2 and type(claim[0]) is int
                        and isinstance(claim[1], str)):
                    note_update(rec, claim[0], claim[1])
                else:
                    note_update(rec, *self.claim)
                rec.version += 1
                rec.state = state
                rec.has_state = True
                self._state_bytes[name] = size
                self._states_total = others + size
        rec.counts[outcome] = rec.counts.get(outcome, 0) + 1
        node = str(run["node"])
        if outcome in ("ok", "error"):
            self.node_runs[node] = self.node_runs.get(node, 0) + 1
        round_trip = max(0.0, wall_ms - float(run["started"]))
        kept = error if len(error) <= ERROR_KEEP_CHARS else "..." + error[-ERROR_KEEP_CHARS:]
        rec.last = {"node": node, "slot": run["slot"], "duration_ms": round(duration_ms, 3),
                    "outcome": outcome, "error": kept, "finished": wall_ms,
                    "round_trip_ms": round(round_trip, 3)}
        lateness = self._record_history(name, rec, run, node, outcome, duration_ms, error)
        return Finished(name, str(run["run"]), int(run["slot"]), node, outcome, duration_ms,
                        error, round_trip, lateness)

    # --- views --------------------------------------------------------------------------------

    def table(self) -> dict[str, Any]:
        return {"tasks": {name: rec.to_json() for name, rec in self.records.items()},
                "node_runs": dict(self.node_runs)}

    def status(self, wall: float) -> list[dict[str, Any]]:
        out = []
        for name, d in self.defs.items():
            rec = self.records[name]
            out.append({
                "name": name, "target": d.target, "interval_ms": d.interval, "cron": d.cron,
                "timezone": d.timezone,
                "catch_up": d.catch_up,
                "timeout_ms": d.timeout, "enabled": d.enabled, "instant": d.instant,
                "runs": dict(rec.counts), "last_run": rec.last, "last_slot": rec.slot,
                "running": rec.running, "next_due": self._next_due(name, rec, wall),
                "has_state": rec.has_state,
                "gone_since": self.gone.get(name),
                "version": rec.version, "lineage": rec.origin, "conflicts": rec.conflicts,
                "last_conflict": rec.last_conflict,
            })
            out[-1].update(self._pause_fields(rec))
        return out

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
            slot = max(rec.slot, rec.dispatched, self._slot_at(d, wall * 1000)) + 1
        due = self.due_ms(name, slot)
        return None if due == math.inf else due_datetime(d, due).isoformat()

    @property
    def history_cap(self) -> int:
        """Each task's share of the history budget (see clerk._control); tasks come and go."""
        return min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES // max(1, len(self.defs)))

    def state_bytes(self, name: str) -> int:
        """What the task's state takes in the replicated table."""
        rec = self.records[name]
        return _packed_size(rec.state) if rec.has_state else 0
