"""Injected time: every piece of logic gets a :class:`Clock` instead of calling ``time``.

The node shell reads the clock once per loop turn and passes ``now`` (monotonic seconds) into the
pure state machines; scheduling on the wall-clock grid also asks for ``wall()``. Tests and the
simulator use :class:`FakeClock`, which only moves when told to, so a unit test can "wait" for
minutes in microseconds.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["TEST_OFFSET_ENV", "TEST_OFFSET_PROBLEM", "Clock", "FakeClock", "SystemClock",
           "skew_for_tests", "wall_time"]

#: TEST ONLY: seconds added to this process's wall clock (read once, at import), so that an
#: integration test can start a node whose clock is off from the others' on one machine
#: (tests/integration/test_clock_skew.py). The node's task workers inherit it. Never set it
#: in production: a real clock that is off is what it simulates. A bad value (not a finite
#: number of seconds within a day) is no offset, and ``TEST_OFFSET_PROBLEM`` says what is
#: wrong with it.
TEST_OFFSET_ENV = "CLERK_TEST_CLOCK_OFFSET_S"


def skew_for_tests(environ: dict[str, str] | None = None) -> float:
    """The test-only wall clock offset of ``TEST_OFFSET_ENV`` (0 when unset), or ValueError
    naming the variable."""
    text = (os.environ if environ is None else environ).get(TEST_OFFSET_ENV, "")
    value, problem = _parse_offset(text)
    if problem:
        raise ValueError(f"{TEST_OFFSET_ENV}={text!r}: {problem}")
    return value


def _parse_offset(text: str) -> tuple[float, str]:
    """``text`` as an offset, or 0 and what is wrong with it (the value not repeated: it is
    the caller's to quote, and a value may hold any text, ``": "`` included)."""
    if not text:
        return 0.0, ""
    try:
        value = float(text)
    except ValueError:
        return 0.0, "not a number of seconds"
    if not math.isfinite(value) or abs(value) > 86400:
        return 0.0, "must be a finite number of seconds within a day"
    return value, ""


def _offset_at_import() -> tuple[float, str]:
    """The offset, or 0 and why the variable is bad: never an exception at import (``import
    clerk`` would fail with a traceback); a node refuses to start with the problem instead
    (clerk._node.preflight: exit 2, naming the variable and its value)."""
    return _parse_offset(os.environ.get(TEST_OFFSET_ENV, ""))


_OFFSET, TEST_OFFSET_PROBLEM = _offset_at_import()


def _skewed() -> float:
    return time.time() + _OFFSET


#: This process's wall clock: ``time.time`` itself unless ``TEST_OFFSET_ENV`` is set.
wall_time: Callable[[], float] = _skewed if _OFFSET else time.time


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
        return wall_time()

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
