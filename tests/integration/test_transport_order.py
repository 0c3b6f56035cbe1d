"""Messages to one peer leave in the order they were sent (issue 11): with real sockets, two
Transports over loopback TCP. A message sent while the connection is not up waits in the
link's queue until a poll flushes it; the connection may come up between two polls (ZeroMQ
connects in its own thread), and a message sent then went straight out, ahead of the ones
queued before it. A node's first JOIN (no tasks: its workers were not ready) then reached
the manager after its second, and the manager listed the node with no tasks
(tests/integration/test_members_big.py)."""

from __future__ import annotations

import time

import pytest
import zmq

from clerk._transport import Transport
from clerk.testing import free_ports, wait_until

pytestmark = pytest.mark.timeout(30)


def received(t: Transport, into: list[bytes], upto: int) -> bool:
    into.extend(i.frames[0] for i in t.poll(10, time.monotonic()) if i.kind == "message")
    return len(into) >= upto


def test_a_message_sent_once_connected_does_not_overtake_those_queued_before() -> None:
    port_a, port_b = free_ports(2)
    a = Transport("127.0.0.1", port_a, keys=None)
    b: Transport | None = None
    try:
        address = f"127.0.0.1:{port_b}"
        a.send(address, [b"first"], time.monotonic())  # nobody listens yet: queued
        a.send(address, [b"second"], time.monotonic())
        assert a.stats["sent"] == 0
        b = Transport("127.0.0.1", port_b, keys=None)
        dealer = a._links[address].dealer
        # ZeroMQ connects in its thread; a has not polled, so its queue is still waiting.
        wait_until(lambda: int(dealer.getsockopt(zmq.EVENTS)) & zmq.POLLOUT, timeout=10)
        a.send(address, [b"third"], time.monotonic())
        got: list[bytes] = []
        wait_until(lambda: (a.poll(0, time.monotonic()), received(b, got, 3))[1],
                   timeout=10)
        assert got == [b"first", b"second", b"third"]
        assert a.stats["send_dropped"] == 0
    finally:
        a.close()
        if b is not None:
            b.close()
