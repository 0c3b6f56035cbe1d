"""Transport.wait: the agent's wait for a deadline under a millisecond away (ZeroMQ's poll counts
whole ms) ends when traffic comes, instead of a blind sleep that held a RESULT or an EXECUTE
arriving meanwhile for up to a millisecond (clerk._agent.SUB_MS_SLEEP). Real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from clerk._transport import Transport
from tests.integration.transport_helpers import transport_pair

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Transport, Transport, str]]:
    with transport_pair() as p:
        yield p


def _send_later(address: str, delay: float, done: threading.Event) -> None:
    """From another thread, with a socket of its own: a message to ``address`` after
    ``delay`` seconds (while the test's thread waits)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(f"tcp://{address}")
        time.sleep(delay)
        sock.send(b"hello")
        done.wait(10)  # (open until the message was read)
    finally:
        sock.close()


def test_a_message_that_comes_during_the_wait_ends_it(pair) -> None:
    _, b, b_address = pair
    assert b.poll(0, time.monotonic(), router=False) == [] and not b.router_ready
    done = threading.Event()
    sender = threading.Thread(target=_send_later, args=(b_address, 0.05, done))
    sender.start()
    try:
        t0 = time.monotonic()
        woke = b.wait(5.0)  # (the agent waits less than a millisecond: same mechanism)
        waited = time.monotonic() - t0
        assert woke is True and waited < 2.0  # not the whole 5 s
        deadline = time.monotonic() + 5
        while not b.router_ready and time.monotonic() < deadline:
            # A wake-up may be ZeroMQ's connection set-up: the loop turns and waits again.
            if b.poll(0, time.monotonic(), router=False) == [] and not b.router_ready:
                b.wait(1.0)
        assert b.router_ready
        assert [i.frames for i in b.receive()] == [[b"hello"]]
    finally:
        done.set()
        sender.join(10)


def test_a_plain_descriptor_that_becomes_readable_ends_the_wait(pair) -> None:
    _, b, _ = pair
    r, w = socket.socketpair()
    try:
        b.add_reader(r.fileno(), lambda: None)
        timer = threading.Timer(0.05, lambda: w.send(b"x"))
        timer.start()
        t0 = time.monotonic()
        assert b.wait(5.0) is True
        assert time.monotonic() - t0 < 2.0
        timer.join()
        b.remove_reader(r.fileno())
    finally:
        r.close()
        w.close()


def test_with_nothing_coming_it_waits_out_its_time(pair) -> None:
    _, b, _ = pair
    b.poll(0, time.monotonic())
    t0 = time.perf_counter()
    assert b.wait(0.0005) is False
    assert time.perf_counter() - t0 >= 0.0004  # a sub-millisecond wait, not a busy return
