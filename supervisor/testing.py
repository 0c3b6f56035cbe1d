"""Helpers for tests that drive real processes: wait on conditions, never on bare sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["WaitTimeout", "wait_until"]


class WaitTimeout(AssertionError):
    """The condition given to :func:`wait_until` did not hold before the deadline."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "",
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises :class:`WaitTimeout` (an ``AssertionError``) after ``timeout`` seconds, with
    ``message`` (or the result of calling it) to say what was awaited. Exceptions raised by
    the predicate propagate: a predicate that can fail transiently should catch them itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"condition not met within {timeout:.2f}s: {text or predicate!r}")
        time.sleep(interval)
