"""Two managers meet after a real partition (network namespaces) with 5,000 tasks: the lower
one's table reaches the winner in parts (clerk._handover.step_down_to). Skipped without root /
``ip netns``.

Before, the table went in one HANDOVER of ~3 MB: over the 1 MiB limit, never sent. The
lower side's states still came back through its OFFER (rows with a state), but not what only
the table carries: here an operator's pause of a task that has not run yet (no state), made
through the manager cut off alone, was lost at the heal.

It was still lost in about half the runs on a quiet machine (a short partition): the old
manager stepped down within ~50 ms of the heal into its stale connection to the winner, closed
~200 ms later with what ZeroMQ had queued on it; or the winner had just dropped the old
manager's row (silent for the member timeout) and took its HANDOVER for a stranger's. Each
part is now confirmed (MERGED) and sent again until it is, and a member the winner lost may
hand over (clerk._handover, "Merges are confirmed")."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import clerk
from clerk._client import request_control
from clerk._schedule import phase_ms
from clerk.testing import wait_until
from tests.integration.cluster_helpers import present
from tests.integration.cluster_tasks import Counter
from tests.integration.netns import Lab, NetnsCluster, available

WHY = available()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240),
              pytest.mark.skipif(bool(WHY), reason=f"needs network namespaces: {WHY}")]

TASKS = 5_000
HOUR = 3_600_000


def name(i: int) -> str:
    return f"big.tasks:Poll{i:05d}"


def idle_task() -> str:
    """A task whose first slot is at least 10 minutes away: it will hold no state."""
    now = time.time() * 1000
    for i in range(TASKS):
        if (phase_ms(name(i), HOUR) - now) % HOUR > 600_000:
            return name(i)
    raise AssertionError("no idle task")


#: A pause command started before the partition, in the old manager's namespace, that waits for
#: a line on stdin before it sends the command: the pause then takes milliseconds, not the
#: CLI's start-up (~0.3-2 s, by the machine's load).
PAUSER = """
import sys
from clerk._client import request_control
from clerk._security import keys_from_cookie, load_cookie
address, task, cookie = sys.argv[1:4]
keys = keys_from_cookie(load_cookie(cookie))
print("ready", flush=True)
sys.stdin.readline()
request_control([address], "pause", task, keys=keys, timeout=20)
print("done", flush=True)
"""


def _pause_on_the_lower_side_then_heal(tmp_path, fast: bool) -> None:
    """Cut the manager off alone, let the rest elect a manager, pause an idle task through
    the old manager, heal, and check the pause on the winner. ``fast``: the pause is sent by
    a process started before the cut and the heal follows it at once, ~1-1.5 s after the cut,
    while the connections from before the cut are being closed (the heal is in that window in
    about half the runs with the CLI on a quiet machine)."""
    log = str(tmp_path / "runs.log")
    tasks = [clerk.task(Counter, name=name(i), interval=HOUR, args={"log": log})
             for i in range(TASKS)]
    task = idle_task()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    with Lab(3) as lab, NetnsCluster(lab, tasks=tasks) as cluster:
        old = cluster.wait_for_manager(timeout=90)
        i = cluster.index(old)
        pauser = None
        if fast:
            pauser = subprocess.Popen(
                ["ip", "netns", "exec", lab.ns(i), sys.executable, "-c", PAUSER,
                 cluster.address(old), task, str(cluster.cookie_file)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            if pauser is not None:
                assert pauser.stdout is not None and pauser.stdin is not None
                assert pauser.stdout.readline().strip() == "ready"
            lab.split([i])  # the manager alone: it stays the manager of its side, at its term
            rest = [n for n in cluster.names if n != old]
            wait_until(lambda: (v := cluster.agreed(rest)) is not None and v[0] != old,
                       timeout=30, interval=0.02 if fast else 0.05)
            if pauser is not None:
                assert pauser.stdout is not None and pauser.stdin is not None
                pauser.stdin.write("go\n")
                pauser.stdin.flush()
                assert pauser.stdout.readline().strip() == "done"
                assert pauser.wait(timeout=30) == 0
            else:
                done = subprocess.run(
                    ["ip", "netns", "exec", lab.ns(i), sys.executable, "-m", "clerk", "pause",
                     task, "--join", cluster.address(old), "--cookie-file",
                     str(cluster.cookie_file), "--timeout", "20"],
                    capture_output=True, text=True, timeout=60, env=env)
                assert done.returncode == 0, done.stderr
        finally:
            if pauser is not None and pauser.poll() is None:
                pauser.kill()
                pauser.wait(timeout=10)
        lab.heal()
        # Usually the other side's manager (higher term). Not always: the old manager's stale
        # connection to it may close right after the old one followed it, and the old one may
        # then win the election that follows (a higher term again); its own table, with the
        # pause, then goes into its new one (clerk._handover.take_back_merge).
        winner = present(wait_until(lambda: cluster.agreed(), timeout=30, interval=0.05))[0]

        def paused() -> bool:
            row = request_control([cluster.address(winner)], "show", task,
                                  keys=cluster.keys, timeout=5)
            return bool(row.get("paused"))

        wait_until(paused, timeout=30, interval=0.2,
                   message=lambda: f"{task} not paused on {winner}")
        assert "cannot send Handover" not in cluster.log(old)
        wait_until(lambda: "received a merged table" in cluster.log(winner), timeout=30)


def test_a_pause_made_on_the_lower_side_of_a_partition_survives_the_heal(tmp_path) -> None:
    _pause_on_the_lower_side_then_heal(tmp_path, fast=False)


def test_a_pause_made_just_before_a_heal_soon_after_the_cut_survives_it(tmp_path) -> None:
    _pause_on_the_lower_side_then_heal(tmp_path, fast=True)


#: Seconds from the cut to the heal, one partition each: across the window where the
#: connections from before the cut are closed (~1-1.6 s: a HANDOVER sent into one that closes
#: next is lost) and the one where the winner drops the old manager's row (member timeout
#: after its takeover, ~2.7-3 s: a HANDOVER then came from "a stranger").
HEALS_AFTER = (1.2, 1.5, 2.0, 2.7, 3.0)


def _partition_round(lab: Lab, cluster: NetnsCluster, manager: str, task: str, after: float,
                     env: dict[str, str]) -> str:
    """Cut ``manager`` off alone, pause ``task`` through it once the rest agree on a new
    manager, heal ``after`` s after the cut (the partition's length is the scenario's input,
    not a wait for an outcome), and wait for the pause on the winner; the winner's name."""
    i = cluster.index(manager)
    pauser = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns(i), sys.executable, "-c", PAUSER,
         cluster.address(manager), task, str(cluster.cookie_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert pauser.stdout is not None and pauser.stdin is not None
        assert pauser.stdout.readline().strip() == "ready"
        cut = time.monotonic()
        lab.split([i])
        rest = [n for n in cluster.names if n != manager]
        wait_until(lambda: (v := cluster.agreed(rest)) is not None and v[0] != manager,
                   timeout=30, interval=0.02)
        pauser.stdin.write("go\n")
        pauser.stdin.flush()
        assert pauser.stdout.readline().strip() == "done"
        assert pauser.wait(timeout=30) == 0
    finally:
        if pauser.poll() is None:
            pauser.kill()
            pauser.wait(timeout=10)
    wait_until(lambda: time.monotonic() >= cut + after, timeout=after + 1, interval=0.01)
    lab.heal()
    winner = present(wait_until(lambda: cluster.agreed(), timeout=30, interval=0.05))[0]  # (any)

    def paused() -> bool:
        row = request_control([cluster.address(winner)], "show", task, keys=cluster.keys,
                              timeout=5)
        return bool(row.get("paused"))

    wait_until(paused, timeout=30, interval=0.2,
               message=lambda: f"{task} not paused on {winner} (heal {after} s after the cut)")
    return winner


def test_pauses_made_on_the_lower_side_survive_heals_at_any_moment(tmp_path) -> None:
    """One partition per moment in HEALS_AFTER, each cutting off the manager of the moment
    alone and pausing another idle task through it: every pause is on the winner after its
    heal, and all of them at the end."""
    log = str(tmp_path / "runs.log")
    tasks = [clerk.task(Counter, name=name(i), interval=HOUR, args={"log": log})
             for i in range(TASKS)]
    now = time.time() * 1000
    idle = [name(i) for i in range(TASKS)
            if (phase_ms(name(i), HOUR) - now) % HOUR > 600_000][:len(HEALS_AFTER)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    with Lab(3) as lab, NetnsCluster(lab, tasks=tasks) as cluster:
        manager = cluster.wait_for_manager(timeout=90)
        for task, after in zip(idle, HEALS_AFTER, strict=True):
            manager = _partition_round(lab, cluster, manager, task, after, env)
        for task in idle:
            assert request_control([cluster.address(manager)], "show", task,
                                   keys=cluster.keys, timeout=5).get("paused"), task
