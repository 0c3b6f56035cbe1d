"""A node whose seed is named by a host name joins (real node processes, real sockets).

Host names are looked up off the node's loop (clerk._dns): the link to the seed opens without
a connection, the JOIN waits in its queue, and it goes once the answer is in. The names here
exist only for the test's nodes (``tests/integration/dns_tasks.py`` answers them in the nodes'
processes), so the machine's resolver is never asked.
"""

from __future__ import annotations

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.dns_tasks import HOSTS_ENV, Idle, hosts_env

pytestmark = pytest.mark.timeout(90)


def test_a_node_whose_seed_is_a_host_name_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOSTS_ENV, hosts_env({"seed-n1.clerk.test": "127.0.0.1"}))
    tasks = [clerk.task(Idle, name="idle", interval=3_600_000)]
    with LocalCluster(2, tasks=tasks, start=False) as cluster:
        n1, n2 = cluster.names
        cluster.start(n1, seeds=[])
        cluster.wait_for_manager(timeout=20, names=[n1])
        # Its first seed never resolves (logged once, retried with backoff); the second does.
        cluster.start(n2, seeds=[f"nowhere.clerk.test:{cluster.ports[n1]}",
                                 f"seed-n1.clerk.test:{cluster.ports[n1]}"])
        wait_until(lambda: cluster.agreed([n1, n2]) == (n1, cluster.status(n1)["term"]),
                   timeout=30, message=lambda: f"views: {cluster.views()}")
        members = {m["name"] for m in cluster.status(n1)["members"] if m["alive"]}
        assert members == {n1, n2}
        st = cluster.status(n2)["transport"]
        assert st.get("resolve_ok", 0) >= 1, st
        assert st.get("resolve_failed", 0) >= 1, st
        log = cluster.log(n2)
        assert log.count("cannot resolve host name 'nowhere.clerk.test'") == 1, log
        assert "cannot resolve host name 'seed-n1" not in log
