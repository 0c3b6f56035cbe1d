"""Build a :class:`Supervisor` tree from a TOML file (``python -m supervisor tree.toml``).

::

    strategy = "one_for_one"      # optional, with intensity, period, auto_shutdown, name
    intensity = 3
    period = 10
    control = "/run/myapp/supervisor.sock"   # the ctl socket (top level only)
    logs = "logs"                 # children's output files: logs/<id>.out, logs/<id>.err
    max_bytes = 10485760          # rotate an output file before it passes this size
    backups = 5                   # rotated files kept (web.out.1 ... web.out.5)
    label_output = true           # "[poller] ..." before each line of a Python worker

    [[child]]
    id = "web"
    command = ["python3", "-m", "http.server", "8000"]
    shutdown = 2000
    stdout = "logs/web.log"       # this child's files (override logs); stderr = ... too
    stderr = "logs/web.log"       # the same file for both keeps their order

    [[child]]
    id = "poller"
    start = "myapp.jobs:poll"     # imported from the current directory / sys.path
    args = [5]
    restart = "transient"
    shutdown_exits = [3]          # exit code 3: stopped on purpose, not restarted

    [[child]]                     # a nested supervisor: a [child.supervisor] sub-table
    id = "pool"
    [child.supervisor]            # inherits logs (as logs/pool), max_bytes and backups
    strategy = "one_for_all"
    [[child.supervisor.child]]
    id = "w1"
    command = ["sleep", "1000"]

Relative paths in ``control``, ``logs``, ``stdout`` and ``stderr`` are relative to the
directory of the tree file, so the tree means the same from any working directory.

Every problem is a :class:`ConfigError` naming the file, the key path and the value; the
file is read whole and *every* problem is reported at once (``problems``), not only the
first. With ``check=True`` (``--check``, and every reload) each ``command`` must also
exist and be executable; each ``start`` target is always imported.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any

from supervisor._errors import InvalidSpecError
from supervisor._spawn import command_problem
from supervisor._spec import ChildSpec
from supervisor._supervisor import Supervisor

__all__ = ["ConfigError", "TreeFile", "load_tree", "read_tree"]

_SUP_KEYS = {
    "strategy", "intensity", "period", "auto_shutdown", "name", "child",
    "logs", "max_bytes", "backups", "label_output",
}  # fmt: skip
_TOP_KEYS = _SUP_KEYS | {"control"}
_CHILD_KEYS = {
    "id", "start", "command", "args", "kwargs", "restart", "shutdown", "type",
    "significant", "env", "cwd", "supervisor", "stdout", "stderr", "max_bytes", "backups",
    "shutdown_exits", "hold_signals",
}  # fmt: skip


class ConfigError(ValueError):
    """A tree file is unreadable or invalid; the message names file, key and value.

    ``problems`` lists every problem found (this one first); the message has one line each.
    """

    def __init__(self, path: str, key: str, value: object, problem: str) -> None:
        self.path, self.key, self.value, self.problem = path, key, value, problem
        shown = "" if value is _MISSING else f" = {value!r}"
        self.problems: list[ConfigError] = [self]
        super().__init__(f"{path}: {key}{shown}: {problem}")

    @classmethod
    def of(cls, problems: list[ConfigError]) -> ConfigError:
        """One error standing for all of ``problems`` (its message lists each)."""
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        error = cls(first.path, first.key, first.value, first.problem)
        error.problems = list(problems)
        error.args = ("\n".join(str(p) for p in problems),)
        return error


_MISSING = object()

# Stand-ins for an invalid field, so the rest of the child can still be checked.
_NEUTRAL: dict[str, Any] = {
    "restart": "permanent", "shutdown": None, "type": None, "significant": False,
    "args": (), "kwargs": {}, "env": None, "cwd": None, "stdout": None, "stderr": None,
    "max_bytes": None, "backups": None, "start": None, "command": None,
    "shutdown_exits": (), "hold_signals": False,
}  # fmt: skip


@dataclass(frozen=True)
class TreeFile:
    """A tree file read and validated: the (not started) tree and its control socket
    path (``None``: not set in the file)."""

    path: str
    supervisor: Supervisor
    control: str | None


def load_tree(path: str, *, check: bool = False) -> Supervisor:
    """Read and validate ``path``; nothing is started."""
    return read_tree(path, check=check).supervisor


def read_tree(path: str, *, check: bool = False) -> TreeFile:
    """Read and validate ``path`` (see the module docstring); nothing is started.

    Raises:
        ConfigError: listing every problem in ``problems``.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(path, "(file)", _MISSING, exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", _MISSING, str(exc)) from None
    loader = _Loader(path, check)
    control = data.pop("control", None)
    if control is not None and (not isinstance(control, str) or not control):
        loader.error("control", control, "must be a socket path")
        control = None
    sup = loader.supervisor(data, "", None, {})
    if loader.problems:
        raise ConfigError.of(loader.problems)
    assert sup is not None
    return TreeFile(path, sup, None if control is None else loader.resolve(control))


class _Loader:
    def __init__(self, path: str, check: bool) -> None:
        self.path = path
        self.check = check
        self.base = os.path.dirname(os.path.abspath(path))
        self.problems: list[ConfigError] = []

    def error(self, key: str, value: object, problem: str) -> None:
        self.problems.append(ConfigError(self.path, key, value, problem))

    def resolve(self, value: str) -> str:
        return os.path.normpath(os.path.join(self.base, os.path.expanduser(value)))

    def supervisor(
        self,
        table: dict[str, Any],
        prefix: str,
        default_name: str | None,
        inherited: dict[str, Any],
    ) -> Supervisor | None:
        allowed = _SUP_KEYS if prefix else _TOP_KEYS
        ok = True
        for key in table:
            if key not in allowed:
                self.error(
                    prefix + key, table[key], f"unknown key (expected one of {sorted(allowed)})"
                )
                ok = False
        children_table = table.get("child", [])
        if not isinstance(children_table, list) or not all(
            isinstance(c, dict) for c in children_table
        ):
            self.error(prefix + "child", children_table, "use [[child]] tables")
            return None
        flags = {k: v for k, v in table.items() if k in _SUP_KEYS and k != "child"}
        if isinstance(flags.get("logs"), str) and flags["logs"]:
            flags["logs"] = self.resolve(flags["logs"])
        for key, value in inherited.items():
            flags.setdefault(key, value)
        flags.setdefault("name", default_name)
        flags.setdefault("label_output", True)
        # What a nested supervisor inherits: its own logs directory under ours.
        passed = {  # only valid values: a bad one is reported once, where it is written
            k: flags[k]
            for k, least in (("max_bytes", 1), ("backups", 0))
            if type(flags.get(k)) is int and flags[k] >= least
        }
        if isinstance(flags["label_output"], bool):
            passed["label_output"] = flags["label_output"]
        specs = []
        for i, child in enumerate(children_table):
            sub = dict(passed)
            if isinstance(flags.get("logs"), str) and isinstance(child.get("id"), str):
                sub["logs"] = os.path.join(flags["logs"], child["id"])
            specs.append(self.child(child, f"{prefix}child[{i}]", sub))
        good = [s for s in specs if s is not None]
        if not ok or len(good) < len(specs):
            good = []  # still check the flags, without the children that failed
        try:
            sup = Supervisor(good, **flags)
            return sup if ok and len(good) == len(specs) else None
        except InvalidSpecError as exc:
            if exc.child_id is None:
                self.error(prefix + exc.field, exc.value, exc.problem)
                return None
            index = next(i for i, s in enumerate(good) if s.id == exc.child_id)
            if exc.field == "id":  # a duplicate: name the second one
                index = max(i for i, s in enumerate(good) if s.id == exc.child_id)
            self.error(f"{prefix}child[{index}].{exc.field}", exc.value, exc.problem)
            return None

    def child(
        self, table: dict[str, Any], prefix: str, inherited: dict[str, Any]
    ) -> ChildSpec | None:
        ok = True
        for key in table:
            if key not in _CHILD_KEYS:
                self.error(
                    f"{prefix}.{key}", table[key],
                    f"unknown key (expected one of {sorted(_CHILD_KEYS)})",
                )  # fmt: skip
                ok = False
        if "id" not in table:
            self.error(f"{prefix}.id", _MISSING, "every child needs an id")
            return None
        fields = {k: v for k, v in table.items() if k in _CHILD_KEYS}
        for key in ("stdout", "stderr"):
            if isinstance(fields.get(key), str) and fields[key]:
                fields[key] = self.resolve(fields[key])
        nested = fields.pop("supervisor", None)
        if nested is not None:
            if not isinstance(nested, dict):
                self.error(f"{prefix}.supervisor", nested, "must be a table")
                return None
            if "start" in fields or "command" in fields:
                self.error(
                    f"{prefix}.supervisor", _MISSING,
                    "a child has either a [child.supervisor] table or start/command, not both",
                )  # fmt: skip
                return None
            sup = self.supervisor(nested, f"{prefix}.supervisor.", str(fields["id"]), inherited)
            if sup is None:
                return None
            fields["start"] = sup
        spec = self._spec(fields, table, prefix)
        if self.check and isinstance(table.get("command"), list):
            command = [str(part) for part in table["command"]]
            probe = ChildSpec(
                id="probe",
                command=command or ["?"],
                cwd=_str(table, "cwd"),
                env=table.get("env") if isinstance(table.get("env"), dict) else None,
            )
            problem = command_problem(probe)
            if problem is not None:
                self.error(f"{prefix}.command", table.get("command"), problem)
                return None
        return spec if ok else None

    def _spec(self, fields: dict[str, Any], table: dict[str, Any], prefix: str) -> ChildSpec | None:
        """Build the spec; on an invalid field, note it, put a neutral value in its place
        and try again, so that every bad field of a child is reported, not only the first."""
        seen: set[str] = set()
        while True:
            try:
                spec = ChildSpec(**fields)
            except InvalidSpecError as exc:
                self.error(f"{prefix}.{exc.field}", table.get(exc.field, exc.value), exc.problem)
                if exc.field not in _NEUTRAL or exc.field in seen:
                    return None
                seen.add(exc.field)
                if exc.field in ("start", "command"):
                    fields = {k: v for k, v in fields.items() if k not in ("start", "command")}
                    fields["command"] = ["true"]
                else:
                    fields = {**fields, exc.field: _NEUTRAL[exc.field]}
                continue
            except TypeError as exc:  # a wrong type that the dataclass itself rejects
                self.error(prefix, _MISSING, str(exc))
                return None
            return None if seen else spec


def _str(table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    return value if isinstance(value, str) else None
