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
from clerk.testing import wait_until
from tests.integration.transport_helpers import transport_pair

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Transport, Transport, str]]:
    with transport_pair() as p:
        yield p


def _send_later(address: str, delay: float, done: threading.Event) -> None:
    """From another thread, with a socket of its own: a message to ``address`` after
    ``delay`` seconds (while the test's thread waits)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
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


def test_poll_readers_calls_only_the_descriptors_with_input_now(pair) -> None:
    """Transport.poll_readers (the agent reads its workers' links right after it handed one a
    run): without waiting, the plain descriptors with input get their callbacks; a ZeroMQ
    socket is not asked (its traffic waits for the loop's poll), a removed reader is gone."""
    a, b, b_address = pair
    ready_r, ready_w = socket.socketpair()
    quiet_r, quiet_w = socket.socketpair()
    calls: list[str] = []
    try:
        a.add_reader(ready_r.fileno(), lambda: calls.append(ready_r.recv(16).decode()))
        a.add_reader(quiet_r.fileno(), lambda: calls.append("quiet"))
        assert a.poll_readers() is False  # nothing there: one poll, no callback
        a_address = a.router.getsockopt(zmq.LAST_ENDPOINT).decode().removeprefix("tcp://")
        b.send(a_address, [b"to the mailbox"], time.monotonic())
        wait_until(lambda: b.poll(0, time.monotonic()) == [] and a.router.poll(0) != 0,
                   timeout=5)  # (in a's mailbox now)
        ready_w.send(b"done")
        start = time.monotonic()
        assert a.poll_readers() is True
        assert time.monotonic() - start < 0.5  # (never waits)
        assert calls == ["done"]
        assert a.stats["received"] == 0  # the mailbox is left to the loop's poll
        a.remove_reader(ready_r.fileno())
        ready_w.send(b"again")
        assert a.poll_readers() is False
        assert calls == ["done"]
    finally:
        a.remove_reader(quiet_r.fileno())
        for s in (ready_r, ready_w, quiet_r, quiet_w):
            s.close()
