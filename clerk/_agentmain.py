"""The agent process's entry point (``clerk._agentmain:run``, a supervised child of the node):
its logging, then :class:`clerk._agent.Agent`, and the exit code when it cannot start.

Once the agent is built (its modules, task classes and configuration loaded) the process's
garbage collector is set up (:mod:`clerk._gcpolicy`): what exists then is frozen, and from
then on what survives each collection, so no collection in the loop walks the task table."""

from __future__ import annotations

import logging

import zmq

from clerk._agent import Agent
from clerk._config import NodeConfig
from clerk._errors import ConfigError
from clerk._gcpolicy import GcPolicy
from clerk._logging import configure_child_logging

__all__ = ["run"]

log = logging.getLogger("clerk.node")


def run(config: NodeConfig) -> int:
    """Entry point of the agent process (a supervised child of the node). Its records, and
    its workers', go to the process that started the node (see clerk._logging)."""
    configure_child_logging(config.name, config.log_level, config.log_to)
    try:
        agent = Agent(config)
    except zmq.ZMQError as exc:
        log.error("cannot listen on %s: %s", config.address, exc)
        return 2
    except ConfigError as exc:  # the data directory (in use by another node, unusable)
        log.error("cannot start: %s", exc)
        return 2
    policy = GcPolicy()
    policy.install(agent.clock.monotonic())
    try:
        return agent.run()
    finally:
        policy.close()
