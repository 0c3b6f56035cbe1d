"""A fresh node cut off at its start elects itself alone, and when its link comes up it joins
the cluster: the cluster's manager keeps its role and term (real processes, real partitions in
network namespaces). Skipped without root / ``ip netns``.

Each trial starts a node that was never part of the cluster (its own name, no data directory,
a priority above every member's, so its claim would win any tie of terms) with its link down:
no seed answers within ``join_timeout``, it elects itself (a lone claim, at term 0:
``clerk._claims``) and runs the counter task alone from its own ``init``. Then its link comes up.
Before the rule it claimed at term 1, the term of this cluster (which never failed over), and
its higher priority made the cluster's manager step down to it: every member followed a node
with no history.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clerk._tasks import TaskDef
from clerk.testing import LocalCluster, wait_until
from tests.integration.netns import Lab, NetnsCluster, available
from tests.integration.task_helpers import counter_lines
from tests.unit.simdepth import DEEP

WHY = available()
pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(bool(WHY), reason=f"needs network namespaces: {WHY}")]

#: Nodes of the established cluster, and fresh nodes (one per trial): 10 with
#: ``CLERK_SIM_DEPTH=deep`` (tests.unit.simdepth), 4 otherwise. Before the lone-claim rule the
#: first trial deposed the manager in each of 3 runs (c7e0790); each trial costs ~5 s.
MEMBERS = 3
TRIALS = 10 if DEEP else 4


def _counter(log: Path) -> TaskDef:
    return TaskDef(name="count", target="tests.integration.cluster_tasks:Counter",
                   interval=300, timeout=5000, instant=False, enabled=True,
                   args={"log": str(log)})


def _since(cluster: LocalCluster, name: str, mark: int) -> str:
    return cluster.log(name)[mark:]


def test_a_fresh_node_cut_off_at_its_start_never_deposes_the_manager(tmp_path: Path) -> None:
    log = tmp_path / "count.log"
    n = MEMBERS + TRIALS
    # The lab's names carry this branch's name (fresh): other suites' labs are clk<pid>.
    with Lab(n, prefix=f"fresh{os.getpid()}") as lab, NetnsCluster(
            lab, [_counter(log)], start=False, data_dir=False,
            priorities=[0] * MEMBERS + [1] * TRIALS) as cluster:
        members = cluster.names[:MEMBERS]
        for name in members:
            cluster.start(name)
        wait_until(lambda: cluster.agreed(members) is not None, timeout=60)
        wait_until(lambda: any(line.term >= 1 for line in counter_lines(log)), timeout=60)
        outcomes = []  # (trial, the cluster's (manager, term) before, after, members that moved)
        for k in range(TRIALS):
            before = cluster.agreed(members)
            fresh = cluster.names[MEMBERS + k]
            marks = {x: len(cluster.log(x)) for x in members}
            lab.cut([MEMBERS + k + 1])
            cluster.start(fresh)
            # Alone: no seed answers, it elects itself and runs the task from its own init.
            def managing(f: str = fresh) -> bool:
                return "this node is now the manager" in cluster.log(f)

            def ran_alone(f: str = fresh) -> bool:
                return any(x.node == f for x in counter_lines(log))

            wait_until(managing, timeout=60)
            wait_until(ran_alone, timeout=60)
            lab.heal()
            everyone = [*members, fresh]
            wait_until(lambda: cluster.agreed(everyone) is not None, timeout=30,  # noqa: B023
                       message=f"trial {k}: no agreement after the heal")
            # Did a node of the cluster change its manager (or elect) since the trial began?
            moved = [x for x in members if "manager is" in _since(cluster, x, marks[x])
                     or "electing" in _since(cluster, x, marks[x])
                     or "now the manager" in _since(cluster, x, marks[x])]
            outcomes.append((k, before, cluster.agreed(everyone), moved))
            # The cluster runs the task on (on the lineage it keeps) before the node leaves.
            ran = len([x for x in counter_lines(log) if x.term >= 1])
            def ran_on(r: int = ran) -> bool:
                return len([x for x in counter_lines(log) if x.term >= 1]) >= r + 2

            wait_until(ran_on, timeout=30)
            assert cluster.stop(fresh) == 0
            wait_until(lambda: cluster.agreed(members) is not None, timeout=30)
        deposed = [o for o in outcomes if o[2] != o[1] or o[3]]
        assert not deposed, f"deposed in {len(deposed)} of {TRIALS} trials: {deposed}"
        # Every trial met a cluster at term 1 (it never failed over), where the fresh node's
        # claim at term 1 would have won before: its priority is higher.
        assert all(o[1] is not None and o[1][1] == 1 for o in outcomes), outcomes
        # Every run of the cluster's lineage (term >= 1) continued the one before it: no
        # fresh node's state (its own init, at term 0) ever replaced the cluster's.
        counts = [x.count for x in counter_lines(log) if x.term >= 1]
        assert counts == list(range(counts[0], counts[0] + len(counts))), counts
