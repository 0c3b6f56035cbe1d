"""Clerk's exception tree."""

from __future__ import annotations

import os

__all__ = ["ClerkError", "ConfigError", "ControlError", "NotReachableError", "TaskStateError"]


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


class TaskStateError(ClerkError, ValueError):
    """A task's state cannot be carried (not JSON, or over the size limit); names the task."""
