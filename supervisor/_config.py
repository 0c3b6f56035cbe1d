"""Build a :class:`Supervisor` tree from a TOML file (``python -m supervisor tree.toml``).

::

    strategy = "one_for_one"      # optional, with intensity, period, auto_shutdown, name
    intensity = 3
    period = 10

    [[child]]
    id = "web"
    command = ["python3", "-m", "http.server", "8000"]
    shutdown = 2000

    [[child]]
    id = "poller"
    start = "myapp.jobs:poll"     # imported from the current directory / sys.path
    args = [5]
    restart = "transient"

    [[child]]                     # a nested supervisor: a [child.supervisor] sub-table
    id = "pool"
    [child.supervisor]
    strategy = "one_for_all"
    [[child.supervisor.child]]
    id = "w1"
    command = ["sleep", "1000"]

Every problem is a :class:`ConfigError` naming the file, the key path and the value.
"""

from __future__ import annotations

import tomllib
from typing import Any

from supervisor._errors import InvalidSpecError
from supervisor._spec import ChildSpec
from supervisor._supervisor import Supervisor

__all__ = ["ConfigError", "load_tree"]

_SUP_KEYS = {"strategy", "intensity", "period", "auto_shutdown", "name", "child"}
_CHILD_KEYS = {
    "id", "start", "command", "args", "kwargs", "restart", "shutdown", "type",
    "significant", "env", "cwd", "supervisor",
}  # fmt: skip


class ConfigError(ValueError):
    """A tree file is unreadable or invalid; the message names file, key and value."""

    def __init__(self, path: str, key: str, value: object, problem: str) -> None:
        self.path, self.key, self.value, self.problem = path, key, value, problem
        shown = "" if value is _MISSING else f" = {value!r}"
        super().__init__(f"{path}: {key}{shown}: {problem}")


_MISSING = object()


def load_tree(path: str) -> Supervisor:
    """Read and validate ``path``; nothing is started."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(path, "(file)", _MISSING, exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", _MISSING, str(exc)) from None
    return _supervisor(path, data, "", None)


def _supervisor(
    path: str, table: dict[str, Any], prefix: str, default_name: str | None
) -> Supervisor:
    for key in table:
        if key not in _SUP_KEYS:
            raise ConfigError(
                path, prefix + key, table[key], f"unknown key (expected one of {sorted(_SUP_KEYS)})"
            )
    children_table = table.get("child", [])
    if not isinstance(children_table, list) or not all(isinstance(c, dict) for c in children_table):
        raise ConfigError(path, prefix + "child", children_table, "use [[child]] tables")
    specs = [_child(path, child, f"{prefix}child[{i}]") for i, child in enumerate(children_table)]
    flags = {k: v for k, v in table.items() if k != "child"}
    flags.setdefault("name", default_name)
    try:
        return Supervisor(specs, **flags)
    except InvalidSpecError as exc:
        if exc.child_id is None:
            raise ConfigError(path, prefix + exc.field, exc.value, exc.problem) from None
        index = next(i for i, s in enumerate(specs) if s.id == exc.child_id)
        if exc.field == "id":  # a duplicate: name the second one
            index = max(i for i, s in enumerate(specs) if s.id == exc.child_id)
        raise ConfigError(
            path, f"{prefix}child[{index}].{exc.field}", exc.value, exc.problem
        ) from None


def _child(path: str, table: dict[str, Any], prefix: str) -> ChildSpec:
    for key in table:
        if key not in _CHILD_KEYS:
            raise ConfigError(
                path, f"{prefix}.{key}", table[key],
                f"unknown key (expected one of {sorted(_CHILD_KEYS)})",
            )  # fmt: skip
    if "id" not in table:
        raise ConfigError(path, f"{prefix}.id", _MISSING, "every child needs an id")
    fields = dict(table)
    nested = fields.pop("supervisor", None)
    if nested is not None:
        if not isinstance(nested, dict):
            raise ConfigError(path, f"{prefix}.supervisor", nested, "must be a table")
        if "start" in fields or "command" in fields:
            raise ConfigError(
                path, f"{prefix}.supervisor", _MISSING,
                "a child has either a [child.supervisor] table or start/command, not both",
            )  # fmt: skip
        fields["start"] = _supervisor(path, nested, f"{prefix}.supervisor.", str(fields["id"]))
    try:
        return ChildSpec(**fields)
    except InvalidSpecError as exc:
        value = table.get(exc.field, exc.value)
        raise ConfigError(path, f"{prefix}.{exc.field}", value, exc.problem) from None
