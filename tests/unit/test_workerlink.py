"""clerk._workerlink: messages over a worker's Unix socket, reassembled whatever the reads."""

from __future__ import annotations

import socket
import threading

import pytest

from clerk._workerlink import (
    DONE,
    RUN,
    BlockingReader,
    LinkClosed,
    Reader,
    pack,
    parse,
    recv_msg,
    send_msg,
)


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)  # the agent's end
    return a, b


@pytest.mark.timeout(10)
def test_messages_split_anywhere_are_reassembled_in_order() -> None:
    a, b = _pair()
    try:
        wire = pack(DONE, b'{"run": "r1"}') + pack(DONE, b"") + pack(RUN, b"x" * 1000)
        reader = Reader(a)
        got = []
        for i in range(len(wire)):  # one byte at a time: every split point
            b.sendall(wire[i:i + 1])
            got += reader.read()
        assert got == [(DONE, b'{"run": "r1"}'), (DONE, b""), (RUN, b"x" * 1000)]
        assert reader.read() == []  # nothing more, and the link is still open
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(10)
def test_the_end_of_the_connection_comes_after_the_messages_before_it() -> None:
    a, b = _pair()
    try:
        b.sendall(pack(DONE, b"last"))
        b.close()
        reader = Reader(a)
        assert reader.read() == [(DONE, b"last")]
        with pytest.raises(LinkClosed):
            reader.read()
    finally:
        a.close()


@pytest.mark.timeout(10)
def test_a_large_run_goes_through_to_a_reading_worker() -> None:
    """A state of MAX_STATE_BYTES and more is larger than a socket's buffer: the agent's
    non-blocking write waits for the worker to read, within its bound."""
    a, b = _pair()
    body = bytes(range(256)) * 8192  # 2 MiB
    got: list[tuple[int, bytes]] = []
    worker = threading.Thread(target=lambda: got.append(recv_msg(b)))
    worker.start()
    try:
        send_msg(a, RUN, body)
        worker.join(5)
        assert got == [(RUN, body)]
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(10)
def test_a_worker_that_does_not_read_fails_the_write_within_the_bound() -> None:
    a, b = _pair()
    try:
        with pytest.raises(LinkClosed):
            send_msg(a, RUN, b"x" * (8 << 20), timeout=0.2)
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(10)
def test_a_closed_peer_is_link_closed_on_both_sides() -> None:
    a, b = _pair()
    b.close()
    with pytest.raises(LinkClosed):
        send_msg(a, RUN, b"{}")
    a.close()
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    c.sendall(pack(RUN, b"abc")[:4])  # a header cut short, then the end
    c.close()
    with pytest.raises(LinkClosed):
        recv_msg(d)
    d.close()


@pytest.mark.timeout(10)
def test_the_workers_reader_takes_messages_however_they_arrive() -> None:
    """The worker reads a run in one recv (header and body came in one write), and still
    reassembles messages split anywhere or arriving several at once, in order."""
    a, b = _pair()
    b.settimeout(5)
    try:
        wire = pack(RUN, b'{"run": "r1"}') + pack(RUN, b"") + pack(RUN, b"y" * 1000)
        inbox = BlockingReader(b)
        a.sendall(wire)  # all at once
        assert [inbox.recv() for _ in range(3)] == [
            (RUN, b'{"run": "r1"}'), (RUN, b""), (RUN, b"y" * 1000)]
        for cut in range(1, len(wire)):  # every split point: the rest comes later
            got: list[tuple[int, bytes]] = []
            reader = threading.Thread(
                target=lambda got=got: got.extend(inbox.recv() for _ in range(3)))
            a.sendall(wire[:cut])
            reader.start()
            a.sendall(wire[cut:])
            reader.join(5)
            assert got == [(RUN, b'{"run": "r1"}'), (RUN, b""), (RUN, b"y" * 1000)]
        big = bytes(range(256)) * 8192  # 2 MiB: more than a socket's buffer
        writer = threading.Thread(target=lambda: send_msg(a, RUN, big))
        writer.start()
        assert inbox.recv() == (RUN, big)
        writer.join(5)
        a.sendall(pack(RUN, b"abc")[:4])  # a header cut short, then the end
        a.close()
        with pytest.raises(LinkClosed):
            inbox.recv()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("text", [
    '{"run": "r1", "state": {"a": [1, 2.5, null, true]}}', '[]', '"x"', '12', ' {"a": 1} ',
    '{"a": 1}\n', '{"a": 1} x', '', '{"a": ', '{"a" 1}', '\ufeff{}', '[1,]',
])
def test_parse_is_json_loads(text: str) -> None:
    """The same value, or an error where json.loads raises one (a ValueError)."""
    import json

    try:
        want = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse(text)
        return
    assert parse(text) == want


