"""A follower whose own loop ran long does not declare its manager lost with the manager's
heartbeats waiting unread (real node processes, real sockets).

Seen in node logs on a loaded machine: a node elected ("manager lost") right after a long turn
of its own loop, e.g. a joiner applying the table. Its manager's deadline had passed during the
turn and the next turn ticked its timers before it read its mailbox, where the heartbeats that
arrived meanwhile were waiting. It now reads what arrived first (clerk._agent,
``_read_before_electing``), as a joiner does before it elects itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import logged_since
from tests.integration.stall_tasks import Idle, stall

pytestmark = pytest.mark.timeout(90)


def test_a_follower_whose_loop_ran_past_the_manager_timeout_reads_before_it_elects(
        stall_dir: Path) -> None:
    tasks = [clerk.task(Idle, name="idle", interval=3_600_000)]
    with LocalCluster(3, tasks=tasks) as cluster:
        manager = cluster.wait_for_manager(timeout=20)
        wait_until(lambda: cluster.agreed(cluster.names), timeout=20)
        followers = [n for n in cluster.names if n != manager]
        seconds = 1.5 * 0.7  # past the manager timeout (0.7 s), well within a member's (2 s)
        for follower in followers:
            wall0 = time.time()
            request = stall(stall_dir, follower, seconds)
            wait_until(lambda: not request.exists(), timeout=10,  # noqa: B023
                       message=f"{follower} did not take the stall")
            end = time.monotonic() + seconds + 0.5  # (the stall, then what followed it)
            while time.monotonic() < end:  # polls the log for the whole period: no election
                lost = logged_since(cluster.log(follower), wall0, "manager lost")
                assert not lost, (follower, lost)
                time.sleep(0.05)
            wait_until(lambda: (cluster.agreed(cluster.names) or ("",))[0] == manager,
                       timeout=10)
