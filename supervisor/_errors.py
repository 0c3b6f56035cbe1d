"""The exception tree of the supervisor package.

Everything raised on purpose is a :class:`SupervisorError`; spec problems are also
``ValueError`` so that generic configuration code can catch them as such.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor._types import ShutdownInfo

__all__ = [
    "ChildNotFoundError",
    "ChildStartError",
    "ChildStateError",
    "InvalidSpecError",
    "NotRunningError",
    "RestartIntensityError",
    "SupervisorError",
]


class SupervisorError(Exception):
    """Base class of every error raised by the supervisor package."""


class InvalidSpecError(SupervisorError, ValueError):
    """A child spec or supervisor flag is invalid; nothing was started.

    ``child_id`` is the offending child's id (``None`` for a supervisor-level flag),
    ``field`` the name of the offending field and ``value`` its value.
    """

    def __init__(self, child_id: str | None, field: str, value: object, problem: str) -> None:
        self.child_id = child_id
        self.field = field
        self.value = value
        self.problem = problem
        where = f"child {child_id!r}: " if child_id is not None else "supervisor: "
        super().__init__(f"{where}{field}={value!r}: {problem}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.child_id, self.field, self.value, self.problem))


class ChildNotFoundError(SupervisorError, LookupError):
    """No child with this id is known to the supervisor (OTP's ``not_found``)."""


class ChildStateError(SupervisorError):
    """The child is in the wrong state for the request (OTP's ``running`` /
    ``already_present`` / ``already_started``)."""


class ChildStartError(SupervisorError):
    """A child process could not be started (e.g. the command does not exist).

    Raised by :meth:`Supervisor.start` (the supervisor then stops, OTP's
    ``failed_to_start_child``), :meth:`Supervisor.start_child` and
    :meth:`Supervisor.restart_child`.
    """

    def __init__(self, child_id: str, detail: str, info: ShutdownInfo | None = None) -> None:
        self.child_id = child_id
        self.detail = detail
        self.info = info
        super().__init__(f"child {child_id!r} failed to start: {detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.child_id, self.detail, self.info))


class RestartIntensityError(SupervisorError):
    """The supervisor gave up: more than ``intensity`` restarts within ``period`` seconds.

    ``info`` (a :class:`ShutdownInfo`) names the child whose exit was one restart too many
    and how it exited.
    """

    def __init__(self, info: ShutdownInfo) -> None:
        self.info = info
        super().__init__(str(info))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.info,))


class NotRunningError(SupervisorError):
    """The supervisor is not running (not started yet, or already stopped)."""
