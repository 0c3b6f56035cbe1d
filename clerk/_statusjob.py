"""A node's status built in slices between loop turns, so that asking for it never stalls the
loop (10,000 tasks: ~1 s of rows in one step, past the manager timeout of 0.7 s: a status
request could cost the cluster its manager).

Rules:

* **Slices.** A STATUS (a whole one: not a part of one, not the brief one ``LocalCluster``
  polls) starts a job: a generator that builds the status and yields whenever its
  :class:`Slice` is over its deadline (``STATUS_SLICE`` s from the start of the turn's
  slice). The agent's loop runs one slice per turn while a job is pending, without waiting
  in its poll (the traffic of the turn is handled between slices), and answers each asker on
  the connection its STATUS came in on once the job is done.
* **One moment per task table.** The task rows are built one by one; a row whose task changed
  after it was built is built again (the scheduler notes every changed row in
  ``Scheduler.dirty``, and each job watches it: :class:`clerk._schedstate.Touched`; a
  follower notes the rows it loads from its replica the same way), until a pass finds no
  change. That last look and the answer are in one step: every row is as of that moment.
  After ``STATUS_PASSES`` passes (a table changing faster than the rows are built) the last
  pass runs without yielding. The member list and the members' task lists are those of the
  moment the job started.
* **Askers share a job.** A STATUS that arrives while a job is under way joins it (the answer
  is of a moment after its arrival, as its own would be); at most ``MAX_STATUS_ASKERS`` are
  kept (more are dropped: each retries like any unanswered request).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["MAX_STATUS_ASKERS", "STATUS_PASSES", "STATUS_SLICE", "Slice", "StatusJobs", "release",
           "run"]

#: Building a status per loop turn, in seconds: a slice's rows and the turn's other work stay
#: near 1 ms (as ``LOAD_BUDGET`` and ``ENCODE_BUDGET``).
STATUS_SLICE = 0.0004
#: Passes over the rows changed while a status was built before the last one runs in one step.
STATUS_PASSES = 8
#: Askers waiting for a status at most (a flood of STATUS is not a flood of jobs: they share).
MAX_STATUS_ASKERS = 64

log = logging.getLogger("clerk.node")

T = TypeVar("T")
Steps = Generator[None, None, dict[str, Any]]


class Slice:
    """The deadline of the current slice of a job (``clock``: ``time.perf_counter``)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.deadline = math.inf

    def start(self, budget: float) -> None:
        self.deadline = self._clock() + budget

    def over(self) -> bool:
        return self._clock() > self.deadline


def run(steps: Generator[None, None, T]) -> T:
    """A job's result in one go (its slice's deadline never passes)."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            result: T = stop.value
            return result


Job = Generator[None, None, Any]


def release(items: list[Any], sl: Slice, step: int = 512) -> Iterator[None]:
    """Empty ``items`` (a status's 10,000 rows, their texts) from the end, ``step`` at a time,
    yielding whenever ``sl`` is over: dropping them all at once was ~6 ms of one step."""
    while items:
        del items[-step:]
        if items and sl.over():
            yield


@dataclass
class _Job:
    steps: Job
    askers: list[Any] = field(default_factory=list)


class StatusJobs:
    """The status under way and who waits for it (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.slice = Slice(clock)
        self._job: _Job | None = None
        self.built = 0  # statuses built in slices
        self.slices = 0  # slices they took
        self.dropped = 0  # askers over MAX_STATUS_ASKERS

    def busy(self) -> bool:
        return self._job is not None

    def ask(self, asker: Any, make: Callable[[Slice], Job]) -> None:
        """``asker`` wants a whole status: it joins the job under way, or starts one made by
        ``make`` (a generator over this object's slice)."""
        if self._job is None:
            self._job = _Job(make(self.slice))
        if len(self._job.askers) >= MAX_STATUS_ASKERS:
            self.dropped += 1
            return
        self._job.askers.append(asker)

    def step(self, budget: float = STATUS_SLICE) -> tuple[list[Any], Any] | None:
        """One slice of the job; when it is done, its askers and what it made."""
        job = self._job
        if job is None:
            return None
        self.slice.start(budget)
        self.slices += 1
        try:
            next(job.steps)
        except StopIteration as stop:
            self._job = None
            self.built += 1
            return job.askers, stop.value
        except Exception:  # a bug must not take the loop down: the askers ask again
            self._job = None
            log.exception("building a status failed")
        return None

    def stats(self) -> dict[str, int]:
        return {"built": self.built, "slices": self.slices, "askers_dropped": self.dropped}
