"""clerk._frames behaves like pyzmq's send_multipart / recv_multipart (real inproc sockets); its
sub-millisecond wait (wait_readable) ends on a readable descriptor, sleeps past select's limit."""

from collections.abc import Iterator

import pytest
import zmq

from clerk._frames import NOBLOCK, readable, recv_frames, send_frames


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.linger = dealer.linger = 0
    router.bind("inproc://test-frames")
    dealer.connect("inproc://test-frames")
    try:
        yield router, dealer
    finally:
        router.close()
        dealer.close()
        ctx.term()


@pytest.mark.timeout(10)
def test_frames_arrive_as_pyzmq_sends_them_and_the_other_way_round(pair):
    router, dealer = pair
    frames = [b"CLERK\x01", b"execute", b'{"x": 1}', b""]
    send_frames(dealer, frames, NOBLOCK)
    got = router.recv_multipart()  # blocking: pyzmq's own receive
    identity, rest = got[0], got[1:]
    assert rest == frames
    router.send_multipart([identity, b"a", b"b"])
    assert router.poll(0) == 0 and dealer.poll(5000) == zmq.POLLIN
    assert recv_frames(dealer, NOBLOCK) == [b"a", b"b"]
    send_frames(dealer, [b"one"])  # a single frame, blocking flags
    assert recv_frames(router)[1:] == [b"one"]


@pytest.mark.timeout(10)
def test_nothing_to_receive_is_again_and_a_full_queue_refuses_the_first_frame(pair):
    router, dealer = pair
    with pytest.raises(zmq.Again):
        recv_frames(router, NOBLOCK)
    lone = zmq.Context.instance().socket(zmq.DEALER)  # connected to nobody: no pipe to send on
    try:
        lone.linger = 0
        with pytest.raises(zmq.Again):
            send_frames(lone, [b"a", b"b"], NOBLOCK)
    finally:
        lone.close()


def test_readable_says_whether_a_receive_would_block() -> None:
    """A drain asks before each receive instead of ending on a raised zmq.Again."""
    ctx = zmq.Context()
    try:
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://readable")
        b.connect("inproc://readable")
        assert not readable(b)
        send_frames(a, [b"x", b"y"])
        assert readable(b)
        assert recv_frames(b, NOBLOCK) == [b"x", b"y"]
        assert not readable(b)
        a.close(0)
        b.close(0)
    finally:
        ctx.term()


def test_a_descriptor_select_cannot_take_makes_the_wait_a_sleep() -> None:
    """select(2) takes descriptors below FD_SETSIZE only: a process with more sockets than
    that waits out its (sub-millisecond) time as the loop did before, without an error."""
    import time

    from clerk._frames import SELECT_FD_LIMIT, wait_readable

    class Far:
        def fileno(self) -> int:
            return SELECT_FD_LIMIT + 5

    t0 = time.perf_counter()
    assert wait_readable([Far()], 0.002) is False
    assert time.perf_counter() - t0 >= 0.0015


def test_a_readable_descriptor_ends_the_wait_at_once() -> None:
    import socket
    import time

    from clerk._frames import poll_fd, wait_readable

    r, w = socket.socketpair()
    try:
        w.send(b"x")
        assert poll_fd(r) == r.fileno() and poll_fd(r.fileno()) == r.fileno()
        t0 = time.perf_counter()
        assert wait_readable([r.fileno()], 5.0) is True
        assert time.perf_counter() - t0 < 1.0
    finally:
        r.close()
        w.close()


@pytest.mark.timeout(10)
def test_a_receive_ends_at_its_messages_last_frame_and_gives_bytes(pair):
    # recv_frames reads each frame's ``more`` from the frame, not the socket's RCVMORE: two
    # queued messages stay apart, and small, empty and large (zero-copy) frames come as bytes.
    router, dealer = pair
    first = [b"", b"x" * 20, b"y" * 200_000, b"z"]
    second = [b"CLERK\x02", b"result", b"{}"]
    send_frames(dealer, first)
    send_frames(dealer, second)
    assert router.poll(5000) == zmq.POLLIN
    a, b = recv_frames(router, NOBLOCK), recv_frames(router, NOBLOCK)
    assert a[1:] == first and b[1:] == second and a[0] == b[0]
    assert all(type(f) is bytes for f in a + b)
    with pytest.raises(zmq.Again):
        recv_frames(router, NOBLOCK)
