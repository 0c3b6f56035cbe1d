"""Clerk: global periodic tasks across a cluster of Python nodes, over ZeroMQ.

Every ``interval`` a task runs once, on one randomly chosen node, with the state the previous
run returned; one elected manager keeps the schedule and the state, and another node takes
over within a second when it dies. See the README for the guarantees.
"""

import clerk._clash  # noqa: F401  (first: refuses supervisord's ``supervisor``, see there)
from clerk._clock import Clock, FakeClock, SystemClock
from clerk._config import NodeConfig, load_config
from clerk._errors import (
    ClerkError,
    ConfigError,
    ControlError,
    NotReachableError,
    TaskStateError,
)
from clerk._node import Node, node_spec
from clerk._tasks import Run, Task, TaskDef, current_run, task
from clerk._version import __version__

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
