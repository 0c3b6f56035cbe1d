"""The agent process's entry point (``clerk._agentmain:run``, a supervised child of the node):
its logging, then :class:`clerk._agent.Agent`, and the exit code when it cannot start."""

from __future__ import annotations

import logging

import zmq

from clerk._agent import Agent
from clerk._config import NodeConfig
from clerk._errors import ConfigError
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
    return agent.run()
