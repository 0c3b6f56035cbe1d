"""Two restarted nodes that are not seeds, every seed dead: on real processes.

The simulator's case (``tests/unit/test_sim_islands.py``): a node restarted knowing only its
seeds, all of them dead, cannot learn of another restarted non-seed. A real node has its data
directory (the default), which recorded the other members at its last write: it JOINs those
too, so the two hear from each other at once and, once ``rejoin_timeout`` (5 s) has run out
for the dead ones, elect one manager between them (not two lone managers at term 0).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import (
    brief,
    recorded_members,
    wait_agreed,
    wait_converged,
)


@pytest.mark.timeout(120)
def test_two_restarted_non_seeds_with_every_seed_dead_agree_through_their_data_dirs(
        tmp_path: Path) -> None:
    with LocalCluster(5, start=False) as cluster:
        n1, n2, *seeds = cluster.names

        def start(name: str) -> None:
            cluster.start(name, seeds=[cluster.address(s) for s in seeds if s != name])

        for name in reversed(cluster.names):
            start(name)
        cluster.settle()
        wait_converged(cluster, timeout=30)
        for name in (n1, n2):
            def recorded(x: str = name) -> dict[str, str]:
                return recorded_members(cluster, x, tmp_path / "peek")

            wait_until(lambda: len(recorded()) == 4, timeout=15,  # noqa: B023
                       message=lambda: f"{name} recorded {recorded()}")  # noqa: B023
        for name in cluster.names:  # (n2 may see n1 die and record it gone: n1 JOINs it)
            cluster.kill(name)
        start(n1)
        start(n2)
        view = wait_agreed(cluster, [n1, n2], timeout=30)
        assert view[1] >= 1, brief(cluster, [n1, n2])  # a claim with a member, not lone
        wait_until(lambda: all(v is not None and {m["name"] for m in v["members"]
                                                  if m["alive"]} == {n1, n2}
                               for v in cluster.views([n1, n2]).values()), timeout=10,
                   message=lambda: f"member lists: {cluster.views([n1, n2])}")
        assert "recorded 4 other member(s)" in cluster.log(n1)
        assert "waiting up to 5.0 s" in cluster.log(n2)
