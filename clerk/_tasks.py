"""The task behaviour and task declarations.

A task is a small class::

    class ApiPoll(clerk.Task):
        def init(self, args):        # optional: the first state (default None)
            return {"since": 0}
        def execute(self, state):    # required: returns the next run's state
            return {"since": ...}
        def nodes(self, members):    # optional: which of the live nodes may run it
            return members

declared in code with :func:`task` or in TOML with ``[[task]]``. ``execute`` (and ``init``) run
in a worker process on the chosen node; ``nodes`` runs on the manager and must be quick and
side-effect free. Inside a run, :func:`current_run` says which task, slot, term and node this
is, so a task can use ``(task, slot, term)`` as a fencing token in what it writes, and when the
slot was due (``due``, a timezone-aware ``datetime``), which is the natural end of the run's
data window (the run itself starts a few milliseconds later, and never later than one interval:
a delayed EXECUTE is dropped, not run).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clerk._calendar import due_in_zone, load_zone, parse_cron
from clerk._errors import ConfigError, TaskStateError, unknown_key

__all__ = [
    "MAX_STATE_BYTES",
    "Run",
    "Task",
    "TaskDef",
    "current_run",
    "due_datetime",
    "load_task_class",
    "load_task_entries",
    "task",
]

#: Largest task state, as encoded JSON. Larger state is an error naming the task.
MAX_STATE_BYTES = 256 * 1024
MIN_INTERVAL_MS = 100


class Task:
    """Base class of a global periodic task. Override :meth:`execute` (required),
    and :meth:`init` and :meth:`nodes` if you need them."""

    def init(self, args: Any) -> Any:
        """Return the first state, from the task's ``args``. Called only when no node holds a
        state for the task (first start of the cluster, or after every node was lost)."""
        return None

    def execute(self, state: Any) -> Any:
        """Do one run. Return the next run's state (JSON: dicts, lists, str, numbers, bool,
        None). An exception fails the run and keeps the previous state."""
        raise NotImplementedError

    def nodes(self, members: list[str]) -> list[str]:
        """Names of the nodes allowed to run the task, out of ``members`` (live nodes that
        have the task loaded). Default: all of them."""
        return members


@dataclass(frozen=True, slots=True)
class Run:
    """What :func:`current_run` returns inside ``execute``: the task's name, the slot (run
    ``k`` of the grid), the manager's term, this node's name, and ``due``: the slot's scheduled
    wall time (a timezone-aware ``datetime``; for a run triggered outside the grid, the moment
    the manager sent it)."""

    task: str
    slot: int
    term: int
    node: str
    due: datetime


def due_datetime(due_ms: float, timezone: str = "UTC") -> datetime:
    """A slot's due time (wall milliseconds, as EXECUTE carries it) as the ``datetime`` tasks
    see: timezone-aware, in the task's ``timezone`` (UTC unless the task names one; a cron
    task's fire time in its zone). See :func:`clerk._calendar.due_in_zone`."""
    return due_in_zone(due_ms, timezone)


_current: Run | None = None
#: The run in progress before :func:`current_run` made its :class:`Run`: (task, slot, term,
#: node, due_ms, timezone). A worker starts every run with :func:`_begin_run`; the ``Run`` and
#: its ``due`` (an aware datetime in the task's zone) are built on the first ``current_run()``
#: of the run, so a task that never asks pays for neither.
_pending: tuple[str, int, int, str, float, str] | None = None


def TaskStateErrorFor(task: str, problem: str) -> TaskStateError:  # noqa: N802
    """A :class:`TaskStateError` naming the task."""
    return TaskStateError(f"task {task!r} {problem}")


def current_run() -> Run:
    """The run in progress in this worker process (task, slot, term, node, due).

    Raises RuntimeError outside of ``execute``."""
    global _current
    run = _current
    if run is None:
        pending = _pending
        if pending is None:
            raise RuntimeError("clerk.current_run() is only available inside Task.execute()")
        task, slot, term, node, due_ms, zone = pending
        run = _current = Run(task, slot, term, node, due_in_zone(due_ms, zone))
    return run


def _set_current(run: Run | None) -> None:
    """Make ``run`` the run in progress (None: no run)."""
    global _current, _pending
    _current, _pending = run, None


