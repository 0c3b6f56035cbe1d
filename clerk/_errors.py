"""Clerk's exception tree."""

from __future__ import annotations

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
        shown = repr(value)
        if len(shown) > 80:
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
