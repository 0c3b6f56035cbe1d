"""The agent process's entry point (``clerk._agentboot:run``, the node's ``agent`` child):
small on purpose, so that the stop signals' handler is in place before the agent's own modules
load (``clerk._agentmain``, ZeroMQ and the rest: seconds on a loaded machine).

The agent's process starts with SIGTERM, SIGINT and SIGHUP blocked
(``ChildSpec(hold_signals=True)``, clerk._node.agent_spec): one sent as its interpreter starts
waits, pending. :func:`run` installs :class:`EarlyStop` and unblocks them first thing. Until
the agent is about to be built nothing of it exists (no socket, no worker, nothing joined), so
a stop signal then ends the process at once, with 0: a node stopped while its agent's modules
load, or hang loading, stops at once, not after the node's wait for a leave (20 s) and its
supervisor's shutdown timeout (15 s), as it did while the signals stayed blocked through those
imports (35.6 s measured). From then on a stop signal is the agent's stop request
(:func:`clerk._agentmain.run`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clerk._earlystop import STOP_SIGNALS, EarlyStop

if TYPE_CHECKING:  # (not at run time: the point of this module is to import little)
    from clerk._config import NodeConfig

__all__ = ["STOP_SIGNALS", "run"]


def run(config: NodeConfig) -> int:
    """Entry point of the agent process: the handler, then the agent (clerk._agentmain)."""
    early = EarlyStop()
    early.install()
    from clerk._agentmain import run as run_agent  # (the agent's modules: seconds)

    return run_agent(config, early)
