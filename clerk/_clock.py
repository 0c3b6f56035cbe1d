"""Injected time: every piece of logic gets a :class:`Clock` instead of calling ``time``.

The node shell reads the clock once per loop turn and passes ``now`` (monotonic seconds) into the
pure state machines; scheduling on the wall-clock grid also asks for ``wall()``. Tests and the
simulator use :class:`FakeClock`, which only moves when told to, so a unit test can "wait" for
minutes in microseconds.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of time: ``monotonic()`` for timeouts, ``wall()`` (Unix seconds) for the grid."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clocks of this process (``time.monotonic`` and ``time.time``)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that moves only through :meth:`advance`; both readings move together."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self._mono = float(monotonic)
        self._wall = float(wall)

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (never backwards) and return the new monotonic time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self._mono += seconds
        self._wall += seconds
        return self._mono

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._mono!r}, wall={self._wall!r})"
