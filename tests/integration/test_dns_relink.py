"""A peer restarted under the same host name with another IP is reached again (real node
processes, real sockets): the links to its name (a seed's, a member's) ask for the name again
once it cannot be reached, and move to the new IP (clerk._links, ``relinked``).

The name ``n2.clerk.test`` exists only for the test's nodes: every process of theirs answers
it from a file (``tests/integration/relink_site/sitecustomize.py``), which the test rewrites
to move the name from 127.0.0.2 to 127.0.0.3 (both loopback on Linux) while n2 is down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.dns_tasks import Idle

pytestmark = pytest.mark.timeout(120)

SITE = Path(__file__).parent / "relink_site"
HOST = "n2.clerk.test"


class MovingCluster(LocalCluster):
    """n1 on 127.0.0.1, n2 named ``n2@n2.clerk.test`` (its IP what ``hosts`` says)."""

    def __init__(self, hosts: Path, **kwargs: Any) -> None:
        super().__init__(2, start=False, data_dir=False, **kwargs)
        old = self.names[1]
        self.names[1] = f"n2@{HOST}"
        self.ports[self.names[1]] = self.ports.pop(old)
        self.hosts = hosts

    def move(self, ip: str) -> None:
        self.hosts.write_text(f"{HOST}={ip}\n")

    def address(self, name: str) -> str:
        """An IP address (status requests from the test's process, which has no hook)."""
        host = name.split("@")[1]
        if host == HOST:
            host = self.hosts.read_text().strip().split("=")[1]
        return f"{host}:{self.ports[name]}"


def alive(cluster: LocalCluster, viewer: str) -> set[str]:
    view = cluster.views([viewer], brief=True)[viewer]
    return {m["name"] for m in view["members"] if m["alive"]} if view else set()


def test_a_peer_restarted_under_its_name_on_another_ip_is_relinked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = tmp_path / "hosts"
    monkeypatch.setenv("CLERK_TEST_HOSTS_FILE", str(hosts))
    monkeypatch.syspath_prepend(str(SITE))  # the nodes' PYTHONPATH is the test's sys.path
    tasks = [clerk.task(Idle, name="idle", interval=3_600_000)]
    with MovingCluster(hosts, tasks=tasks, priorities=[1, 0]) as cluster:
        cluster.move("127.0.0.2")
        n1, n2 = cluster.names
        seed2 = f"{HOST}:{cluster.ports[n2]}"  # n1's seed: n2 by its name
        cluster.start(n1, seeds=[seed2])
        cluster.start(n2, seeds=[cluster.address(n1)])
        cluster.settle()
        wait_until(lambda: cluster.agreed([n1, n2]) is not None
                   and alive(cluster, n1) == {n1, n2}, timeout=30,
                   message=lambda: f"views: {cluster.views()}")
        assert cluster.status(n1)["transport"].get("relinked", 0) == 0

        cluster.kill(n2)
        wait_until(lambda: n2 not in alive(cluster, n1), timeout=30,
                   message=lambda: f"n1's view: {cluster.views([n1])}")
        cluster.move("127.0.0.3")
        cluster.start(n2, seeds=[cluster.address(n1)])
        cluster.settle([n2])
        wait_until(lambda: cluster.agreed([n1, n2]) is not None
                   and alive(cluster, n1) == {n1, n2} == alive(cluster, n2), timeout=30,
                   message=lambda: f"views: {cluster.views()}")
        st = cluster.status(n1)["transport"]
        assert st.get("relinked", 0) >= 1, st
        log = cluster.log(n1)
        line = f"peer {seed2} moved from 127.0.0.2 to 127.0.0.3: relinked"
        assert line in log, log[-3000:]
