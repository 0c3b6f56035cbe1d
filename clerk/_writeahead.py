"""Quorum mode's write-ahead: what a manager holds back until a majority of voters has it.

Pure (no I/O, wall time passed in). The task layer (:mod:`clerk._runner`, and
:mod:`clerk._simtasks` in the simulator) owns one :class:`WriteAhead` per ballot, asks it which
rows to write through ``NodeCore.quorum_write`` and feeds it the ``WriteCommitted`` seqs.
The registers and the proof are in :mod:`clerk._quorum`. Rules:

* **Continue after the majority's reservations.** On taking the claim, each task's record gets
  ``dispatched >= reserved`` as phase 1 learned it (:meth:`WriteAhead.continue_after`): the
  scheduler never dispatches a slot an earlier ballot may have dispatched. Reservations made
  just before a crash thus cost the slots due within one lead of it, beyond the failover
  window: one slot per task while the lead is below the interval (20 ms on an idle machine).
* **Runs that never left.** A run in flight in the table a new ballot continues from, whose
  slot is above the reservation phase 1 learned, never left: its EXECUTE waited for a commit
  of that reservation, and a committed one is on a majority, so phase 1 would show it. It is
  a held dispatch of a ballot that was lost before the commit. So is one this node held
  itself when its ballot was lost (:meth:`WriteAhead.never_left`), even if phase 1 shows its
  reservation (accepted by a minority, this node's own voter among them): a manager that
  claims again continues from its own table (:mod:`clerk._quorumcore`, "Re-claim"), which
  shows the held run as in flight. Adopted, such a run would be waited for until its
  deadline (the task's timeout: seconds of slots skipped, then a "timeout" of a run that
  never ran); it is dropped instead, its slot counted as skipped and never run again.
* **Reserve ahead.** When a task's first unreserved slot is due within
  :attr:`WriteAhead.lead_ms`, every slot due within the lead is reserved in one row (the
  highest of them: ``reserved`` is a maximum), and one write carries the rows of every task
  due soon (:meth:`WriteAhead.ahead`). The loop wakes up for it a lead before the due time
  (:meth:`WriteAhead.next_reserve_ms`). Both read the top of a heap of each upcoming task's
  first unreserved slot's due time (``WriteAhead._heap``), not every task: a turn costs
  O(log tasks), a reservation O(what it reserves). The heap learns from the scheduler which
  tasks' next slots were (re)scheduled (:class:`Upcoming`); an entry that no longer matches
  the scheduler (a reservation, a pause, a task gone) is corrected when it surfaces.
  The lead is ``max(RESERVE_LEAD_MIN_MS, RESERVE_LEAD_FACTOR x the median commit
  latency)`` of the last ``LATENCY_KEEP`` commits, at most ``RESERVE_LEAD_MAX_MS``: a
  reservation is committed before its slot is due even when commits slow down (a loaded
  machine, a slow disk), so lateness does not grow by a commit.
* **Dispatch only what is committed.** An EXECUTE for slot ``k`` of ``t`` leaves only once a
  write with ``reserved[t] >= k`` is committed under this ballot (:meth:`WriteAhead.gate`);
  until then it is held (a slot not reserved ahead, e.g. a trigger, is reserved at once and
  leaves a commit latency later).
* **Results count once committed.** A run's new record is written (:meth:`WriteAhead.result`);
  only when that write is committed is its RESULT acknowledged, its ``ok`` logged and the
  table replicated with it (:meth:`WriteAhead.on_committed` releases what waited).
* Everything held dies with the ballot: a manager that loses it leaves its results
  unacknowledged (the worker resends them to the next manager, which counts a conflict).
"""

from __future__ import annotations

import heapq
import statistics
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from clerk._calendar import Grid

__all__ = ["LATENCY_KEEP", "RESERVE_LEAD_FACTOR", "RESERVE_LEAD_MAX_MS", "RESERVE_LEAD_MIN_MS",
           "Upcoming", "WriteAhead"]

#: The least reservation lead (ms). A commit is two fsyncs (the manager's own vote and the
#: fastest other voter's, in parallel) plus one round trip: ~1-5 ms on a LAN with SSDs; 20 ms
#: also covers a loaded machine's scheduling delays without reserving noticeably early.
RESERVE_LEAD_MIN_MS = 20.0
#: The lead is this many times the median commit latency when that is larger: a commit several
#: times slower than usual (a slow fsync, a GC pause) still lands before the slot is due.
RESERVE_LEAD_FACTOR = 4.0
#: Commit latencies kept for the median.
LATENCY_KEEP = 64
#: The most the lead may grow to (ms): a crash costs the slots reserved within one lead, so a
#: disk slow enough to need more than a second is better paid in lateness than in lost slots.
RESERVE_LEAD_MAX_MS = 1000.0


