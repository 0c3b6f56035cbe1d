"""A node's port taken by another program: LocalCluster moves the node, and a node on its own
says who holds the port and exits at once (no pointless restarts of its agent)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from clerk.testing import LocalCluster, free_ports
from tests.integration.cluster_helpers import env_for_nodes

pytestmark = pytest.mark.timeout(90)


@contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    """Another program listening on ``port`` (this test process)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        yield s


def test_a_node_whose_port_was_taken_before_it_started_runs_on_another() -> None:
    cluster = LocalCluster(3)
    n1 = cluster.names[0]
    old = cluster.ports[n1]
    with listening(old), cluster:
        # the with block starts nothing before every node listens
        assert [(name, port) for name, port, _ in cluster.moved] == [(n1, old)]
        new = cluster.ports[n1]
        assert new != old and new == cluster.moved[0][2]
        assert old not in cluster.reservation.held and new in cluster.reservation.held
        manager = cluster.wait_for_manager(timeout=30)
        assert cluster.agreed(cluster.names) == cluster.agreed()
        assert set(cluster.live()) == set(cluster.names)
        view = cluster.status(n1)
        assert view["manager"] == manager
        log = cluster.log(n1)
        assert (f"port = {old}: is already in use on 127.0.0.1 (held by pid {os.getpid()} "
                in log), log
        assert f"listening on 127.0.0.1:{new}" in log
    assert not cluster.dir.exists()


def node_argv(port: int) -> list[str]:
    return ["--name", "lone@127.0.0.1", "--port", str(port), "--insecure", "--no-data-dir",
            "--workers", "1"]


def test_a_node_on_a_taken_port_names_the_holder_and_exits_2() -> None:
    (port,) = free_ports(1)
    with listening(port):
        out = subprocess.run([sys.executable, "-m", "clerk.node", *node_argv(port)],
                             capture_output=True, text=True, timeout=60, env=env_for_nodes())
    assert out.returncode == 2, out.stderr
    assert (f"port = {port}: is already in use on 127.0.0.1 (held by pid {os.getpid()} "
            in out.stderr), out.stderr


# The node with its pre-flight check skipped: the port is taken between that check and the
# agent's bind (a race too narrow to hit on purpose).
AFTER_PREFLIGHT = """
import sys
import clerk.node as node
node.preflight = lambda config, derive_keys=True: None
sys.exit(node.main(sys.argv[1:]))
"""


def test_an_agent_that_cannot_bind_is_not_restarted_and_the_node_exits_2() -> None:
    (port,) = free_ports(1)
    with listening(port):
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-c", AFTER_PREFLIGHT, *node_argv(port)],
                             capture_output=True, text=True, timeout=60, env=env_for_nodes())
        took = time.monotonic() - started
    assert out.returncode == 2, out.stderr
    assert (f"cannot listen on 127.0.0.1:{port}: port {port} is already in use on 127.0.0.1 "
            f"(held by pid {os.getpid()} " in out.stderr), out.stderr
    assert "(not retried)" in out.stderr and "node could not start" in out.stderr
    assert out.stderr.count("started child 'agent'") == 1, out.stderr
    assert "restarted child" not in out.stderr and "gave up" not in out.stderr, out.stderr
    assert took < 30


def test_an_embedded_node_on_a_taken_port_fails_at_once_naming_the_holder() -> None:
    import clerk

    (port,) = free_ports(1)
    node = clerk.Node(name="lone@127.0.0.1", port=port, insecure=True, data_dir=False,
                      workers=1)
    with listening(port), pytest.raises(clerk.ConfigError) as info:
        node.start()  # the pre-flight check finds it before anything starts
    assert (f"clerk.Node(...): port = {port}: is already in use on 127.0.0.1 (held by pid "
            f"{os.getpid()} " in str(info.value)), info.value


def test_an_embedded_node_whose_agent_cannot_bind_fails_at_once_with_its_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The port taken between the pre-flight check and the agent's bind: ``start()`` raises
    as soon as the node has ended, with the agent's own words, not after its timeout."""
    import clerk
    import clerk._node

    monkeypatch.setattr(clerk._node, "preflight", lambda config, derive_keys=True: None)
    (port,) = free_ports(1)
    node = clerk.Node(name="lone@127.0.0.1", port=port, insecure=True, data_dir=False,
                      workers=1)
    with listening(port):
        started = time.monotonic()
        with pytest.raises(clerk.StartError) as info:
            node.start(timeout=60)
        took = time.monotonic() - started
    error = info.value
    assert isinstance(error, clerk.ClerkError)
    assert str(error).startswith(f"{node!r} could not start: cannot listen on "
                                 f"127.0.0.1:{port}: port {port} is already in use on "
                                 f"127.0.0.1 (held by pid {os.getpid()} "), error
    assert "(not retried)" in str(error)
    assert error.node == "lone@127.0.0.1" and error.exitcode == 2
    assert error.reason in str(error) and f"port {port}" in error.reason
    assert took < 20, took  # the agent's start and exit only, never the 60 s timeout
    assert node.stop() is None  # already ended: nothing to stop
    try:
        node.start(timeout=60)  # the port is free again: the same Node starts
        assert node.status()["node"] == "lone@127.0.0.1"
    finally:
        node.stop()


def test_a_node_whose_metrics_port_was_taken_serves_metrics_on_another() -> None:
    import urllib.request

    cluster = LocalCluster(2, metrics=True)
    n1 = cluster.names[0]
    old = cluster.metrics_ports[n1]
    with listening(old), cluster:
        assert [(name, port) for name, port, _ in cluster.moved] == [(n1, old)]
        assert cluster.metrics_ports[n1] != old
        with urllib.request.urlopen(cluster.metrics_url(n1), timeout=10) as reply:
            assert b"clerk_" in reply.read()
        assert (f"metrics_port = {old}: is already in use on 127.0.0.1 (held by pid "
                f"{os.getpid()} " in cluster.log(n1))
