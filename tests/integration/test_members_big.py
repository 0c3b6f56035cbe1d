"""A fifth node joins a cluster whose member list is over the 1 MiB message limit (issue 11).

Each member announces its tasks; the member list used to carry every member's every entry, so
at 10,000 tasks the list of 5 members (here: 4,000 tasks with long names, the same size per
member) was over the limit: the WELCOME and the heartbeats that carry the list were not sent,
and the fifth node never got the list. The list now carries each member's set by digest to
the nodes that read it (clerk._tasksets); members of one build share one set. Real nodes, real
sockets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

TASKS = 4_000
NODES = 5


def name(i: int) -> str:
    # ~55 characters: 4,000 of them announce ~230 KB per member, as 10,000 short names do
    return f"myapp.tasks.reports.refresh_materialized_view_{i:05d}"


@contextmanager
def big_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    log = str(tmp_path / "runs.log")
    tasks = [clerk.task(Counter, name=name(i), interval=3_600_000, args={"log": log})
             for i in range(TASKS)]
    with LocalCluster(NODES, tasks=tasks, start=False, data_dir=False) as c:
        yield c


def members_seen(c: LocalCluster, node: str) -> dict[str, int]:
    st = c.status(node, timeout=10)
    return {m["name"]: len(m["tasks"]) for m in st["members"] if m["alive"]}


def test_a_fifth_node_joins_a_cluster_whose_member_list_is_over_a_message(
        tmp_path: Path) -> None:
    # The cluster is made here, not in a fixture: a failure inside the block keeps the
    # nodes' logs (LocalCluster, $CLERK_KEEP_LOGS); a fixture's block never sees it.
    with big_cluster(tmp_path) as cluster:
        fifth_joins(cluster)


def fifth_joins(cluster: LocalCluster) -> None:
    names = cluster.names
    cluster.start(names[0])
    assert cluster.wait_for_manager(timeout=60, names=names[:1]) == names[0]
    for n in names[1:4]:
        cluster.start(n)
    wait_until(lambda: len(members_seen(cluster, names[0])) == 4, timeout=60,
               message=lambda: cluster.log(names[0])[-3000:])
    cluster.start(names[4])  # the fifth: its list (5 x ~230 KB of entries) is over 1 MiB
    everyone = dict.fromkeys(names, TASKS)

    def all_see_everyone() -> bool:
        return all(members_seen(cluster, n) == everyone for n in names)

    wait_until(all_see_everyone, timeout=60,
               message=lambda: f"{ {n: members_seen(cluster, n) for n in names} }\n"
                               + cluster.log(names[4])[-3000:])
    assert cluster.status(names[4], timeout=10)["manager"] == names[0]
    for n in names:
        assert "cannot send" not in cluster.log(n), cluster.log(n)[-3000:]
