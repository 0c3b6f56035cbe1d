"""A link to a host name (clerk._dns, clerk._transport): opened at once, connected once the
name's answer is in, its messages kept in order meanwhile; with two real Transports over
loopback TCP and a fake lookup that answers only when the test lets it."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from clerk._dns import RETRY_MIN, HostResolver
from clerk._transport import Inbound, Transport
from clerk.testing import free_ports, wait_until

pytestmark = pytest.mark.timeout(30)


class GatedDNS:
    """Answers ``peer.clerk.test`` with 127.0.0.1 once ``gate`` is set; fails anything else."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.asked: list[str] = []

    def __call__(self, host: str) -> str:
        self.asked.append(host)
        self.gate.wait(10)
        if host == "peer.clerk.test":
            return "127.0.0.1"
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_messages_to_a_name_wait_for_its_answer_in_order_and_the_loop_does_not() -> None:
    port_a, port_b = free_ports(2)
    dns = GatedDNS()
    a = Transport("127.0.0.1", port_a, keys=None, resolver=HostResolver(lookup=dns))
    b = Transport("127.0.0.1", port_b, keys=None)
    try:
        name = f"peer.clerk.test:{port_b}"
        t0 = time.perf_counter()
        for i in range(3):
            a.send(name, [b"m%d" % i], time.monotonic())
            a.poll(0, time.monotonic())
        a.request(name, [b"election"], time.monotonic())  # the REQ waits for it too
        assert time.perf_counter() - t0 < 0.5  # the lookup is stuck; the sender is not
        assert a.stats["sent"] == 0 and a.stats["links_opened"] == 1
        wait_until(lambda: dns.asked == ["peer.clerk.test"], timeout=5)  # asked once
        dns.gate.set()
        got: list[Inbound] = []

        def arrived() -> bool:
            a.poll(0, time.monotonic())
            got.extend(i for i in b.poll(10, time.monotonic()) if i.kind == "message")
            return len(got) >= 4

        wait_until(arrived, timeout=10)
        assert [i.frames[0] for i in got if not i.via_req] == [b"m0", b"m1", b"m2"]
        (election,) = [i for i in got if i.via_req]
        assert election.frames == [b"election"]
        assert election.rid is not None
        b.reply(election.rid, True, [b"ok"])
        replies: list[Inbound] = []
        def replied() -> bool:
            replies.extend(a.poll(10, time.monotonic()))
            return any(i.kind == "message" and i.frames == [b"ok"] for i in replies)

        wait_until(replied, timeout=10)
        assert a.stats["resolve_ok"] == 1 and a.stats["send_dropped"] == 0
        # A second link to the same name (once forgotten) connects at once, from the cache.
        a.forget(name)
        a.send(name, [b"again"], time.monotonic())
        assert a._links[name].endpoint == f"tcp://127.0.0.1:{port_b}"
        assert dns.asked == ["peer.clerk.test"]
    finally:
        a.close()
        b.close()


def test_an_address_that_is_not_host_and_port_costs_no_lookup_and_no_socket() -> None:
    (port,) = free_ports(1)
    dns = GatedDNS()
    dns.gate.set()
    a = Transport("127.0.0.1", port, keys=None, resolver=HostResolver(lookup=dns))
    try:
        for bad in ("nonsense", "host:", "host:99999", "a b:1", "x" * 300 + ":1"):
            a.send(bad, [b"x"], time.monotonic())
            a.connect(bad)
        assert a.stats["bad_address"] == 10
        assert a.peers() == [] and dns.asked == []
    finally:
        a.close()


def test_a_name_that_fails_leaves_the_link_waiting_and_drops_its_messages_in_time() -> None:
    (port,) = free_ports(1)
    dns = GatedDNS()
    dns.gate.set()
    clock = [0.0]  # the resolver's (its retries), apart from the transport's queue times
    a = Transport("127.0.0.1", port, keys=None,
                  resolver=HostResolver(lookup=dns, clock=lambda: clock[0]))
    try:
        a.send("gone.clerk.test:7400", [b"x"], time.monotonic())
        wait_until(lambda: (a.poll(10, time.monotonic()), a.stats["resolve_failed"])[1] == 1,
                   timeout=5)
        link = a._links["gone.clerk.test:7400"]
        assert link.endpoint is None and len(link.pending) == 1
        wait_until(lambda: (a.poll(10, time.monotonic()), a.stats["send_dropped"])[1] == 1,
                   timeout=5)  # PENDING_TTL, as for a peer that is not up
        a.send("gone.clerk.test:7400", [b"y"], time.monotonic())  # before its retry is due
        assert dns.asked == ["gone.clerk.test"]
        clock[0] += RETRY_MIN
        a.send("gone.clerk.test:7400", [b"z"], time.monotonic())  # its retry is due
        wait_until(lambda: (a.poll(10, time.monotonic()), a.stats["resolve_failed"])[1] == 2,
                   timeout=5)
        assert dns.asked == ["gone.clerk.test"] * 2
    finally:
        a.close()
