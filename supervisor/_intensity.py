"""Restart intensity: a pure function over restart timestamps (OTP's ``add_restart/3``).

A supervisor may restart children at most ``intensity`` times within any ``period``
seconds. Each restart is recorded with the time it happened; restarts older than
``period`` seconds are forgotten. If, after recording a restart, more than ``intensity``
restarts remain, the supervisor must give up instead of restarting.

No clock is read here: the caller passes ``now`` (monotonic seconds), so tests drive it
with fake timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RestartIntensity", "add_restart"]


def add_restart(
    restarts: tuple[float, ...], now: float, intensity: int, period: float
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at ``now``; return the new history and whether it is allowed.

    ``restarts`` holds earlier restart times, newest first. A restart at time ``t`` still
    counts if ``now - t <= period`` (OTP keeps the boundary inclusive too).
    """
    kept = tuple(t for t in restarts if now - t <= period)
    history = (now, *kept)
    return history, len(history) <= intensity


@dataclass
class RestartIntensity:
    """The mutable holder of a supervisor's restart history (one per supervisor)."""

    intensity: int = 1
    period: float = 5.0
    restarts: tuple[float, ...] = field(default=())

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; False means the intensity is exceeded: give up."""
        self.restarts, ok = add_restart(self.restarts, now, self.intensity, self.period)
        return ok
