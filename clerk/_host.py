"""What the task layer needs of the node that hosts it.

:class:`clerk._runner.TaskRunner` works through this interface, not through the agent class:
the agent (:mod:`clerk._agent`) imports the runner and passes itself in, the runner never
imports the agent, so the two modules do not import each other. The rule for growing it: add
a member here only when the runner needs it, and prefer a method (an action) to handing out
more of the agent's state.
"""

from __future__ import annotations

import random
from typing import Protocol

from clerk._clock import Clock
from clerk._config import NodeConfig
from clerk._core import Effect, NodeCore
from clerk._messages import Message, Peer
from clerk._metrics import NodeMetrics
from clerk._transport import Transport

__all__ = ["Host"]


class Host(Protocol):
    """What the task layer needs of the node that hosts it (:class:`clerk._agent.Agent`): its
    configuration, clock, randomness, transport (for the workers' sockets), identity, core and
    metrics, two ways to act on the network, and a way to fail. The agent imports the runner,
    never the reverse."""

    config: NodeConfig
    clock: Clock
    rng: random.Random
    transport: Transport
    me: Peer
    core: NodeCore
    announcement: tuple[str, ...]
    metrics: NodeMetrics

    def send(self, to: str, msg: Message, now: float) -> None:
        """Send ``msg`` to the mailbox at ``to`` (``host:port``)."""
        ...

    def flush_urgent(self, now: float) -> None:
        """Send the runs and results queued so far now, not at the end of the loop turn."""
        ...

    def apply(self, effects: list[Effect], now: float) -> None:
        """Carry out the core's effects."""
        ...

    def fail(self, why: str) -> None:
        """This node cannot run tasks any more (its worker pool is gone for good): leave the
        cluster and exit non-zero, so the node's supervisor starts the agent again."""
        ...
