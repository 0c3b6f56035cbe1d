"""The transport's idle-cost rules, with real sockets (two Transports over loopback TCP).

A peer costs the poller one descriptor (its DEALER's monitor, through ``ZMQ_FD``) while no
election is under way; a request adds its REQ and the REQ's monitor until the answer is in.
Polling monitors by descriptor must not lose the crash fast path: a peer whose process closes
its connection is reported ``down`` at once, not after a protocol timeout.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest

from clerk._sockopts import MAXRT_MS
from clerk._transport import Inbound, Transport
from clerk.testing import wait_until
from tests.integration.transport_helpers import transport_pair

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Transport, Transport, str]]:
    with transport_pair() as p:
        yield p


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


def _tcp_connections() -> dict[int, socket.socket]:
    """This process's connected TCP sockets (ZeroMQ's, duplicated), by descriptor."""
    out: dict[int, socket.socket] = {}
    for name in os.listdir("/proc/self/fd"):
        if any(int(name) == s.fileno() for s in out.values()):
            continue  # a number freed since the listing (its own) and taken by our dup
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM and s.getpeername():
                out[int(name)] = s
                continue
        except OSError:
            pass
        s.close()
    return out


def _data_segments(s: socket.socket) -> int:
    """Data segments in + out so far (``struct tcp_info``: tcpi_data_segs_in and _out)."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    data_in, data_out = struct.unpack_from("II", info, 152)
    return int(data_in + data_out)


def _quiet_for(seconds: float, *transports: Transport) -> None:
    """Let ``transports`` run their polls for ``seconds`` (a span of nothing happening)."""
    until = time.monotonic() + seconds
    wait_until(lambda: [t.poll(5, time.monotonic()) for t in transports] and
               time.monotonic() >= until, timeout=seconds + 5)


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_USER_TIMEOUT and tcp_info: Linux")
def test_an_idle_link_carries_a_ping_a_second_and_a_stuck_one_is_closed_by_the_kernel(
        pair) -> None:
    """An idle connection carries ZeroMQ's PINGs and PONGs only, one each a second (they were
    five, most of an idle manager's frames); the protocol's traffic proves the busy ones. A
    connection whose data goes unacknowledged (a partition) is closed by the kernel:
    TCP_USER_TIMEOUT on every connection, both ends (``test_netns_heal.py``: real links)."""
    a, b, b_address = pair
    a.connect(b_address)  # a DEALER and a REQ: two connections, four TCP endpoints here
    a.send(b_address, [b"hello"], time.monotonic())
    got: list[Inbound] = []
    wait_until(lambda: pump(b, got, a) and any(i.frames == [b"hello"] for i in got), timeout=5)
    wait_until(lambda: len(_close_all(_tcp_connections())) == 4, timeout=5)
    _quiet_for(0.3, a, b)  # the handshakes' last frames are on their way
    conns = _tcp_connections()
    try:
        assert len(conns) == 4
        assert {s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
                for s in conns.values()} == {MAXRT_MS}
        before = {fd: _data_segments(s) for fd, s in conns.items()}
        _quiet_for(2.0, a, b)
        grew = {fd: _data_segments(s) - before[fd] for fd, s in conns.items()}
        # Each end of a connection: 2 PINGs and 2 PONGs in 2 s, +1 for the span's edges
        # (with a PING every 200 ms: 20).
        assert max(grew.values()) <= 5, grew
    finally:
        _close_all(conns)


def _close_all(conns: dict[int, socket.socket]) -> dict[int, socket.socket]:
    for s in conns.values():
        s.close()
    return conns
