"""A link to a host name whose peer went away follows the name to its new IP (clerk._links,
clerk._transport): two real Transports over loopback TCP (127.0.0.2, then 127.0.0.3, same
port), a lookup from a table the test changes; a healthy link to another name is neither
looked up again nor moved."""

from __future__ import annotations

import logging
import time

import pytest

from clerk._dns import HostResolver
from clerk._links import RELINK_AFTER
from clerk._transport import Inbound, Transport
from clerk.testing import free_ports, wait_until
from tests.unit.test_dns import FakeDNS

pytestmark = pytest.mark.timeout(60)


def test_a_link_to_a_name_moves_with_it_and_a_healthy_one_stays(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clerk.transport")
    port_a, port_b, port_c = free_ports(3)
    dns = FakeDNS({"peer.clerk.test": "127.0.0.2", "healthy.clerk.test": "127.0.0.1"})
    a = Transport("127.0.0.1", port_a, keys=None, resolver=HostResolver(lookup=dns))
    b = Transport("127.0.0.2", port_b, keys=None)
    c = Transport("127.0.0.1", port_c, keys=None)
    peer, healthy = f"peer.clerk.test:{port_b}", f"healthy.clerk.test:{port_c}"
    got: list[Inbound] = []
    seen: list[Inbound] = []

    def pump(receiver: Transport) -> bool:
        """Poll every transport once (True, to chain with ``and`` in a wait)."""
        seen.extend(a.poll(5, time.monotonic()))
        c.poll(0, time.monotonic())
        got.extend(i for i in receiver.poll(5, time.monotonic()) if i.kind == "message")
        return True

    try:
        a.pinned.update((peer, healthy))
        a.connect(peer)
        a.connect(healthy, req=False)
        a.send(peer, [b"m0"], time.monotonic())
        a.send(healthy, [b"h0"], time.monotonic())
        wait_until(lambda: pump(b) and [i.frames for i in got] == [[b"m0"]], timeout=10)
        b.close()  # the peer goes away ...
        wait_until(lambda: pump(c) and any(i.kind == "down" and i.address == peer
                                           for i in seen), timeout=10)
        dns.table["peer.clerk.test"] = "127.0.0.3"  # ... and comes back elsewhere
        dns.table["healthy.clerk.test"] = "127.0.0.9"  # (a healthy link must not follow)
        b = Transport("127.0.0.3", port_b, keys=None)
        t0 = time.monotonic()
        wait_until(lambda: pump(b) and a.stats["relinked"] == 1, timeout=10)
        assert time.monotonic() - t0 < RELINK_AFTER + 5
        assert a._links[peer].endpoint == f"tcp://127.0.0.3:{port_b}"
        got.clear()
        for i in range(1, 4):
            a.send(peer, [b"m%d" % i], time.monotonic())
        a.request(peer, [b"election"], time.monotonic())  # on the REQ made anew
        wait_until(lambda: pump(b) and len(got) >= 4, timeout=10)
        assert [i.frames[0] for i in got if not i.via_req] == [b"m1", b"m2", b"m3"]
        (election,) = [i for i in got if i.via_req]
        assert election.rid is not None
        b.reply(election.rid, True, [b"ok"])
        wait_until(lambda: pump(b) and any(i.kind == "message" and i.frames == [b"ok"]
                                           for i in seen), timeout=10)
        assert a._links[healthy].endpoint == f"tcp://127.0.0.1:{port_c}"
        assert dns.asked.count("healthy.clerk.test") == 1
        assert a.stats["relinked"] == 1
        moved = [r.getMessage() for r in caplog.records if "relinked" in r.getMessage()]
        assert moved == [f"peer {peer} moved from 127.0.0.2 to 127.0.0.3: relinked"]
    finally:
        for t in (a, b, c):
            if not t.router.closed:
                t.close()