def _begin_run(task: str, slot: int, term: int, node: str, due_ms: float,
               timezone: str) -> None:
    """Make this the run in progress; its :class:`Run` is made when first asked for, the
    same as ``_set_current(Run(task, slot, term, node, due_datetime(due_ms, timezone)))``."""
    global _current, _pending
    _current, _pending = None, (task, slot, term, node, due_ms, timezone)


@dataclass(frozen=True, kw_only=True)
class TaskDef:
    """A declared task: what runs, how often, with which args. Build it with :func:`task`."""

    name: str
    target: str  # "module:Class"
    interval: int | None  # milliseconds; None for cron and instant-only tasks
    timeout: int = 5000
    instant: bool = False
    enabled: bool = True
    args: Any = None
    cron: str | None = None  # a cron expression (see clerk._calendar); exclusive with interval
    timezone: str = "UTC"  # the cron expression's zone; for an interval task only for display
    catch_up: str = "skip"  # "skip" or "last": what a manager does with missed slots at start

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "interval": self.interval,
                "timeout": self.timeout, "instant": self.instant, "enabled": self.enabled,
                "args": self.args, "cron": self.cron, "timezone": self.timezone,
                "catch_up": self.catch_up}


def load_task_class(target: str, where: str = "", name: str = "") -> type[Task]:
    """Import ``module:Class`` and check it is a task; ConfigError naming the task if not."""
    label = name or target
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(where, f"task {label!r}: task", target,
                          "must be an import path module:Class")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any import-time error of user code
        raise ConfigError(where, f"task {label!r}: task", target,
                          f"cannot be imported: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, type):
        raise ConfigError(where, f"task {label!r}: task", target, "is not a class")
    execute = getattr(obj, "execute", None)
    if execute is None or execute is Task.execute or not callable(execute):
        raise ConfigError(where, f"task {label!r}: task", target,
                          "has no execute(self, state) method")
    return obj


def _check_json(value: Any, where: str, key: str, label: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(where, f"task {label!r}: {key}", value,
                          f"must be JSON (dicts, lists, str, numbers, bool, null): {exc}") from None
    return value


def _make_def(
    *,
    target: str,
    name: str | None,
    interval: Any,
    timeout: Any,
    instant: Any,
    enabled: Any,
    args: Any,
    where: str,
    cron: Any = None,
    timezone: Any = None,
    catch_up: Any = "skip",
) -> TaskDef:
    label = name or target
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(where, f"task {target!r}: name", name, "must be a non-empty string")
    if type(instant) is not bool:
        raise ConfigError(where, f"task {label!r}: instant", instant, "must be true or false")
    if type(enabled) is not bool:
        raise ConfigError(where, f"task {label!r}: enabled", enabled, "must be true or false")
    _check_schedule(interval, cron, timezone, catch_up, instant, where, label)
    if interval is not None and (type(interval) is not int or interval < MIN_INTERVAL_MS):
        raise ConfigError(where, f"task {label!r}: interval", interval,
                          f"must be an integer number of milliseconds >= {MIN_INTERVAL_MS}")
    if type(timeout) is not int or timeout <= 0:
        raise ConfigError(where, f"task {label!r}: timeout", timeout,
                          "must be a positive integer number of milliseconds")
    _check_json(args, where, "args", label)
    load_task_class(target, where, label)
    return TaskDef(name=name or target, target=target, interval=interval, timeout=timeout,
                   instant=instant, enabled=enabled, args=args, cron=cron,
                   timezone="UTC" if timezone is None else timezone, catch_up=catch_up)


CATCH_UP = ("skip", "last")


def _check_schedule(interval: Any, cron: Any, zone: Any, catch_up: Any, instant: bool,
                    where: str, label: str) -> None:
    """Exactly one of interval and cron (or neither for an instant-only task); the cron
    expression and the zone must parse (at node start, so a typo never waits for 02:30)."""
    if interval is not None and cron is not None:
        raise ConfigError(where, f"task {label!r}: cron", cron,
                          "cannot be combined with interval: give exactly one of them")
    if interval is None and cron is None and not instant:
        raise ConfigError(where, f"task {label!r}: interval", interval,
                          "is required (milliseconds) unless instant = true "
                          "(or give cron, an expression, instead)")
    if catch_up not in CATCH_UP:
        raise ConfigError(where, f"task {label!r}: catch_up", catch_up,
                          "must be \"skip\" (the default) or \"last\"")
    if cron is not None:
        try:
            parse_cron(cron)
        except ValueError as exc:
            raise ConfigError(where, f"task {label!r}: cron", cron, str(exc)) from None
    if zone is not None:
        try:
            load_zone(zone)
        except ValueError as exc:
            raise ConfigError(where, f"task {label!r}: timezone", zone, str(exc)) from None


def task(
    cls: type[Task] | str,
    *,
    interval: int | None = None,
    timeout: int = 5000,
    instant: bool = False,
    enabled: bool = True,
    args: Any = None,
    name: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    catch_up: str = "skip",
) -> TaskDef:
    """Declare a task in code: ``clerk.task(ApiPoll, interval=10_000, args={...})`` or
    ``clerk.task(Report, cron="30 2 * * *", timezone="Europe/Berlin")``.

    Exactly one of ``interval`` (milliseconds) and ``cron`` (an expression evaluated in
    ``timezone``, default UTC; see :mod:`clerk._calendar`), unless the task is instant-only.
    For an interval task ``timezone`` only sets the zone its times are shown in.
    ``catch_up="last"`` runs the most recent missed slot once when a manager takes over.

    ``interval`` (milliseconds) may be left out only for an instant-only task
    (``instant=True``: it runs once, as soon as a manager schedules it).

    ``cls`` is a :class:`Task` subclass importable by its module path (worker processes import
    it by name, so a class defined in ``__main__`` cannot be used) or a ``"module:Class"``
    string. Raises :class:`~clerk.ConfigError` naming the task and the field.
    """
    if isinstance(cls, str):
        target = cls
    elif isinstance(cls, type):
        if cls.__module__ == "__main__":
            raise ConfigError("", f"task {cls.__qualname__!r}: task", cls,
                              "must be defined in an importable module, not __main__")
        target = f"{cls.__module__}:{cls.__qualname__}"
    else:
        raise ConfigError("", "task", cls, "must be a Task subclass or 'module:Class'")
    return _make_def(target=target, name=name, interval=interval, timeout=timeout,
                     instant=instant, enabled=enabled, args=args, where="", cron=cron,
                     timezone=timezone, catch_up=catch_up)


_TASK_KEYS = ("task", "name", "interval", "cron", "timezone", "catch_up", "timeout", "instant",
              "enabled", "args")


def load_task_entries(entries: Sequence[Any], source: str) -> tuple[TaskDef, ...]:
    """Validate ``[[task]]`` tables; names must be unique."""
    out: list[TaskDef] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{source} [[task]] #{i + 1}" if source else f"[[task]] #{i + 1}"
        if not isinstance(entry, Mapping):
            raise ConfigError(where, "task", entry, "must be a table")
        target = entry.get("task")
        if not isinstance(target, str):
            raise ConfigError(where, "task", target, "is required: an import path module:Class")
        for key in entry:
            if key not in _TASK_KEYS:
                # The task by its name when it has one (what status and logs call it), with
                # its class: 'task 'poll' (app:Poll): intervall'.
                name = entry.get("name")
                which = (f"task {name!r} ({target})" if isinstance(name, str) and name
                         else f"task {target!r}")
                raise ConfigError(where, f"{which}: {key}", entry[key],
                                  unknown_key(str(key), _TASK_KEYS))
        d = _make_def(target=target, name=entry.get("name"), interval=entry.get("interval"),
                      timeout=entry.get("timeout", 5000), instant=entry.get("instant", False),
                      enabled=entry.get("enabled", True), args=entry.get("args"), where=where,
                      cron=entry.get("cron"), timezone=entry.get("timezone"),
                      catch_up=entry.get("catch_up", "skip"))
        if d.name in seen:
            raise ConfigError(where, f"task {d.name!r}: name", d.name, "duplicate task name")
        seen.add(d.name)
        out.append(d)
    return tuple(out)


def check_unique(tasks: Sequence[TaskDef]) -> tuple[TaskDef, ...]:
    seen: set[str] = set()
    for d in tasks:
        if d.name in seen:
            raise ConfigError("", f"task {d.name!r}: name", d.name, "duplicate task name")
        seen.add(d.name)
    return tuple(tasks)
