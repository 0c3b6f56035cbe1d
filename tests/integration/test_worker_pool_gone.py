"""A node whose worker supervisor gives up does not sit without workers: its agent leaves and
exits non-zero, the node's supervisor starts a fresh agent (and pool), and runs run on that
node again. On main the agent stayed up and a member with no worker process, for good."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import all_eligible, counter_lines

pytestmark = pytest.mark.timeout(120)


def _supervised(parent: psutil.Process) -> list[psutil.Process]:
    """``parent``'s supervised children (not its no-orphans watchdog)."""
    try:
        return [c for c in parent.children() if any("_boot.py" in a for a in c.cmdline())]
    except psutil.Error:
        return []


def _agent(cluster: LocalCluster, name: str) -> psutil.Process | None:
    proc = cluster.procs.get(name)
    if proc is None or proc.poll() is not None:
        return None
    try:
        agents = _supervised(psutil.Process(proc.pid))
    except psutil.Error:
        return None
    return agents[0] if len(agents) == 1 else None


@pytest.mark.parametrize("role", ["member", "manager"])
def test_a_worker_supervisor_that_gives_up_restarts_the_agent_and_runs_run_there_again(
        tmp_path: Path, role: str) -> None:
    """The manager's agent leaves as on SIGTERM: it hands the table over first."""
    log = tmp_path / "log"
    t = clerk.task(Counter, name="count", interval=100, args={"log": str(log)})
    with LocalCluster(2, tasks=[t]) as cluster:
        manager = all_eligible(cluster, "count", timeout=30)
        victim = manager if role == "manager" else next(n for n in cluster.names
                                                        if n != manager)
        agent = wait_until(lambda: _agent(cluster, victim), timeout=10)
        assert agent is not None
        old_pid = agent.pid

        # Kill the victim's workers as they come up until its worker supervisor gives up
        # (more than max(10, 5 * workers) restarts in 60 s).
        killed: set[int] = set()

        def workers_killed_until_the_agent_changes() -> bool:
            now = _agent(cluster, victim)
            if now is not None and now.pid != old_pid:
                return True
            for worker in _supervised(agent):
                if worker.pid not in killed:
                    killed.add(worker.pid)
                    try:
                        worker.send_signal(signal.SIGKILL)
                    except psutil.Error:
                        pass
            return False

        wait_until(workers_killed_until_the_agent_changes, timeout=60, interval=0.01,
                   message=lambda: f"agent {old_pid} of {victim} still there after "
                                   f"{len(killed)} workers killed:\n{cluster.log(victim)}")
        restarted = time.time()
        text = cluster.log(victim)
        assert "worker supervisor gave up" in text and "cannot run tasks any more" in text, text
        assert cluster.running(victim)  # the node itself is up: its supervisor restarted it
        if role == "manager":  # a graceful leave: no takeover window
            other = next(n for n in cluster.names if n != victim)
            assert f"received the manager's hand-over from {victim}" in cluster.log(other), \
                cluster.log(other)

        # The fresh agent rejoins with a fresh pool, and runs run on it again.
        def ran_there_since() -> bool:
            return any(r.node.startswith(victim) and r.started > restarted
                       for r in counter_lines(log))

        wait_until(ran_there_since, timeout=40, interval=0.05,
                   message=lambda: f"no run on {victim} after its agent restarted:\n"
                                   f"{cluster.log(victim)}")
        # No state lost across the restart: each run continued the count of the one before
        # it (the same count again after a run whose worker was killed once it had written
        # its line: a failed run keeps the previous state).
        counts = [r.count for r in counter_lines(log)]
        assert all(b - a in (0, 1) for a, b in zip(counts, counts[1:], strict=False)), counts
