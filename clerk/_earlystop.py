"""The stop signals' handler of an agent process until the agent's own (``Agent.run``):
:class:`EarlyStop`, which the agent's entry point (clerk._agentboot) installs before the
agent's modules load (see there), and clerk._agentmain hands to the agent once built."""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (not at run time: imported before the agent's modules load)
    from clerk._agent import Agent

__all__ = ["STOP_SIGNALS", "EarlyStop"]

#: The stop signals: ``supervisor.HELD_SIGNALS``, not imported from there (``import supervisor``
#: alone takes ~0.4 s here, all of it inside the window this module keeps short).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


class EarlyStop:
    """The stop signals' handler until the agent's own (``Agent.run``). While ``at_once``
    (nothing of the agent exists yet) one ends the process with 0 there and then. After it,
    until the agent is built, it is counted (the agent leaves at once once built, or exits
    without building it: :func:`clerk._agentmain.run`); once built (``agent``), it is the
    agent's own stop request. A second one exits at once, as the agent's second does."""

    def __init__(self) -> None:
        self.at_once = True
        self.count = 0
        self.agent: Agent | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.agent is not None:
            self.agent._on_signal(signum, frame)
            return
        self.count += 1
        if self.at_once or self.count >= 2:
            os._exit(0)

    def install(self) -> None:
        """Take the stop signals (on the main thread only: Python's rule), then unblock them:
        one that came since the process started is handled now."""
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                signal.signal(sig, self)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
