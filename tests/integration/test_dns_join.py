"""A node whose seed is named by a host name joins (real node processes, real sockets).

Host names are looked up off the node's loop (clerk._dns): the link to the seed opens without
a connection, the JOIN waits in its queue, and it goes once the answer is in. The names here
exist only for the test's nodes (``tests/integration/dns_tasks.py`` answers them in the nodes'
processes), so the machine's resolver is never asked.
"""

from __future__ import annotations

import time

import pytest
import zmq

import clerk
from clerk._codec import encode
from clerk._messages import Join, Peer
from clerk.testing import LocalCluster, wait_until
from tests.integration.dns_tasks import DELAY_ENV, HOSTS_ENV, Idle, hosts_env

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


def test_forged_joins_naming_hosts_that_take_seconds_to_fail_do_not_hold_the_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Each lookup of a slow*.clerk.test name takes 2 s and fails: on the loop, every forged
    # joiner's link held the node's timers that long (tools/bench_dns_flood.py).
    monkeypatch.setenv(HOSTS_ENV, hosts_env({"unused.clerk.test": "127.0.0.1"}))
    monkeypatch.setenv(DELAY_ENV, "2000")
    tasks = [clerk.task(Idle, name="idle", interval=3_600_000)]
    with LocalCluster(1, tasks=tasks, insecure=True) as cluster:
        (name,) = cluster.names
        term = cluster.status(name)["term"]
        cluster.status(name)  # the window of recent turns opens here
        ctx = zmq.Context()
        try:
            dealer = ctx.socket(zmq.DEALER)
            dealer.linger = 0
            dealer.sndtimeo = 2000
            dealer.connect(f"tcp://{cluster.address(name)}")
            for i in range(200):
                p = Peer(f"forged{i}@slow{i}.clerk.test", f"slow{i}.clerk.test:9", f"i{i}", -1)
                dealer.send_multipart(encode(Join(p, 0)))
            worst = 0.0
            end = time.monotonic() + 5  # two and a half lookups' time
            while time.monotonic() < end:  # (the DEALER open: its JOINs still on their way)
                st = cluster.status(name, timeout=1)  # a loop held for seconds misses this
                worst = max(worst, st["transport"]["turn_ms_max_recent"])
                time.sleep(0.1)
        finally:
            ctx.destroy(linger=0)
        st = cluster.status(name)
        assert (st["manager"], st["term"]) == (name, term)
        assert st["transport"].get("resolve_queued", 0) >= 2, st["transport"]
        assert st["transport"].get("resolve_failed", 0) >= 2, st["transport"]
        assert worst < 500, (worst, st["transport"])  # a flood's turns: tens of ms
