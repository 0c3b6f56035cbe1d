"""A SIGTERM that reaches a freshly started agent before its own handlers are installed (the
node's supervisor restarted it, then an operator stops the node) ends in the graceful way:
while its modules load (nothing of it exists yet), an exit 0 at once, even when that loading
hangs; once built, its leave. Never the default action, a death by SIGTERM that skips the
leave (a manager's hand-over, the answers of runs in flight).

The agent's process starts with the stop signals blocked (``ChildSpec.hold_signals``); its
entry point (clerk._agentboot) installs its handler and unblocks them before the agent's
modules load. A gate in its start (worker_site's ``CLERK_TEST_AGENT_GATE``) holds the
restarted agent at that moment while the test stops the node. Before smalls7 the agent died
of the signal there ("exited: shutdown (signal SIGTERM)", its leave never run); with the
signals held through the import of clerk._agentmain (smalls7, before review14) an agent whose
import hangs (the gate never opens) kept the node from stopping for 35 s: the node's 20 s wait
for a leave, then its supervisor's 15 s shutdown timeout, the SIGTERM blocked all along."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter
from tests.integration.test_worker_pool_gone import _agent

pytestmark = pytest.mark.timeout(120)

SITE = Path(__file__).parent / "worker_site"
ROOT = str(Path(__file__).resolve().parents[2])


def _term_pending(pid: int) -> bool:
    """Is a SIGTERM pending (blocked) for process ``pid``, or is it gone?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    if "State:\tZ" in status:
        return True
    masks = {k: int(v, 16) for k, v in (line.split(":\t") for line in status.splitlines()
                                        if line.startswith(("ShdPnd", "SigPnd")))}
    return any(m & (1 << (signal.SIGTERM - 1)) for m in masks.values())


@pytest.mark.parametrize("at", ["import", "run"])
def test_a_sigterm_at_the_start_of_a_restarted_agent_ends_it_gracefully(
        tmp_path: Path, at: str) -> None:
    gate = tmp_path / "gate"
    path = os.pathsep.join([str(SITE), ROOT, *sys.path])
    env = {"CLERK_TEST_AGENT_GATE": str(gate), "CLERK_TEST_AGENT_GATE_AT": at,
           "PYTHONPATH": path}
    t = clerk.task(Counter, name="count", interval=500, args={"log": str(tmp_path / "log")})
    with LocalCluster(1, tasks=[t], node_env={"n1@127.0.0.1": env}) as cluster:
        name, = cluster.names
        cluster.wait_for_manager(timeout=30)
        first = wait_until(lambda: _agent(cluster, name), timeout=10)
        assert isinstance(first, psutil.Process)
        first.kill()  # the node's supervisor starts another, which waits at the gate
        waiting = Path(f"{gate}.waiting")
        wait_until(lambda: waiting.exists() and waiting.read_text().strip(), timeout=30,
                   message=lambda: cluster.log(name))
        agent = int(waiting.read_text())
        proc = cluster.procs[name]
        proc.send_signal(signal.SIGTERM)  # an operator stops the node: it SIGTERMs the agent

        def stopped_cleanly(timeout: float) -> tuple[float, str]:
            """The node exits 0, its agent ended normally (not by the signal's default
            action) and was not started again: (seconds it took, the node's log)."""
            started = time.monotonic()
            code = proc.wait(timeout=timeout)
            took = time.monotonic() - started
            text = cluster.log(name)
            assert code == 0, (code, text)
            assert f"child 'agent' (pid {agent}) exited: normal" in text, text
            assert "signal SIGTERM" not in text, text
            assert text.count("restarted child 'agent'") == 1, text  # after the kill, no more
            return took, text

        if at == "import":  # its modules load (the gate never opens: a hang): it exits now
            took, text = stopped_cleanly(timeout=60)
            assert took < 10, (took, text)  # not 35 s: the node's 20 s wait, then 15 s more
            return
        asked = Path(f"{gate}.asked")  # (the run gate: the agent's handler took it)
        wait_until(lambda: _term_pending(agent) or asked.exists(), timeout=10, interval=0.01,
                   message=lambda: cluster.log(name))
        gate.touch()
        took, text = stopped_cleanly(timeout=30)
        # built: it leaves, as on any SIGTERM
        after = text.split(f"restarted child 'agent' (pid {agent})")[-1]
        assert "leaving the cluster" in after and "stopped: left" in after, text
        assert took < 15, (took, text)  # not the node's 20 s wait for an agent that died
