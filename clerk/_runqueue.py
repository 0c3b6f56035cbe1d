"""The executor's queue of runs that wait for a worker, O(log n) per run and per tick.

A run waits here until a worker takes it (:mod:`clerk._executor`). Rules, as the executor had
them with a plain list:

* **Held, then ready.** A run sent ahead of its due time is *held* until its ``release`` time
  (``RELEASE_LEAD_MS`` before it is due, :mod:`clerk._lead`); :meth:`RunQueue.release` makes
  the held runs whose time has come ready.
* **Earliest start first.** A free worker takes the ready run with the earliest ``start`` (its
  due time, or its arrival for a run due at once); ties go to the run that arrived first. A run
  handed back (its worker's link broke before it took the run) keeps its place.
* **Timeouts.** A queued run whose ``deadline`` passed leaves the queue (:meth:`expired`).
* **Wake-ups.** :meth:`next_deadline` is the earliest deadline of a queued run or release of
  a held one: the loop must wake up then.
* **This node's wall clock steps while a run waits** (NTP stepping it, ``date -s``): the
  release and deadline here are monotonic, but the due time and deadline the worker holds
  the run to and the stale check read the wall clock. A run keeps its moment, not its wall
  time: :meth:`Job.follow_clock`, as it leaves the queue, moves them by how far the wall
  clock moved against the monotonic one since the run came (``wall_base``). Before, a
  step forward past an interval refused a run held 2 s ahead as stale (lost), and a step
  back held it that much longer; a smaller step forward started it early by the step, by
  the manager's clock too (tests/unit/test_skew2_held_step.py). What the worker holds
  already (its last ``RELEASE_LEAD_MS``) is not moved. Nor is a run the manager sent to
  itself (the executor does not note its clock): its due time is that very clock's grid, so
  when it steps the slot's moment moves with it; followed, a step back started such a run
  before its due time by the manager's clock, one forward ran it past the deadline the
  manager times it out by (tests/unit/test_review15_own_clock_step.py). Its cost: four
  clock reads a run, 1.6 us (``time.thread_time`` median of 7 x 200,000 ``note_clock`` +
  ``follow_clock`` without a step, 2026-12-04): 0.2 % of a core at 1,200 runs a second.

Every operation is O(log n) amortized for n queued runs (heaps with lazy deletion, compacted
when stale entries outnumber live ones): the loop asks for the next deadline every turn and
expires every tick, and with a list both walked every queued run (2.9 ms a tick with 10,000
runs queued on one node).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "RunQueue"]


@dataclass(eq=False, slots=True)
class Job:
    """A run in this node's executor: queued, then on a worker."""

    msg: Any  # clerk._messages.Execute
    reply_to: str
    received: float
    deadline: float
    #: When it may go to a worker (monotonic): at once, or RELEASE_LEAD_MS before its due time.
    release: float = 0.0
    #: When it starts (monotonic): its due time, or at once. Free workers take the earliest.
    start: float = 0.0
    #: Until :meth:`RunQueue.release` sees its release time: that time wakes the loop.
    held: bool = False
    wid: int | None = None
    started: float = 0.0
    seq: int = field(default=0, repr=False)  # arrival order in the queue (ties, staleness)
    #: This node's wall clock minus its monotonic clock (ms) when ``msg``'s times were last
    #: read against it (:meth:`follow_clock`; nan: never).
    wall_base: float = math.nan
    #: The EXECUTE as it came, once :meth:`follow_clock` moved ``msg`` (what this node's
    #: OFFER lists: clerk._offerruns), else None.
    as_came: Any = None

    def note_clock(self, wall: float, mono: float) -> None:
        """``msg``'s times are read against this node's wall clock ``wall`` now (s; ``mono``
        its monotonic clock, read with it)."""
        self.wall_base = (wall - mono) * 1000

    def follow_clock(self, wall: float, mono: float) -> None:
        """Move ``msg``'s due time and deadline by how far the wall clock stepped against the
        monotonic one since :meth:`note_clock` (a millisecond or more: less is the reads'
        own rounding), so that the run starts at the moment it was due (module docstring)."""
        base = (wall - mono) * 1000
        step = base - self.wall_base
        if not step >= 1.0 and not step <= -1.0:  # (nan: never noted)
            return
        msg = self.msg
        if self.as_came is None:
            self.as_came = msg
        self.wall_base = base
        due, deadline = msg.due_ms, msg.deadline_ms
        self.msg = dataclasses.replace(
            msg, due_ms=math.ceil(due + step) if due else 0,
            deadline_ms=math.floor(deadline + step) if deadline else 0)


