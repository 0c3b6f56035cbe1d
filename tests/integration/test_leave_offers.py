"""A manager asked to leave while its dispatches wait for the members' OFFERs waits for them
(clerk._leaveoffers), on real node processes: the simulator's seed 211 (a re-claiming
manager that left then handed over a table without the run its reload forgot) needs a
re-claim, which a real cluster cannot be made to do on cue; a crash takeover from a replica
waits for the same OFFERs (``stale``), so that is the wait this test makes a stop request
meet: the third node is frozen when the manager is killed, so its OFFER to the successor
comes only once it is thawed.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import logged_since, wait_agreed
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import all_eligible, counter_lines

IV = 100  # ms
WAITING = "asked to leave while waiting for the members' OFFERs"


@pytest.mark.timeout(120)
def test_a_manager_asked_to_leave_while_it_waits_for_an_offer_leaves_once_it_came(
        tmp_path: Path) -> None:
    log = tmp_path / "counter.log"
    task = clerk.task(Counter, name="c", interval=IV, args={"log": str(log)})
    with LocalCluster(3, tasks=[task]) as cluster:
        manager = all_eligible(cluster, "c")
        wait_until(lambda: len(counter_lines(log)) >= 5, timeout=20)
        successor, frozen = sorted(n for n in cluster.names if n != manager)
        cluster.pause(frozen)
        wall0 = time.time()
        cluster.kill(manager)
        wait_agreed(cluster, [successor], timeout=10, check=lambda v: v[0] == successor)
        cluster.procs[successor].send_signal(signal.SIGTERM)
        # It waits for the frozen member's OFFER (up to its wait's bound, 10 s for a build
        # that always offers), rather than handing over at once.
        wait_until(lambda: logged_since(cluster.log(successor), wall0, WAITING), timeout=5,
                   message=lambda: f"{successor} did not wait: {cluster.log(successor)[-3000:]}")
        assert cluster.running(successor)
        thawed = time.monotonic()
        cluster.resume(frozen)
        # The OFFER comes: it leaves then, well before the bound, and hands over to it.
        assert cluster.procs[successor].wait(timeout=15) == 0
        assert time.monotonic() - thawed < 6.0
        wait_agreed(cluster, [frozen], timeout=10, check=lambda v: v[0] == frozen)
        before = len(counter_lines(log))
        rows = wait_until(lambda: (r := counter_lines(log))[before + 5:] and r, timeout=20)
        slots = [r.slot for r in rows]
        assert len(slots) == len(set(slots)), "a slot ran twice"
        # (Not the counts: the run the killed manager had on itself may have written its
        # line and died before its result went out, and the next run repeats that count: a
        # crash loses that run's update, by design.)
