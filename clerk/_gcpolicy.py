"""The agent's garbage collector: no full collection over the task table inside the loop.

CPython's cyclic collector walks every tracked container of a generation it collects. With
10,000 tasks the agent holds ~120,000 of them (each task's definition, grid, record, run
history and the lists in it), and a full (generation 2) collection, which the interpreter
starts whenever the objects promoted since the last one exceed a quarter of the long-lived
ones, pauses the loop ~80-170 ms in whatever it is doing: a takeover's sliced step, a
dispatch, a heartbeat round. A takeover promotes a whole table at once (a full collection
follows within a few steps); the steady state promotes one run-history entry per run.

What this module does (:class:`GcPolicy`, one per agent process, set up at its start):

* **Start-up objects leave the collector's reach.** Once the agent is built (modules, task
  classes, configuration), one collection and :func:`gc.freeze`: they live for the process's
  life, and no collection walks them again.
* **What survives a collection is frozen at once.** At the end of every collection (a
  ``gc.callbacks`` hook) what is tracked is frozen (:func:`gc.freeze`: O(1), the interpreter
  splices its lists). Every collection the interpreter starts then walks only the objects
  allocated since the previous one (at most ``GEN0_THRESHOLD`` of them live, 250 instead of
  the interpreter's 700: ~0.05-0.8 ms on a loaded 2-core machine, where 700 took up to
  1.7 ms; as many objects are walked in all), never a generation that has piled up: no
  generation-1 collection walks 7,000 survivors (6-12 ms here), no full one the table
  (80-170 ms). It also saves the work: each object is walked by one collection, not by
  every later one. (Python 3.14 collects the old generation incrementally itself: there the
  policy only times collections.)
* **Memory stays bounded.** A frozen object is still freed by its reference count the
  moment it is dropped (a replaced row, a finished run's history entry, a table replaced by a
  takeover): freezing only keeps the *cyclic* collector away from it. What a freeze can keep
  is cyclic garbage: a reference cycle frozen while alive that dies later (the table's rows,
  states and run entries hold no cycles: the benchmark's collectors find none). To bound
  even that, every ``RECLAIM_EVERY_S`` the loop unfreezes and runs one full collection, at a
  turn with room for it (nothing due within ``RECLAIM_ROOM_S``, or after
  ``RECLAIM_LATEST_S`` in any case), then freezes again; what it collects is reported.
  While reclaims and the interpreter's own collections find no cyclic garbage at all, the
  interval doubles, up to ``RECLAIM_MAX_EVERY_S`` (a day): the one planned pause (a full
  collection, ~100 ms at 10,000 tasks) comes rarely where nothing needs it; any garbage
  found brings it back to ``RECLAIM_EVERY_S``.
* **Measured.** Every collection is timed by generation (``gc.callbacks``; the collecting
  thread's CPU time, so a loaded machine's preemption does not count as the collector's), for
  the agent's status (``gc``: the longest pause and the count per generation, freezes,
  reclaims and what they collected).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FREEZE_AFTER_COLLECTION", "GEN0_THRESHOLD", "RECLAIM_EVERY_S", "RECLAIM_LATEST_S",
           "RECLAIM_MAX_EVERY_S", "RECLAIM_ROOM_S", "GcPolicy", "current"]

#: Freeze after each collection: the interpreters whose collector is generational only.
FREEZE_AFTER_COLLECTION = sys.version_info < (3, 14)
#: Live allocations that start a collection (the interpreter's first threshold, 700 by
#: default): what one pause walks at most.
GEN0_THRESHOLD = 250
#: Seconds between two full collections of everything (unfreeze, collect, freeze): what
#: bounds the cyclic garbage a freeze may have kept.
RECLAIM_EVERY_S = 3600.0
#: The longest interval between reclaims, while none finds anything (see the docstring).
RECLAIM_MAX_EVERY_S = 24 * 3600.0
#: A reclaim waits for a turn where nothing is due within this long...
RECLAIM_ROOM_S = 0.5
#: ... but no longer than this past its time.
RECLAIM_LATEST_S = 3600.0


class GcPolicy:
    """Freezes what survives, times every collection (see the module docstring)."""

    def __init__(self, *, freeze: bool = FREEZE_AFTER_COLLECTION,
                 reclaim_every_s: float = RECLAIM_EVERY_S,
                 clock: Callable[[], float] = time.thread_time) -> None:
        self.freeze = freeze
        self.reclaim_every_s = reclaim_every_s
        self.interval_s = reclaim_every_s  # until the next reclaim (doubles while clean)
        self._collected_seen = 0  # ``collected`` at the last reclaim
        self._clock = clock
        self._t0 = 0.0
        self.count = [0, 0, 0]  # collections per generation
        self.max_ms = [0.0, 0.0, 0.0]  # the longest pause per generation
        self.total_ms = 0.0
        self.collected = 0  # unreachable objects the interpreter's collections found
        self.freezes = 0
        self.reclaims = 0
        self.reclaimed = 0  # what the reclaims collected (cyclic garbage a freeze kept)
        self.reclaim_ms = 0.0  # the last reclaim's pause
        self._reclaiming = False
        self._reclaim_at = float("inf")
        self.installed = False
        self._thresholds = gc.get_threshold()

    def install(self, now: float) -> None:
        """At the process's start, once its long-lived objects exist: time collections from
        now on, collect once and freeze what is left (``now``: monotonic seconds)."""
        global _CURRENT
        if self.installed:
            return
        self.installed = True
        self._thresholds = gc.get_threshold()
        if self.freeze:
            gc.set_threshold(GEN0_THRESHOLD, *self._thresholds[1:])
        gc.callbacks.append(self._on_gc)
        self._full(now)
        _CURRENT = self

    def close(self) -> None:
        """Stop timing and freezing (what is frozen stays so: the process is ending)."""
        global _CURRENT
        if self.installed:
            self.installed = False
            if self._on_gc in gc.callbacks:
                gc.callbacks.remove(self._on_gc)
            gc.set_threshold(*self._thresholds)
            if _CURRENT is self:
                _CURRENT = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if self._reclaiming:  # a reclaim's own collection: timed as reclaim_ms
            return
        if phase == "start":
            self._t0 = self._clock()
            return
        gen = info.get("generation", 0)
        if self.freeze:
            gc.freeze()  # (splices lists: part of the pause, a few ns)
            self.freezes += 1
        ms = (self._clock() - self._t0) * 1000
        if not 0 <= gen <= 2:
            return
        self.count[gen] += 1
        if ms > self.max_ms[gen]:
            self.max_ms[gen] = ms
        self.total_ms += ms
        self.collected += info.get("collected", 0)

    def turn(self, now: float, room: Callable[[], float]) -> None:
        """Once per turn of the loop (O(1)): reclaim when due and the loop has ``room()``
        (seconds until its next deadline; asked only when a reclaim is due)."""
        if now >= self._reclaim_at and (now >= self._reclaim_at + RECLAIM_LATEST_S
                                        or room() >= RECLAIM_ROOM_S):
            self.reclaim(now)

    def reclaim(self, now: float) -> int:
        """One full collection of everything, frozen objects included, then freeze again:
        the cyclic garbage frozen objects may have become. Returns what it collected."""
        t0 = self._clock()
        got = self._full(now)
        self.reclaim_ms = (self._clock() - t0) * 1000
        self.reclaims += 1
        self.reclaimed += got
        clean = got == 0 and self.collected == self._collected_seen
        self._collected_seen = self.collected
        self.interval_s = (min(2 * self.interval_s, RECLAIM_MAX_EVERY_S) if clean
                           else self.reclaim_every_s)
        self._reclaim_at = now + self.interval_s
        return got

    def _full(self, now: float) -> int:
        gc.unfreeze()
        self._reclaiming = True
        try:
            got = gc.collect()
        finally:
            self._reclaiming = False
        if self.freeze:
            gc.freeze()
            self.freezes += 1
        self._reclaim_at = now + self.interval_s
        return got

    def status(self) -> dict[str, Any]:
        """For the agent's status (``gc``)."""
        return {"pause_ms_max": [round(x, 3) for x in self.max_ms],
                "collections": list(self.count), "pause_ms_total": round(self.total_ms, 1),
                "collected": self.collected, "freezes": self.freezes,
                "reclaims": self.reclaims, "reclaimed": self.reclaimed,
                "reclaim_ms": round(self.reclaim_ms, 3), "reclaim_every_s": self.interval_s}


_CURRENT: GcPolicy | None = None


def current() -> GcPolicy | None:
    """This process's installed policy (the agent's), if any."""
    return _CURRENT