class Upcoming(Protocol):
    """What the write-ahead reads of the scheduler (:class:`clerk._schedstate.SchedulerState`):
    each scheduled grid task's next slot and grid."""

    def watch_upcoming(self) -> list[tuple[str, int, Grid]]:
        """Every upcoming ``(task, next slot, grid)``; from now on, note the tasks whose next
        slot is (re)scheduled."""
        ...

    def take_rescheduled(self) -> list[str]:
        """The tasks noted since the last call."""
        ...

    def upcoming_of(self, task: str) -> tuple[int, Grid] | None:
        """``(next slot, grid)`` of an upcoming task; None if it is not (paused, gone...)."""
        ...


@dataclass
class _Held:
    what: Any
    task: str
    slot: int | None  # a dispatch: waits for reserved[task] >= slot
    seqs: set[int] = field(default_factory=set)  # a result: waits for these writes


class WriteAhead:
    """One ballot's write-ahead on the manager (module docstring)."""

    def __init__(self, learned: Mapping[str, int | None],
                 reserved: Callable[[str], int | None]) -> None:
        """``learned``: per task the highest reservation phase 1 showed; ``reserved``: the
        highest slot of a task committed as reserved under this ballot (the proposer's)."""
        self.learned = {t: r for t, r in learned.items() if r is not None}
        self._reserved = reserved
        self.asked: dict[str, int] = dict(self.learned)  # highest slot written per task
        self.held: list[_Held] = []
        self.started: dict[int, float] = {}  # seq -> wall ms when written
        self.latencies: deque[float] = deque(maxlen=LATENCY_KEEP)
        self.committed: set[int] = set()
        self.at_once = 0  # dispatches whose reservation was committed in time
        self.late = 0  # dispatches held for their reservation's commit
        # The reserve heap (see the module docstring): (due ms of the first unreserved
        # slot, task), and each task's current key; entries that differ are superseded.
        self._up: Upcoming | None = None
        self._heap: list[tuple[float, str]] = []
        self._key: dict[str, float] = {}

    @property
    def lead_ms(self) -> float:
        if not self.latencies:
            return RESERVE_LEAD_MIN_MS
        return min(RESERVE_LEAD_MAX_MS, max(
            RESERVE_LEAD_MIN_MS, RESERVE_LEAD_FACTOR * statistics.median(self.latencies)))

    def continue_after(self, records: Mapping[str, Any],
                       never_left: Collection[tuple[str, str]] = ()) -> list[str]:
        """Raise each record's ``dispatched`` to the learned reservation (before activating
        the scheduler): never dispatch a slot an earlier ballot may have. Drop every run in
        flight that never left (module docstring, "Runs that never left"): above it, or
        in ``never_left`` (task, run id: this node's held dispatches of an earlier ballot,
        :meth:`never_left`); returns their tasks."""
        for task, slot in self.learned.items():
            rec = records.get(task)
            if rec is not None and rec.dispatched < slot:
                rec.dispatched = slot
        dropped = []
        for task, rec in records.items():
            run = getattr(rec, "running", None)
            if run is not None and (int(run["slot"]) > self.learned.get(task, -1)
                                    or (task, run["run"]) in never_left):
                rec.running = None
                rec.dispatched = max(rec.dispatched, int(run["slot"]))  # (never run again)
                rec.counts["skipped"] += 1
                dropped.append(task)
        return dropped

    def reserve(self, task: str, slot: int) -> dict[str, Any]:
        """The row reserving ``slot`` of ``task``, or nothing if already written."""
        if self.asked.get(task, -1) >= slot:
            return {}
        self.asked[task] = slot
        if self._up is not None:
            self._note(self._up, task)
        return {task: {"reserved": slot}}

    def _first_unreserved(self, task: str, nxt: int) -> int:
        return max(nxt, self.asked.get(task, nxt - 1) + 1)

    def _due_first(self, up: Upcoming, task: str) -> float | None:
        """The due time (wall ms) of ``task``'s first slot not reserved yet; None: not
        upcoming."""
        got = up.upcoming_of(task)
        if got is None:
            return None
        nxt, grid = got
        return grid.due_ms(self._first_unreserved(task, nxt))

    def _sync(self, up: Upcoming) -> None:
        """Bring the heap up to the scheduler: all of it the first time (O(tasks), once per
        ballot), then the tasks it rescheduled since (O(changes))."""
        if self._up is not up:
            self._up = up
            self._key = {t: grid.due_ms(self._first_unreserved(t, nxt))
                         for t, nxt, grid in up.watch_upcoming()}
            self._heap = [(due, t) for t, due in self._key.items()]
            heapq.heapify(self._heap)
            return
        for task in up.take_rescheduled():
            self._note(up, task)

    def _note(self, up: Upcoming, task: str) -> None:
        """Key ``task`` by its first unreserved slot's due time (again)."""
        due = self._due_first(up, task)
        if due is None:
            self._key.pop(task, None)  # its entries are dropped when they surface
        elif self._key.get(task) != due:
            self._key[task] = due
            heapq.heappush(self._heap, (due, task))
            if len(self._heap) > 2 * len(self._key) + 64:  # superseded entries: compact
                self._heap = [(d, t) for t, d in self._key.items()]
                heapq.heapify(self._heap)

    def _top(self, up: Upcoming) -> tuple[float, str] | None:
        """The upcoming task whose first unreserved slot is due first, and that due time."""
        heap, key = self._heap, self._key
        while heap:
            due, task = heap[0]
            if key.get(task) != due:  # superseded by a later entry of the task, or gone
                heapq.heappop(heap)
                continue
            now_due = self._due_first(up, task)
            if now_due == due:
                return due, task
            heapq.heappop(heap)  # the scheduler moved on without a note: key it again
            if now_due is None:
                del key[task]
            else:
                key[task] = now_due
                heapq.heappush(heap, (now_due, task))
        return None

    def ahead(self, up: Upcoming, wall_ms: float) -> dict[str, Any]:
        """Rows reserving, for each upcoming task whose first unreserved slot is due within
        the lead, every slot due within the lead (O(log tasks) + O(what it reserves))."""
        self._sync(up)
        rows: dict[str, Any] = {}
        lead = self.lead_ms
        while (top := self._top(up)) is not None and top[0] - wall_ms <= lead:
            task = top[1]
            got = up.upcoming_of(task)
            assert got is not None  # (_top checked)
            nxt, grid = got
            first = self._first_unreserved(task, nxt)
            rows.update(self.reserve(task, max(first, grid.slot_at(wall_ms + lead))))
            self._note(up, task)  # its next unreserved slot is due after the lead now
        return rows

    def next_reserve_ms(self, up: Upcoming) -> float:
        """When (wall ms) the next reservation is due: ``lead`` before the earliest slot not
        reserved yet (the loop must wake up then, not at the due time); ``inf``: none."""
        self._sync(up)
        top = self._top(up)
        return float("inf") if top is None else top[0] - self.lead_ms

    def wrote(self, seqs: Iterable[int], wall_ms: float) -> None:
        """The caller wrote rows as ``seqs`` (for the commit latency)."""
        for s in seqs:
            self.started[s] = wall_ms

    def gate(self, task: str, slot: int) -> bool:
        """May slot ``slot`` of ``task`` be dispatched now (its reservation committed)?"""
        got = self._reserved(task)
        return got is not None and got >= slot

    def hold_dispatch(self, what: Any, task: str, slot: int) -> None:
        self.late += 1
        self.held.append(_Held(what, task, slot))

    def never_left(self) -> set[tuple[str, str]]:
        """(task, run id) of every dispatch held now: when the ballot is lost, these runs
        never left (no EXECUTE was sent), whatever phase 1 of the next ballot shows."""
        return {(h.task, h.what.run_id) for h in self.held
                if h.slot is not None and isinstance(getattr(h.what, "run_id", None), str)}

    def hold_result(self, what: Any, task: str, seqs: Iterable[int]) -> None:
        pending = set(seqs) - self.committed
        self.held.append(_Held(what, task, None, pending))

    def on_committed(self, seq: int, wall_ms: float) -> list[Any]:
        """Write ``seq`` is committed: what may go now (dispatches and results, in the order
        they were held)."""
        self.committed.add(seq)
        start = self.started.pop(seq, None)
        if start is not None:
            self.latencies.append(max(0.0, wall_ms - start))
        out: list[Any] = []
        keep: list[_Held] = []
        for h in self.held:
            h.seqs.discard(seq)
            ready = self.gate(h.task, h.slot) if h.slot is not None else not h.seqs
            (out if ready else keep).append(h.what if ready else h)
        self.held = keep
        if len(self.committed) > 4 * LATENCY_KEEP:  # only recent seqs can still be waited on
            floor = max(self.committed) - 2 * LATENCY_KEEP
            self.committed = {s for s in self.committed if s > floor}
        return out

    def drop_held(self, keep: Callable[[Any], bool]) -> list[Any]:
        """Forget held items ``keep`` rejects (e.g. dispatches past their deadline); them."""
        gone = [h.what for h in self.held if not keep(h.what)]
        self.held = [h for h in self.held if keep(h.what)]
        return gone
