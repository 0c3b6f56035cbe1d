"""The transport's idle-cost rules, with real sockets (two Transports over loopback TCP).

A peer costs the poller one descriptor (its DEALER's monitor, through ``ZMQ_FD``) while no
election is under way; a request adds its REQ and the REQ's monitor until the answer is in.
Polling monitors by descriptor must not lose the crash fast path: a peer whose process closes
its connection is reported ``down`` at once, not after a protocol timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from clerk._transport import Inbound, Transport
from clerk.testing import free_ports, wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Transport, Transport, str]]:
    port_a, port_b = free_ports(2)
    a = Transport("127.0.0.1", port_a, keys=None)
    b = Transport("127.0.0.1", port_b, keys=None)
    try:
        yield a, b, f"127.0.0.1:{port_b}"
    finally:
        a.close()
        if not b.router.closed:
            b.close()


def pump(t: Transport, into: list[Inbound], other: Transport | None = None) -> list[Inbound]:
    """Poll ``t`` into ``into``; poll ``other`` too (its queued sends go out in its poll)."""
    if other is not None:
        other.poll(0, time.monotonic())
    into.extend(t.poll(10, time.monotonic()))
    return into


def test_a_peer_costs_one_descriptor_and_a_request_two_more_until_answered(pair) -> None:
    a, b, b_address = pair
    base = len(a.poller.sockets)
    a.connect(b_address)  # DEALER and REQ opened ahead of need, as for every live member
    a.send(b_address, [b"hello"], time.monotonic())
    got: list[Inbound] = []
    wait_until(lambda: pump(b, got, a) and any(i.frames == [b"hello"] for i in got), timeout=5)
    assert len(a.poller.sockets) == base + 1  # the DEALER's monitor only

    a.request(b_address, [b"election"], time.monotonic())
    assert len(a.poller.sockets) == base + 3  # + the REQ and its monitor
    asked: list[Inbound] = []
    wait_until(lambda: pump(b, asked, a) and any(i.via_req for i in asked), timeout=5)
    question = next(i for i in asked if i.via_req)
    assert question.rid is not None
    b.reply(question.rid, True, [b"ok"])
    answers: list[Inbound] = []
    wait_until(lambda: pump(a, answers, b) and any(i.frames == [b"ok"] for i in answers),
               timeout=5)
    assert len(a.poller.sockets) == base + 1  # answered: back to one descriptor


def test_a_closed_peer_is_down_at_once(pair) -> None:
    a, b, b_address = pair
    a.connect(b_address)
    a.send(b_address, [b"hello"], time.monotonic())
    seen: list[Inbound] = []
    wait_until(lambda: any(i.kind == "up" for i in pump(a, seen, b)), timeout=5)
    b.close()  # LINGER 0: the TCP connection closes, as when the peer's process dies
    closed = time.monotonic()
    wait_until(lambda: any(i.kind == "down" and i.address == b_address
                           for i in pump(a, seen)), timeout=5)
    # ZeroMQ's heartbeat timeout and the member timeout are both over a second.
    assert time.monotonic() - closed < 0.5
