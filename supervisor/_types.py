"""Plain value types shared by the supervisor's pure cores and its process shell."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AutoShutdown",
    "ChildInfo",
    "ChildType",
    "Event",
    "EventKind",
    "ReloadResult",
    "ExitKind",
    "ExitReason",
    "Restart",
    "ShutdownInfo",
    "ShutdownReason",
    "Strategy",
]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Restart = Literal["permanent", "transient", "temporary"]
AutoShutdown = Literal["never", "any_significant", "all_significant"]
ChildType = Literal["worker", "supervisor"]
ExitKind = Literal["normal", "shutdown", "abnormal"]
EventKind = Literal["start", "restart", "exit", "shutdown"]

STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS: tuple[str, ...] = ("permanent", "transient", "temporary")
AUTO_SHUTDOWNS: tuple[str, ...] = ("never", "any_significant", "all_significant")
CHILD_TYPES: tuple[str, ...] = ("worker", "supervisor")


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; ``signal 99`` for numbers Python has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass(frozen=True)
class ExitReason:
    """Why a child process ended.

    ``kind`` is what the restart decision looks at:

    * ``"normal"``: exit code 0 (a Python child returned or called ``sys.exit(0)``);
    * ``"shutdown"``: the supervisor terminated it, or it died of SIGTERM (the OS
      analogue of an Erlang process exiting with reason ``shutdown``), or it exited with
      a code its spec lists in ``shutdown_exits`` (``{shutdown, Term}``);
    * ``"abnormal"``: any other exit code or signal, or a failed start.

    ``exitcode``/``signal`` tell what the OS reported (both ``None`` for a failed start,
    whose cause is in ``detail``).
    """

    kind: ExitKind
    exitcode: int | None = None
    signal: int | None = None
    detail: str = ""

    @classmethod
    def from_returncode(cls, returncode: int, *, by_supervisor: bool = False,
                        shutdown_exits: tuple[int, ...] = ()) -> ExitReason:
        """Classify a ``subprocess``-style return code (negative means killed by a signal);
        an exit code in ``shutdown_exits`` (the child's spec) is a ``shutdown``."""
        if returncode < 0:
            signum = -returncode
            if by_supervisor or signum == signal.SIGTERM:
                return cls("shutdown", signal=signum)
            return cls("abnormal", signal=signum)
        if by_supervisor or returncode in shutdown_exits:
            return cls("shutdown", exitcode=returncode)
        return cls("normal" if returncode == 0 else "abnormal", exitcode=returncode)

    @property
    def status(self) -> str:
        """What the OS said: ``exit code N``, ``signal NAME`` or the start failure."""
        if self.signal is not None:
            return f"signal {signal_name(self.signal)}"
        if self.exitcode is not None:
            return f"exit code {self.exitcode}"
        return self.detail or "unknown"

    def __str__(self) -> str:
        if self.kind == "normal":
            return "normal"
        if self.kind == "shutdown":
            return f"shutdown ({self.status})"
        return self.status


class ShutdownReason(enum.Enum):
    """Why a supervisor stopped."""

    STOPPED = "stopped"
    """:meth:`Supervisor.stop` was called, or ``run()`` got SIGTERM/SIGINT."""
    AUTO_SHUTDOWN = "auto_shutdown"
    """A significant child ended and ``auto_shutdown`` said to stop."""
    INTENSITY = "reached_max_restart_intensity"
    """More than ``intensity`` restarts within ``period`` seconds: the supervisor gave up."""
    START_FAILED = "failed_to_start_child"
    """A child could not be started by :meth:`Supervisor.start`."""
    CRASHED = "supervisor_crashed"
    """The supervisor's own loop failed (a bug): every child was SIGKILLed."""


@dataclass(frozen=True)
class ShutdownInfo:
    """Why and after what a supervisor stopped, as returned by :meth:`Supervisor.wait`.

    ``child_id``/``exit`` name the child that caused an ``INTENSITY``, ``AUTO_SHUTDOWN`` or
    ``START_FAILED`` stop, and how it exited.
    """

    reason: ShutdownReason
    child_id: str | None = None
    exit: ExitReason | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True for an orderly stop (``STOPPED`` or ``AUTO_SHUTDOWN``)."""
        return self.reason in (ShutdownReason.STOPPED, ShutdownReason.AUTO_SHUTDOWN)

    @property
    def exit_code(self) -> int:
        """The process exit code :meth:`Supervisor.run` returns: 0 if ``ok``, else 1."""
        return 0 if self.ok else 1

    def __str__(self) -> str:
        text = self.reason.value
        if self.child_id is not None:
            text += f" (child {self.child_id!r}"
            text += f": {self.exit})" if self.exit is not None else ")"
        if self.detail:
            text += f": {self.detail}"
        return text


@dataclass(frozen=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children` (OTP's ``{Id, Child, Type, Modules}``).

    ``status`` is ``"running"`` or ``"terminated"`` (spec kept, no process: a transient
    child that exited normally, or one stopped by ``terminate_child``). ``restart`` is the
    spec's restart type, ``uptime`` the seconds since its process started (``None`` when
    not running), ``restarts`` how many times the supervisor started it again,
    ``last_exit`` how its previous process ended, ``stdout``/``stderr`` its output files
    (``None``: the supervisor's own output). ``children`` holds a nested supervisor's rows
    when asked for ``which_children(recursive=True)``, with ids as ``"pool/worker-1"``.
    """

    id: str
    pid: int | None
    type: ChildType
    status: Literal["running", "terminated"]
    restart: Restart = "permanent"
    uptime: float | None = None
    restarts: int = 0
    last_exit: ExitReason | None = None
    stdout: str | None = None
    stderr: str | None = None
    children: tuple[ChildInfo, ...] = ()


@dataclass(frozen=True)
class ReloadResult:
    """What :meth:`Supervisor.reload` did, as child ids (nested ones as ``"pool/w1"``).

    ``started``: new in the file; ``stopped``: gone from it (terminated with their
    ``shutdown``); ``restarted``: changed (stopped, then started with the new spec);
    ``unchanged``: left alone; ``failed``: could not start (handled like a failed restart).
    """

    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [
            f"{name} {', '.join(ids)}"
            for name, ids in (
                ("started", self.started),
                ("stopped", self.stopped),
                ("restarted", self.restarted),
                ("failed to start", self.failed),
            )
            if ids
        ]
        return "; ".join(parts) or "no change"


@dataclass(frozen=True)
class Event:
    """What the ``on_event`` hook receives, from the supervisor's loop thread.

    * ``start``: a child process started (first start or ``start_child``);
    * ``restart``: a child process started to replace one that ended (a strategy restart
      or ``restart_child``);
    * ``exit``: a child process ended, with ``reason`` (``shutdown`` when the supervisor
      terminated it);
    * ``shutdown``: the supervisor itself stopped, with ``info``.
    """

    kind: EventKind
    supervisor: str
    child_id: str | None = None
    pid: int | None = None
    reason: ExitReason | None = None
    info: ShutdownInfo | None = None
