"""The worker pool's accounting of worker deaths (pure: no clock read, no process touched).

A worker that dies while it holds a run is that run's failure, not the pool's (as Celery's
``WorkerLostError``): the run fails, the worker is replaced, and the death does not count
toward the pool's give-up. Only a worker that dies *without* a run (at start-up, before its
READY, idle) counts there: more than ``intensity`` such deaths within ``period`` seconds and
the pool is gone for good (the supervisor library's own rule, ``supervisor._intensity``), and
the agent escalates (:mod:`clerk._executor`).

Replacing a worker is a fork and an interpreter start (~tens of ms of CPU), so a task that
kills its worker on every run (a *poison* task) must not make the pool fork at its rate. Such a
task is held back on this node: after its ``n``-th death in a row (no run of it answered by
a worker in between) its runs are refused here for ``min(HOLD_MAX_S, HOLD_FIRST_S * 2**(n-1))``
seconds; one run of it that a worker answers (any outcome) clears it. So a poison task costs at
most about one worker start per hold, whatever its interval, and the workers stay free for the
other tasks. The hold is per task, not per worker slot: a slot's backoff would leave the pool's
other slots to the poison task, which would take each fresh worker in turn and starve the other
tasks of workers.

Why the executor restarts the workers (``temporary`` children) rather than the supervisor
(``permanent``, as before): a supervisor sees exits, not runs, and its intensity counts every
restart; a poison task every 100 ms made it give up within seconds, and the agent with it.
Teaching the supervisor library to forgive some restarts would make its intensity something
other than OTP's. A pool that owns its workers' lifecycle under a supervisor, its children
temporary and the owner accounting their deaths, is the OTP shape for this (a pool of
``temporary`` workers started by its owner), and the library keeps its semantics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor._intensity import RestartIntensity

__all__ = ["HELD_BACK", "HOLD_FIRST_S", "HOLD_MAX_S", "Held", "WorkerDeaths"]

#: In the refusal of a run whose task is held back (``holding``): the manager tells these by it
#: and logs them as it logs stale ones, a WARNING a second at most (clerk._routing): a task
#: that kills its worker every 100 ms has ~10 refused a second.
HELD_BACK = "held back for"
#: How long a task is held back after the first death of a worker in its run (s), doubled at
#: each death in a row after that, up to HOLD_MAX_S.
HOLD_FIRST_S = 0.25
HOLD_MAX_S = 30.0


@dataclass
class Held:
    """A task whose runs killed their worker ``deaths`` times in a row."""

    deaths: int
    until: float  # its runs are refused here until then (the executor's monotonic clock)
    last: str  # how the last one died


@dataclass
class WorkerDeaths:
    """Deaths of a pool's workers, told apart: in a run (the task's) or not (the pool's)."""

    intensity: int
    period: float
    held: dict[str, Held] = field(default_factory=dict)  # task -> its hold
    in_run: int = 0  # workers that died holding a run (replaced, not counted to give up)
    idle: int = 0  # workers that died without one (counted against the intensity)
    refused: int = 0  # runs refused because their task was held back
    _intensity: RestartIntensity = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.intensity, bool) or not isinstance(self.intensity, int) \
                or self.intensity < 0:
            raise ValueError(f"WorkerDeaths: intensity must be an int >= 0, got "
                             f"{self.intensity!r}")
        if not self.period > 0:
            raise ValueError(f"WorkerDeaths: period must be > 0 s, got {self.period!r}")
        self._intensity = RestartIntensity(self.intensity, self.period)

    def died_idle(self, now: float) -> bool:
        """A worker died without a run; False: more than ``intensity`` in ``period``, the
        pool gives up (no restart)."""
        self.idle += 1
        return self._intensity.record(now)

    def died_in_run(self, task: str, now: float, how: str) -> float:
        """A worker died holding a run of ``task``: the task is held back; returns how long
        (s). The pool's give-up is not touched."""
        self.in_run += 1
        held = self.held.get(task)
        deaths = 1 if held is None else held.deaths + 1
        hold = min(HOLD_MAX_S, HOLD_FIRST_S * 2.0 ** min(deaths - 1, 64))
        self.held[task] = Held(deaths, now + hold, how)
        return hold

    def answered(self, task: str) -> None:
        """A worker answered a run of ``task`` (it survived it): its hold, if any, ends."""
        if self.held:
            self.held.pop(task, None)

    def holding(self, task: str, now: float) -> str:
        """Why a run of ``task`` may not start here now ("" if it may); counts a refusal."""
        held = self.held.get(task) if self.held else None
        if held is None or now >= held.until:
            return ""
        self.refused += 1
        times = "once" if held.deaths == 1 else f"{held.deaths} times in a row"
        return (f"task {task!r} killed its worker process {times} here (last: {held.last}); "
                f"{HELD_BACK} {held.until - now:.1f} s more")
