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
    """``parent``'s supervised children (not its no-orphans watchdog; not one that is gone
    already, whose command line cannot be read any more)."""
    try:
        children = parent.children()
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            if any("_boot.py" in a for a in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def _kill_workers(agent: psutil.Process | None, killed: set[int]) -> None:
    """SIGKILL the workers of ``agent`` not killed yet."""
    for worker in _supervised(agent) if agent is not None else []:
        if worker.pid not in killed:
            killed.add(worker.pid)
            try:
                worker.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass


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

        # Kill the victim's workers as they come up until its worker pool gives up (more
        # than max(10, 5 * workers) restarts in 60 s, or, as they are mostly killed before
        # their READY, 4 failed starts of one worker in a row: clerk._workerpool).
        killed: set[int] = set()

        def workers_killed_until_the_agent_changes() -> bool:
            now = _agent(cluster, victim)
            if now is not None and now.pid != old_pid:
                return True
            _kill_workers(agent, killed)
            return False

        wait_until(workers_killed_until_the_agent_changes, timeout=60, interval=0.01,
                   message=lambda: f"agent {old_pid} of {victim} still there after "
                                   f"{len(killed)} workers killed:\n{cluster.log(victim)}")
        restarted = time.time()
        text = cluster.log(victim)
        assert ("cannot run tasks any more: worker supervisor gave up" in text
                or "cannot run tasks any more: could not start a worker" in text), text
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


def test_a_node_whose_agents_keep_losing_their_workers_gives_up(tmp_path: Path) -> None:
    """Every fresh agent's workers die as they come: the node exits 1, as any OTP tree
    would: by its own supervisor's intensity (more than 3 agent restarts in 10 s). Workers
    killed from outside before their READY are not workers that cannot start: no agent
    exits EXIT_CANNOT_START (review14: before, the first agent did, and the node stopped for
    good after one agent whose new workers something else killed)."""
    t = clerk.task(Counter, name="count", interval=100, args={"log": str(tmp_path / "log")})
    with LocalCluster(1, tasks=[t], data_dir=False) as cluster:
        name = cluster.names[0]
        cluster.wait_for_manager(timeout=30)
        agents: set[int] = set()
        killed: set[int] = set()

        def node_ended() -> bool:
            if not cluster.running(name):
                return True
            agent = _agent(cluster, name)
            if agent is not None:
                agents.add(agent.pid)
            _kill_workers(agent, killed)
            return False

        wait_until(node_ended, timeout=90, interval=0.01,
                   message=lambda: f"node still up after {len(agents)} agents, "
                                   f"{len(killed)} workers killed")
        assert cluster.procs[name].returncode == 1
        text = cluster.log(name)
        assert ("node gave up: reached_max_restart_intensity (child 'agent': exit code 1)"
                in text), text
        assert text.count("cannot run tasks any more") >= 1, text
        assert "cannot start its task workers" not in text, text