@pytest.mark.parametrize(("text", "name"), [
    ("NaN", "NaN"), ("[1, NaN]", "NaN"), ('{"a": -Infinity}', "-Infinity"),
    (" Infinity ", "Infinity"),
    ('["r-1", "ok", {"n": NaN}, 0.25, ""]', "NaN"),  # a DONE whose state holds one
    ('["r", 1, 2, null, false, NaN, 0, "t", "m:T", "n", "UTC", 100]', "NaN"),  # a RUN's due
    # Too large for a float: json.loads reads it as inf (parse_constant never sees it). These
    # failed on main (parse returned inf).
    ("1e400", "1e400"), ("[-1.5E+309]", "-1.5E\\+309"), (" 1e400 ", "1e400"),
    ('["r-1", "ok", {"n": 1e400}, 0.25, ""]', "1e400"),  # a DONE whose state holds one
    ('["r-1", "ok", null, 1e999, ""]', "1e999"),  # ... whose duration is one
    ("1" + "0" * 400 + ".0", "1" + "0" * 39),
])
def test_parse_refuses_numbers_that_are_not_finite(text: str, name: str) -> None:
    """json.loads reads NaN and the infinities; a RUN or DONE must not carry them (a state
    with one is not JSON, a due time or duration that is one compares false with any time):
    an error naming the number, on the fast path and the fallback alike."""
    with pytest.raises(ValueError, match=f"^{name} is not a finite number"):
        parse(text)


@pytest.mark.parametrize("text", [
    "1.7976931348623157e308", "-1.7976931348623157e308", "1e-400", "[0.25, 1E2, -0.0]",
    "1" + "0" * 400,  # an int: Python's ints have no limit, as json.loads reads them
])
def test_parse_takes_every_finite_number(text: str) -> None:
    """The largest and smallest floats, an underflow (0.0, finite), and a huge int: as
    json.loads reads them."""
    import json

    assert parse(text) == json.loads(text)


def test_parse_of_absurd_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises((ValueError, RecursionError)):
        parse("[" * 100_000)


@pytest.mark.timeout(10)
def test_one_whole_message_per_read_and_the_end_after_it() -> None:
    """The common case (each read brings exactly one message) on both sides, then the end of
    the connection after the last message."""
    a, b = _pair()
    b.settimeout(5)
    try:
        agent, worker = Reader(a), BlockingReader(b)
        for i in range(3):
            a.sendall(pack(RUN, b'{"run": "r%d"}' % i))
            assert worker.recv() == (RUN, b'{"run": "r%d"}' % i)
            b.sendall(pack(DONE, b"d" * i))
            got: list[tuple[int, bytes]] = []
            while not got:
                got = agent.read()
            assert got == [(DONE, b"d" * i)]
        assert agent.read() == []  # nothing there: nothing, no end
        b.sendall(pack(DONE, b"last"))
        b.close()
        got = []
        while not got:
            got = agent.read()
        assert got == [(DONE, b"last")]
        with pytest.raises(LinkClosed):
            agent.read()
    finally:
        a.close()
        b.close()
