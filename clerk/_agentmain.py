"""The agent process, once its entry point (``clerk._agentboot:run``, a supervised child of the
node) has its stop signals' handler in place: its logging, then :class:`clerk._agent.Agent`,
and the exit code when it cannot start.

Once the agent is built (its modules, task classes and configuration loaded) the process's
garbage collector is set up (:mod:`clerk._gcpolicy`): what exists then is frozen, and from
then on what survives each collection, so no collection in the loop walks the task table."""

from __future__ import annotations

import errno
import logging
import os
import sys

import zmq

from clerk._agent import Agent
from clerk._clock import TEST_OFFSET_ENV, TEST_OFFSET_PROBLEM
from clerk._config import NodeConfig, resolve_host
from clerk._earlystop import EarlyStop
from clerk._errors import ConfigError
from clerk._gcpolicy import GcPolicy
from clerk._logging import configure_child_logging
from clerk._portholder import EXIT_CANNOT_LISTEN, EXIT_CANNOT_START, in_use

__all__ = ["run"]

log = logging.getLogger("clerk.node")


def run(config: NodeConfig, early: EarlyStop | None = None) -> int:
    """The agent process (a supervised child of the node), once ``early``, the stop signals'
    handler, is in place (clerk._agentboot, its entry point; None: called as the entry point
    itself, by a node of an earlier build, so installed here). Its records, and its
    workers', go to the process that started the node (see clerk._logging)."""
    if early is None:
        early = EarlyStop()
        early.install()
    configure_child_logging(config.name, config.log_level, config.log_to)
    early.at_once = False  # (from here a stop is counted: the agent is about to be built)
    if early.count:
        log.info("node %s: stop requested before its agent started; exiting", config.name)
        return 0
    if TEST_OFFSET_PROBLEM:  # (started without the node's pre-flight: clerk.node_spec)
        log.error("cannot start: environment: %s = %r: %s (not retried)", TEST_OFFSET_ENV,
                  os.environ.get(TEST_OFFSET_ENV), TEST_OFFSET_PROBLEM)
        sys.exit(EXIT_CANNOT_LISTEN)
    # Either failure would only repeat: the exit code (sys.exit: a start function's return
    # value is not its exit code) tells the node's supervisor not to start this process
    # again (clerk._node.agent_spec), and the node exits with 2.
    try:
        agent = Agent(config)
    except zmq.ZMQError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            problem = f"port {config.port} " + in_use(
                config.host, config.port, _ip(config.host), exc.errno)
        else:
            problem = str(exc)
        log.error("cannot listen on %s: %s (not retried)", config.address, problem)
        sys.exit(EXIT_CANNOT_LISTEN)
    except ConfigError as exc:  # the data directory (in use by another node, unusable)
        log.error("cannot start: %s (not retried)", exc)
        sys.exit(EXIT_CANNOT_LISTEN)
    except Exception as exc:  # anything else its start found (a bad config read late, a bug)
        # Would fail the same way again, each try seconds long: not retried either (the node
        # exits 1 at once, clerk._node.agent_spec), rather than loop below its intensity.
        log.error("cannot start: %s (not retried)", exc, exc_info=True)
        sys.exit(EXIT_CANNOT_START)
    if early.count:  # (asked while it was built: it leaves at once, at its loop's start)
        agent.request_stop()
    early.agent = agent  # (until Agent.run installs its own handlers)
    policy = GcPolicy()
    policy.install(agent.clock.monotonic())
    try:
        code = agent.run()
    finally:
        policy.close()
    if code:  # (its worker pool was gone for good: clerk._agent.EXIT_WORKERS_GONE)
        sys.exit(code)
    return code


def _ip(host: str) -> str:
    try:
        return resolve_host(host)
    except OSError:
        return ""