class RunQueue:
    """Queued runs (see the module docstring). Iterates in arrival order."""

    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}  # queued, by seq (insertion: arrival order)
        self._seq = 0
        self._ready: list[tuple[float, int]] = []  # (start, seq) of ready runs
        self._held: list[tuple[float, int]] = []  # (release, seq) of held runs
        self._deadlines: list[tuple[float, int]] = []  # (deadline, seq) of every queued run
        # run id -> how many queued runs carry it (a plain dict: Counter's deletion is a
        # Python-level method, ~1 % of a follower's loop at 1,200 runs/s).
        self._run_ids: dict[str, int] = {}
        self.held_count = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def has_run(self, run_id: str) -> bool:
        return run_id in self._run_ids

    def add(self, job: Job, now: float) -> None:
        """Queue ``job``: held if its release time is still to come."""
        self._seq += 1
        job.seq = self._seq
        job.held = job.release > now
        self._enter(job)
        heapq.heappush(self._deadlines, (job.deadline, job.seq))

    def push_back(self, job: Job) -> None:
        """A run :meth:`pop_ready` gave out that no worker took: it waits again, in its
        place (its arrival order kept)."""
        job.held = False
        self._enter(job)
        heapq.heappush(self._deadlines, (job.deadline, job.seq))

    def _enter(self, job: Job) -> None:
        self._jobs[job.seq] = job
        rid = job.msg.run_id
        self._run_ids[rid] = self._run_ids.get(rid, 0) + 1
        if job.held:
            self.held_count += 1
            heapq.heappush(self._held, (job.release, job.seq))
        else:
            heapq.heappush(self._ready, (job.start, job.seq))

    def _leave(self, job: Job) -> None:
        del self._jobs[job.seq]
        rid = job.msg.run_id
        left = self._run_ids.get(rid, 0) - 1
        if left > 0:
            self._run_ids[rid] = left
        else:
            self._run_ids.pop(rid, None)
        if job.held:
            self.held_count -= 1

    def release(self, now: float) -> None:
        """Held runs whose release time has come are ready."""
        held, jobs = self._held, self._jobs
        while held and held[0][0] <= now:
            _, seq = heapq.heappop(held)
            job = jobs.get(seq)
            if job is None or not job.held:
                continue  # stale: it left the queue
            job.held = False
            self.held_count -= 1
            heapq.heappush(self._ready, (job.start, seq))

    def pop_ready(self) -> Job | None:
        """The ready run with the earliest start (then arrival), out of the queue; None if
        no run is ready."""
        ready, jobs = self._ready, self._jobs
        while ready:
            _, seq = heapq.heappop(ready)
            job = jobs.get(seq)
            if job is None or job.held:
                continue  # stale
            self._leave(job)
            self._compact()
            return job
        return None

    def expired(self, now: float) -> list[Job]:
        """Queued runs whose deadline is ``now`` or past, out of the queue."""
        out: list[Job] = []
        deadlines, jobs = self._deadlines, self._jobs
        while deadlines and deadlines[0][0] <= now:
            _, seq = heapq.heappop(deadlines)
            job = jobs.get(seq)
            if job is not None and now >= job.deadline:
                self._leave(job)
                out.append(job)
        self._compact()
        return out

    def next_deadline(self) -> float:
        """The earliest deadline of a queued run or release of a held one (``inf``: none)."""
        best = float("inf")
        jobs = self._jobs
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in jobs:
            heapq.heappop(deadlines)  # stale: it left the queue
        if deadlines:
            best = deadlines[0][0]
        held = self._held
        while held:
            job = jobs.get(held[0][1])
            if job is not None and job.held:
                if held[0][0] < best:
                    best = held[0][0]
                break
            heapq.heappop(held)
        return best

    def _compact(self) -> None:
        """Rebuild the heaps from the live runs once stale entries outnumber them (bounds
        memory; amortized O(1) per operation)."""
        live = len(self._jobs)
        if len(self._deadlines) + len(self._ready) + len(self._held) <= 4 * live + 64:
            return
        jobs = self._jobs.values()
        self._deadlines = [(j.deadline, j.seq) for j in jobs]
        self._ready = [(j.start, j.seq) for j in jobs if not j.held]
        self._held = [(j.release, j.seq) for j in jobs if j.held]
        for heap in (self._deadlines, self._ready, self._held):
            heapq.heapify(heap)
