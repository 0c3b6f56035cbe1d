"""Clerk: global periodic tasks across a cluster of Python nodes, over ZeroMQ.

Every ``interval`` a task runs once, on one randomly chosen node, with the state the previous
run returned; one elected manager keeps the schedule and the state, and another node takes
over within a second when it dies. See the README for the guarantees.
"""

import typing as _typing

import clerk._clash  # noqa: F401  (first: refuses supervisord's ``supervisor``, see there)
from clerk._clock import Clock, FakeClock, SystemClock
from clerk._errors import (
    ClerkError,
    ConfigError,
    ControlError,
    NotReachableError,
    StartError,
    TaskStateError,
)
from clerk._tasks import Run, Task, TaskDef, current_run, task
from clerk._version import __version__

if _typing.TYPE_CHECKING:
    from clerk._config import NodeConfig, load_config
    from clerk._node import Node, node_spec

#: Imported on first use (PEP 562): a task worker imports ``clerk`` for ``Task`` and
#: ``current_run`` and never needs the node's runtime (the supervisor package, the ZeroMQ
#: client, the config loader), which would add ~5 MiB to every worker process.
_LAZY = {"Node": "clerk._node", "node_spec": "clerk._node", "NodeConfig": "clerk._config",
         "load_config": "clerk._config"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clerk' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ClerkError",
    "Clock",
    "ConfigError",
    "ControlError",
    "FakeClock",
    "Node",
    "NodeConfig",
    "NotReachableError",
    "Run",
    "StartError",
    "SystemClock",
    "Task",
    "TaskDef",
    "TaskStateError",
    "__version__",
    "current_run",
    "load_config",
    "node_spec",
    "task",
]
