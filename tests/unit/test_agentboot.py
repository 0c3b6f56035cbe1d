"""The agent's entry point (clerk._agentboot) stays small: its stop signals' handler is in
place before the agent's modules load, so what it imports is the window in which a stop
signal waits, blocked (``ChildSpec.hold_signals``). Its signals are the supervisor's."""

from __future__ import annotations

import subprocess
import sys

import pytest

import supervisor
from clerk._agentboot import STOP_SIGNALS
from clerk._node import agent_spec

pytestmark = pytest.mark.timeout(60)


def test_its_signals_are_the_ones_the_supervisor_holds() -> None:
    assert STOP_SIGNALS == supervisor.HELD_SIGNALS


def test_the_entry_point_imports_neither_the_agent_nor_zeromq_nor_the_supervisor() -> None:
    code = ("import sys, clerk._agentboot; "
            "print(sorted(m for m in ('zmq', 'clerk._agent', 'clerk._agentmain', 'supervisor') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_node_starts_its_agent_there_with_the_signals_held() -> None:
    from clerk._config import NodeConfig

    spec = agent_spec(NodeConfig(name="a@127.0.0.1", insecure=True))
    assert spec.start == "clerk._agentboot:run" and spec.hold_signals
