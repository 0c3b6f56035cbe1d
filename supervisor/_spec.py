"""Child specifications and their validation (before anything starts).

A spec does not import :class:`~supervisor.Supervisor`: all it needs to know is that a
nested child *is* a supervisor, i.e. an object that can be the body of a child process
(:class:`NestedSupervisor`). That keeps the import graph a tree:
``_supervisor -> _loop -> _spawn -> _spec``.

Output: ``stdout``/``stderr`` name files the supervisor writes the child's output to (it
reads the child's pipes; the child never sees the files), rotated by size: when a write
would take a file past ``max_bytes`` it is renamed ``.1`` (``.1`` to ``.2``, and so on,
keeping ``backups`` old files). Unset, the output goes where the supervisor's own goes
(or to the supervisor's ``logs`` directory as ``<id>.out``/``<id>.err``).
"""

from __future__ import annotations

import importlib
import pickle
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from supervisor._errors import InvalidSpecError
from supervisor._types import CHILD_TYPES, RESTARTS, ChildType, Restart

__all__ = [
    "DEFAULT_WORKER_SHUTDOWN",
    "HELD_SIGNALS",
    "ChildSpec",
    "NestedSupervisor",
    "Shutdown",
    "resolve_start",
]


@runtime_checkable
class NestedSupervisor(Protocol):
    """What a spec knows of a nested supervisor: it can run as a child process's body
    (``_boot.py`` calls this with the boot payload) and describe its configuration."""

    children: tuple[ChildSpec, ...]

    def _run_nested(self, boot: dict[str, Any]) -> int: ...

    def _tree_key(self) -> tuple[object, ...]: ...

    def _reload_flags(self) -> dict[str, Any]: ...


