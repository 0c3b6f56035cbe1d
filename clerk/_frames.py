"""Multipart send and receive on the hot path, without pyzmq's per-call Python overhead.

Rules:

* The same semantics as ``Socket.send_multipart`` / ``recv_multipart`` with ``copy=True``:
  frames go out one by one with ``SNDMORE`` on all but the last, and ZeroMQ delivers a
  multipart message atomically (once its first frame is accepted or received, the others
  are too), so ``zmq.Again`` can only come from the first frame. Errors are pyzmq's own
  (``zmq.Again``, ``zmq.ZMQError``).
* Flags are plain ints, computed once, and the calls go to the backend socket's ``send`` /
  ``recv`` / ``get`` directly: pyzmq's wrappers combine its ``IntFlag`` enums in Python for
  every frame (``SNDMORE | flags``) and look the ``RCVMORE`` option up by enum per frame,
  which cost more than the send itself (``tools/bench_codec.py`` prints both: ~12 µs against
  ~6 µs for a 3-frame send and receive). A receive reads each frame's ``more`` flag from the
  frame itself rather than the socket's ``RCVMORE`` (see :func:`recv_frames`).
* A drain asks :func:`readable` before each receive but the first (which the poll said is
  there) instead of ending on a raised ``zmq.Again``: pyzmq builds that exception with its
  message text, ~6x the cost of asking the socket (``ZMQ_EVENTS``; both check the socket's
  command mailbox with the same two system calls), and every drain of every loop turn ended
  on one.
* :func:`wait_readable` waits a fraction of a millisecond (ZeroMQ's poll counts whole ms) on
  the loop's sockets and descriptors with select(2): a ZeroMQ socket through its ``ZMQ_FD``,
  which signals any change of the socket's state once its pending commands were processed.
  A poll that found nothing just did (``zmq_poll`` reads every socket's ``ZMQ_EVENTS``), so a
  message that arrives after it ends the wait; a spurious end costs the caller one more turn.
  Per-hop timestamps (tools/bench_hops.py) showed the blind sleep it replaces holding a
  RESULT on ~9 % of a manager's runs at 50 runs/s (median 358 µs). A descriptor numbered
  ``SELECT_FD_LIMIT`` or higher (a process with very many sockets) cannot be selected on:
  then it sleeps, as before.
* :func:`fine_timer_slack` asks Linux to end this thread's timed waits within 1 ns of their
  end rather than its default 50 µs timer slack: the agent's loop waits the last fraction
  of a millisecond before a due run in :func:`wait_readable`, and with the default slack a
  0.5 ms ``select`` overshot by a median ~75 µs (~30 µs with 1 ns, this VM). Only timeouts
  move: a wait that traffic ends wakes as soon either way.
* Only for sockets of the loop that owns them (one loop, one poller per process); nothing
  here is thread-safe, like the sockets themselves.
"""

from __future__ import annotations

import ctypes
import select
import time
from collections.abc import Iterable, Sequence

import zmq
from zmq.backend import Socket as _Backend

__all__ = ["NOBLOCK", "PR_SET_TIMERSLACK", "SELECT_FD_LIMIT", "fine_timer_slack", "poll_fd",
           "readable", "recv_frames", "send_frames", "wait_readable"]

NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_FD = int(zmq.FD)
#: select(2)'s limit (FD_SETSIZE): descriptors from here up cannot be waited on with it.
SELECT_FD_LIMIT = 1024
#: prctl(2) option: the calling thread's timer slack, in ns (Linux; default 50 µs).
PR_SET_TIMERSLACK = 29
_send = _Backend.send
_recv = _Backend.recv
_get = _Backend.get


def send_frames(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """``sock.send_multipart(frames, flags)`` (``flags``: 0 or :data:`NOBLOCK`)."""
    more = flags | _SNDMORE
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, more if i < last else flags)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list[bytes]:
    """``sock.recv_multipart(flags)``, frames as ``bytes``. Each frame is received as a
    ``zmq.Frame`` whose ``more`` (``zmq_msg_more``, read from the message) says whether
    another follows, rather than asking the socket (``ZMQ_RCVMORE``, a ``getsockopt`` per
    frame): a 4-frame mailbox message 3.9 -> 2.8 µs back to back, 33-40 -> 29-34 µs as the
    loop's first receive after a wake-up (tools/bench_codec.py's kind of loop, paced)."""
    frame = _recv(sock, flags, False)
    parts = [frame.bytes]
    while frame.more:
        frame = _recv(sock, flags, False)
        parts.append(frame.bytes)
    return parts


def readable(sock: zmq.Socket) -> bool:
    """May a message be received from ``sock`` now without blocking (``ZMQ_EVENTS``)?"""
    events: int = _get(sock, _EVENTS)  # type: ignore[assignment]  # an int option
    return bool(events & _POLLIN)


def poll_fd(item: object) -> int:
    """The file descriptor to wait on for a poller item: a ZeroMQ socket's ``ZMQ_FD`` (it
    signals a change of the socket's state; ``ZMQ_EVENTS`` says which), a plain descriptor as
    it is, or an object's ``fileno()``."""
    if isinstance(item, zmq.Socket):
        fd: int = _get(item, _FD)  # type: ignore[assignment]  # an int option
        return fd
    if isinstance(item, int):
        return item
    return int(item.fileno())  # type: ignore[attr-defined]


def wait_readable(items: Iterable[object], seconds: float) -> bool:
    """Wait up to ``seconds`` for one of ``items`` (ZeroMQ sockets, descriptors, objects with
    ``fileno()``: a poller's) to signal; True if one did (or a descriptor went bad: the next
    poll tells), False when the time ran out. See the module docstring."""
    fds: list[int] = []
    for item in items:
        fd = poll_fd(item)
        if fd >= SELECT_FD_LIMIT:
            time.sleep(seconds)
            return False
        fds.append(fd)
    try:
        ready, _, _ = select.select(fds, (), (), seconds)
    except (OSError, ValueError):
        return True
    return bool(ready)


def fine_timer_slack() -> bool:
    """Set the calling thread's timer slack to 1 ns (see the module docstring); True if Linux
    took it. Best effort: elsewhere (or without prctl) nothing changes."""
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
