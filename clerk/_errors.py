"""Clerk's exception tree."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

__all__ = ["ClerkError", "ConfigError", "ControlError", "NotReachableError", "StartError",
           "TaskStateError", "unknown_key"]


def unknown_key(key: str, known: Sequence[str]) -> str:
    """The problem of an unknown configuration ``key``: the known ones, and the closest of
    them first when it looks like a misspelling ("did you mean 'interval'?")."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key ({hint}known: {', '.join(known)})"


class ClerkError(Exception):
    """Base of every error Clerk raises on purpose."""


class ConfigError(ClerkError, ValueError):
    """Bad configuration: names where it came from (file or flag), the key and the value."""

    def __init__(self, source: str, key: str, value: object, problem: str) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.problem = problem
        # A long value is cut to 80 characters, but never a file's path: that is what the
        # reader needs to find the problem (a path is at most PATH_MAX long anyway).
        shown = repr(os.fspath(value) if isinstance(value, os.PathLike) else value)
        if len(shown) > 80 and not isinstance(value, os.PathLike):
            shown = shown[:77] + "..."
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key} = {shown}: {problem}")


class ControlError(ClerkError):
    """The cluster refused an operator's command (pause, resume, trigger, show): an unknown
    task (the message lists the known ones), or a trigger while a run is in flight."""


class NotReachableError(ClerkError):
    """No node answered (status client, embedded node queries)."""


class StartError(ClerkError):
    """An embedded node ended while it was starting, before it answered: its agent could not
    listen on its port or take its data directory (taken after the pre-flight check; not
    retried), kept crashing, or ended for another reason it logged. Raised as soon as the node has
    ended, not after ``start()``'s timeout. ``reason`` is the agent's own words (its last
    error records: which address, which process holds the port), ``exitcode`` the agent's
    last exit code (None if it did not exit with one), ``node`` the node's name."""

    def __init__(self, node: str, description: str, reason: str,
                 exitcode: int | None) -> None:
        self.node = node
        self.reason = reason
        self.exitcode = exitcode
        super().__init__(f"{description} could not start: {reason}")


class TaskStateError(ClerkError, ValueError):
    """A task's state cannot be carried (not JSON, or over the size limit); names the task."""