Shutdown = int | Literal["brutal_kill", "infinity"]
DEFAULT_WORKER_SHUTDOWN = 5000
#: The signals a ``hold_signals`` child starts with blocked: the stop signals.
HELD_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def resolve_start(text: str) -> Callable[..., object]:
    """Import ``"package.module:function"`` (dots after the colon walk attributes)."""
    module_name, sep, qualname = text.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError("must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is a spec error
        raise ValueError(f"cannot import module {module_name!r}: {exc!r}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {qualname!r}") from None
    if not callable(obj):
        raise ValueError(f"{qualname!r} in {module_name!r} is not callable")
    return obj


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """What to run and how to treat it (OTP's ``child_spec()``), validated on creation.

    Exactly one of ``start`` and ``command`` is given:

    * ``start``: a picklable callable (a module-level function), a ``"module:function"``
      string, or a :class:`Supervisor` (a nested supervisor, ``type="supervisor"``). It
      runs in a fresh Python process as ``start(*args, **kwargs)``.
    * ``command``: an external program and its arguments (``args`` are appended).

    ``restart`` (default ``"permanent"``), ``shutdown`` (default 5000 ms for workers,
    ``"infinity"`` for supervisors), ``type`` (inferred from ``start``) and
    ``significant`` (default False) have OTP's meanings; see :mod:`supervisor`.
    ``env`` entries are added to the inherited environment; ``cwd`` sets the directory.
    ``stdout``/``stderr`` send the child's output to files written and rotated by the
    supervisor (``max_bytes``, ``backups``; defaults from the :class:`Supervisor`).
    ``shutdown_exits``: exit codes that end the child with reason ``shutdown`` instead of
    ``abnormal`` (OTP's ``{shutdown, Term}``; systemd's ``RestartPreventExitStatus``): a
    transient child exiting with one is not restarted and counts no restart, e.g. a server
    whose port is taken, which would only fail the same way again. A permanent child is
    restarted whatever its exit, so listing codes for one is an error.
    ``hold_signals`` (a Python ``start`` that is not a supervisor): the child's process
    starts with SIGTERM, SIGINT and SIGHUP blocked (:data:`HELD_SIGNALS`), from before it
    exists (the mask is inherited through fork and exec), so one sent while the interpreter
    starts or the target's modules load waits, pending, instead of taking the default action
    (death). The start function must install its handlers, then unblock them
    (``signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)``), which delivers any
    that came: a child whose stop must always be graceful (it hands work over first).

    Raises:
        InvalidSpecError: naming the child id and the offending field.
    """

    id: str
    start: Callable[..., object] | str | NestedSupervisor | None = None
    command: Sequence[str] | None = None
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = "permanent"
    shutdown: Shutdown | None = None
    type: ChildType | None = None
    significant: bool = False
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    max_bytes: int | None = None
    backups: int | None = None
    shutdown_exits: Sequence[int] = ()
    hold_signals: bool = False

    def __post_init__(self) -> None:
        cid = self.id
        if not isinstance(cid, str) or not cid:
            raise InvalidSpecError(None, "id", cid, "must be a non-empty string")
        if "/" in cid or cid != cid.strip():
            # "/" separates the levels of a nested id ("pool/worker-1") in ctl and the API.
            raise InvalidSpecError(cid, "id", cid, "must not contain '/' or surrounding spaces")

        def bad(name: str, problem: str) -> InvalidSpecError:
            return InvalidSpecError(cid, name, getattr(self, name), problem)

        if (self.start is None) == (self.command is None):
            raise bad("start", "give exactly one of 'start' and 'command'")
        if self.restart not in RESTARTS:
            raise bad("restart", f"must be one of {', '.join(RESTARTS)}")
        if not isinstance(self.significant, bool):
            raise bad("significant", "must be True or False")
        if self.significant and self.restart == "permanent":
            raise bad("significant", "a permanent child cannot be significant (OTP rule)")
        if self.type is not None and self.type not in CHILD_TYPES:
            raise bad("type", f"must be one of {', '.join(CHILD_TYPES)}")
        if isinstance(self.args, str | bytes) or not isinstance(self.args, Sequence):
            raise bad("args", "must be a list or tuple")
        object.__setattr__(self, "args", tuple(self.args))
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise bad("kwargs", "must be a mapping with string keys")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        if self.env is not None and not (
            isinstance(self.env, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items())
        ):
            raise bad("env", "must map strings to strings")
        if self.cwd is not None and not isinstance(self.cwd, str):
            raise bad("cwd", "must be a string")
        for name in ("stdout", "stderr"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise bad(name, "must be a file path")
        check_rotation(self.max_bytes, self.backups, bad, allow_none=True)
        codes = self.shutdown_exits
        if (isinstance(codes, str | bytes) or not isinstance(codes, Sequence)
                or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 255
                           for c in codes)):
            raise bad("shutdown_exits", "must be a list of exit codes from 1 to 255")
        if codes and self.restart == "permanent":
            # A permanent child is restarted whatever ended it: the codes would change only
            # the reason logged, not what the user who lists them expects (no restart).
            raise bad("shutdown_exits", "a permanent child is restarted whatever its exit "
                      "code: these codes take effect with restart = 'transient' (restart "
                      "defaults to 'permanent')")
        object.__setattr__(self, "shutdown_exits", tuple(codes))
        if not isinstance(self.hold_signals, bool):
            raise bad("hold_signals", "must be True or False")
        if self.hold_signals and (self.command is not None
                                  or isinstance(self.start, NestedSupervisor)):
            raise bad("hold_signals", "only a Python 'start' (not a command, not a nested "
                      "supervisor) can unblock the signals it holds")

        inferred: ChildType = "worker"
        if self.command is not None:
            cmd = self.command
            if isinstance(cmd, str | bytes) or not isinstance(cmd, Sequence) or not cmd:
                raise bad("command", "must be a non-empty list of strings, e.g. ['sleep', '5']")
            if not all(isinstance(part, str) for part in cmd):
                raise bad("command", "every element must be a string")
            if self.kwargs:
                raise bad("kwargs", "only a Python 'start' takes kwargs")
            object.__setattr__(self, "command", tuple(cmd))
        elif isinstance(self.start, NestedSupervisor):
            inferred = "supervisor"
            if self.stdout is not None or self.stderr is not None:
                raise bad("stdout", "a nested supervisor writes its children's output itself")
            if self.args or self.kwargs:
                raise bad("args", "a nested Supervisor takes no args")
            try:
                pickle.dumps(self.start)
            except Exception as exc:
                raise bad(
                    "start",
                    f"a nested Supervisor runs in its own process and must pickle "
                    f"(is its on_event a module-level function?): {exc}",
                ) from None
        elif isinstance(self.start, str):
            try:
                resolve_start(self.start)
            except ValueError as exc:
                raise bad("start", str(exc)) from None
        elif callable(self.start):
            try:
                pickle.dumps(self.start)
            except Exception as exc:
                raise bad(
                    "start",
                    f"must be picklable to run in a fresh process (a module-level "
                    f"function, not a lambda or closure): {exc}",
                ) from None
        else:
            raise bad("start", "must be a callable, a 'module:function' string or a Supervisor")

        if self.type is None:
            object.__setattr__(self, "type", inferred)
        elif self.type != inferred:
            if self.type == "supervisor":
                raise bad("type", "a supervisor child's 'start' must be a Supervisor")
            raise bad("type", "'start' is a Supervisor, so type must be 'supervisor'")

        if self.args or self.kwargs:
            try:
                pickle.dumps((self.args, self.kwargs))
            except Exception as exc:
                raise bad("args", f"must be picklable: {exc}") from None

        if self.shutdown is None:
            object.__setattr__(
                self,
                "shutdown",
                "infinity" if self.type == "supervisor" else DEFAULT_WORKER_SHUTDOWN,
            )
        elif isinstance(self.shutdown, bool) or not (
            self.shutdown in ("brutal_kill", "infinity")
            or (isinstance(self.shutdown, int) and self.shutdown > 0)
        ):
            raise bad("shutdown", "must be 'brutal_kill', 'infinity' or a positive int of ms")

    @property
    def output_files(self) -> tuple[str | None, str | None]:
        """``(stdout, stderr)`` file paths; ``None`` means the supervisor's own output."""
        return self.stdout, self.stderr

    @property
    def is_supervisor(self) -> bool:
        """True for a nested supervisor child."""
        return self.type == "supervisor"


def check_rotation(
    max_bytes: object,
    backups: object,
    bad: Callable[[str, str], InvalidSpecError],
    *,
    allow_none: bool,
) -> None:
    """Validate the rotation settings (shared by :class:`ChildSpec` and the supervisor)."""
    if not (max_bytes is None and allow_none) and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise bad("max_bytes", "must be a positive int of bytes")
    if not (backups is None and allow_none) and (
        isinstance(backups, bool) or not isinstance(backups, int) or backups < 0
    ):
        raise bad("backups", "must be an int >= 0")
