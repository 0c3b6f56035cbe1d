"""A new manager never continues from a stale replica (clerk._replica, clerk._replication).

Real nodes: a node that joined moments ago, its replica of a big table still on the way,
takes over when the manager is SIGKILLed (its priority makes it the successor). Its replica
lacks the ledger task's newest row; the surviving member holds it in its own replica. The
member must offer it (the successor announced no caught-up position), and the ledger goes on
from its newest state. Before, a member offered a fellow member taking over only the rows
beyond its own replica, so the successor started the ledger over from ``init``.
"""

from __future__ import annotations

import time
from pathlib import Path

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Ledger
from tests.integration.task_helpers import ledger_lines, twice

#: Tasks beside the ledger, never due during the test: their rows (~300 characters each)
#: make the table big enough that a joiner takes a second or two to hold it all
#: (TABLE_WINDOW_CHARS per heartbeat round), small enough not to stall a loaded machine's
#: loops past the manager timeout. (Too big for a status reply: the test reads the logs.)
FILLERS = 4000


def test_a_node_that_joined_moments_ago_takes_over_from_the_newest_state(
        tmp_path: Path) -> None:
    log, iv = tmp_path / "ledger", 200
    tasks = [clerk.task(Ledger, name="ledger", interval=iv, args={"log": str(log)})]
    tasks += [clerk.task("clerk.examples:Tally", name=f"filler{i:05d}", interval=86_400_000)
              for i in range(FILLERS)]
    # n2 ranks highest: once it is a member, it is the one that takes over.
    with LocalCluster(3, tasks=tasks, priorities=[1, 2, 0], start=False) as cluster:
        first, successor, other = cluster.names

        def logged(name: str, text: str) -> bool:
            return text in cluster.log(name)

        cluster.start(first)
        wait_until(lambda: logged(first, "workers ready"), timeout=60, interval=0.1)
        cluster.start(other)
        wait_until(lambda: logged(other, f"manager is {first}")
                   and logged(other, "workers ready"), timeout=60, interval=0.1)
        wait_until(lambda: len(ledger_lines(log)) >= 5, timeout=60, interval=0.05)
        cluster.start(successor)
        # Its workers are ready about a second after it joined: the other member has had
        # heartbeats listing it by then (it counts as a fellow member there), and the
        # successor's replica is a part of the table, without the ledger's row (changed
        # last, it comes last).
        # (The manager that admitted it: the first node, unless a loaded machine stalled its
        # loop past the manager timeout and the other one took over meanwhile.)
        wait_until(lambda: any(logged(n, f"member {successor} added") for n in (first, other))
                   and logged(successor, "workers ready"), timeout=60, interval=0.01)
        manager = next(n for n in (first, other) if logged(n, f"member {successor} added"))
        # ... and the other member lists it (a heartbeat's list: one round). Its workers may be
        # ready within ~50 ms of its JOIN: killed before that, the other member knew no node
        # ranked above it and took over itself (the test then waited 30 s for the successor).
        fellow = next(n for n in (first, other) if n != manager)
        wait_until(lambda: any(m.get("name") == successor and m.get("alive")
                               for m in (cluster.views([fellow], brief=True)[fellow] or {})
                               .get("members", [])), timeout=30, interval=0.01)
        before = ledger_lines(log)
        cluster.kill(manager)
        killed = time.time()
        wait_until(lambda: logged(successor, "this node is now the manager"), timeout=30,
                   interval=0.05)
        wait_until(lambda: any(r.started > killed for r in ledger_lines(log)), timeout=30,
                   interval=0.05)
        after = [r for r in ledger_lines(log) if r.started > killed]
        assert all(r.node != manager for r in after)
        last = max(before, key=lambda r: r.count)
        first_after = min(after, key=lambda r: r.started)
        # At most the update of a run in flight on the killed node is lost: never the
        # ledger's history (a new init starts over from 1).
        assert first_after.count >= last.count, (last, first_after)
        assert twice(ledger_lines(log)) == []
