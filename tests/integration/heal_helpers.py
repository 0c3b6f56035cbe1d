"""One heal trial on a :class:`~tests.integration.netns.NetnsCluster`, shared by the heal test
and ``tools/bench_heal.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from clerk.testing import wait_until
from tests.integration.cluster_helpers import present
from tests.integration.netns import Lab, NetnsCluster

#: Kinds of partition: the manager cut off alone, a follower cut off alone, a 2|3 split with
#: the manager on the small side.
KINDS = ("cut-manager", "cut-follower", "split")


@dataclass(frozen=True)
class Heal:
    kind: str
    seconds: float  # from the heal until every node agrees on one manager (polled)
    elections: int  # "manager lost; electing" lines logged by all nodes after the heal
    manager: str


def heal_trial(cluster: NetnsCluster, lab: Lab, kind: str, hold: float = 3.0) -> Heal:
    """Partition as ``kind`` says, let both sides settle, keep it ``hold`` s, heal, measure."""
    manager = cluster.wait_for_manager(timeout=20)
    i = cluster.index(manager)
    if kind == "cut-manager":
        lab.cut([i])
        cut = [manager]
    elif kind == "cut-follower":
        j = 1 if i != 1 else 2
        lab.cut([j])
        cut = [cluster.names[j - 1]]
    else:
        side = [i, i % lab.n + 1]
        lab.split(side)
        cut = [cluster.names[k - 1] for k in side]
    rest = [n for n in cluster.names if n not in cut]
    wait_until(lambda: cluster.agreed(rest) is not None, timeout=15, interval=0.02)
    until = time.monotonic() + hold
    wait_until(lambda: time.monotonic() >= until, timeout=hold + 5)  # the partition lasts
    marks = {n: len(cluster.log(n)) for n in cluster.names}
    healed = time.monotonic()
    lab.heal()
    agreed = present(wait_until(lambda: cluster.agreed(), timeout=20, interval=0.005))
    seconds = time.monotonic() - healed
    # Stable afterwards: nobody keeps electing (the issue saw 51 elections in 6.6 s).
    settle = time.monotonic() + 2.0
    wait_until(lambda: time.monotonic() >= settle, timeout=10)
    assert cluster.agreed() is not None
    elections = sum(cluster.log(n)[marks[n]:].count("electing") for n in cluster.names)
    return Heal(kind, seconds, elections, agreed[0])
