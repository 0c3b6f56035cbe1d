"""The link between a node's agent and its worker processes: one Unix stream socket each.

Rules:

* The agent listens on ``<0700 directory>/workers`` (a Unix stream socket); each worker connects
  once and says ``ready`` (its ``wid``, pid and supervisor ``child`` id: a worker id takes a
  ready only from its current child, see ``clerk._workerreplies``). The connection *is* the
  worker's identity: what comes in on it is from that worker, and a run goes to a worker by
  writing to its connection.
* A message is a 5-byte header (body length, 4 bytes big-endian; kind, 1 byte) and a JSON body.
  Kinds: ``ready`` and ``done`` (worker -> agent), ``run`` (agent -> worker). ``ready`` is an
  object; ``run`` is an array of :data:`RUN_FIELDS`, in that order (decoding a 12-key object
  was the largest part of a worker's own work per run after the task's; a worker also takes
  the object an earlier agent wrote, see ``clerk._worker``); ``done`` an array of
  :data:`DONE_FIELDS` (a 5-key object took the agent's loop ~4x the array's to decode: once
  per run), or an object with those keys when the ``run`` was an object (an agent of an
  earlier version reads only that). The agent reads both forms (a worker of an earlier
  version, still running under an upgraded agent, writes the object); anything else is
  dropped, saying which form it got, and a ``done`` of that kind fails the worker's run at
  once (clerk._executor).
* A body is strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's ``json``
  reads by default) are an error naming them (:func:`parse`), and so is a number too large
  for a float (``1e400``, which ``json`` reads as ``inf``), so no field of a RUN or DONE, nor
  anything in a state, is a number that is not finite.
* The agent never blocks on a worker for long: it reads only what is there (non-blocking, one
  :class:`Reader` per connection reassembles messages), and writes with a bounded wait
  (``SEND_TIMEOUT_S``); a worker that does not take a run in that time is treated as gone (its
  connection is closed; its exit, seen by the supervisor, fails the run). A run only ever goes
  to an idle worker, which is blocked reading its connection, so a write normally completes at
  once even for a state of ``MAX_STATE_BYTES``.
* The end of a connection (a worker that died, or the agent) is the end of that worker's link:
  the agent stops sending to it; the worker exits.

Why not ZeroMQ: a ZeroMQ IPC message crosses two I/O threads (the sender's and the receiver's)
before it reaches the other process's loop, each a thread wake-up. On the shared 2-core machine
a ROUTER/DEALER round trip between two processes took 236-287 us (median) against 73-80 us for a
Unix socket pair (``/tmp`` measuring script, interleaved, load 5); the worker hop is two of the
four hops of every run.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time
from typing import Any

__all__ = ["DONE", "DONE_FIELDS", "READY", "RUN", "RUN_FIELDS", "SEND_TIMEOUT_S", "BlockingReader",
           "LinkClosed", "Reader", "pack", "parse", "recv_msg", "send_msg"]

READY, RUN, DONE = 1, 2, 3
#: A RUN's body, an array: the run's fields, then its task's (the same for every run of the
#: task: the agent encodes them once per task definition).
#: ``slot_due_ms``, last, is the slot's due time as the manager sent it, what
#: ``current_run().due`` shows; ``due_ms`` is when the run starts on this node's clock (they
#: differ on a node whose clock is off its manager's: clerk._clockskew). A worker also takes
#: the array without it (an agent of an earlier version): then ``due_ms`` is both.
RUN_FIELDS = ("run", "slot", "term", "state", "init", "due_ms", "deadline_ms",
              "task", "target", "node", "timezone", "interval_ms", "slot_due_ms")
#: A DONE's body, an array: the reply to one run.
DONE_FIELDS = ("run", "outcome", "state", "duration_ms", "error")
_HEADER = struct.Struct("!IB")
#: The longest a worker's body may be: a state of MAX_STATE_BYTES (256 KiB) escaped as JSON
#: inside the run's JSON is under 1.5 MiB; anything over this is a broken peer.
MAX_BODY = 8 << 20
#: The longest the agent waits to hand a run to a worker: an idle worker reads at once; one that
#: does not within this is stopped or broken (and the agent's loop must keep heartbeating).
SEND_TIMEOUT_S = 1.0


class LinkClosed(Exception):
    """The other end of a worker link is gone (or sent something that is not a message)."""


def _not_finite(name: str) -> Any:
    """What the decoder does with ``NaN``, ``Infinity`` and ``-Infinity``: refuse them."""
    raise ValueError(f"{name} is not a finite number (not JSON: a field of a RUN or DONE, "
                     f"and a state, hold finite numbers only)")


_MAX_FLOAT = sys.float_info.max


def _finite_float(text: str, _float: type[float] = float) -> float:
    """What the decoder makes of a number with a fraction or an exponent: a float, unless it
    overflows to ``inf`` (``1e400``: ``parse_constant`` never sees it). Called once per such
    number: a typical DONE has one (its duration), ~1,060 more instructions of the ~11,400 of
    its parse (callgrind; no difference in timeit's noise)."""
    value = _float(text)
    if -_MAX_FLOAT <= value <= _MAX_FLOAT:
        return value
    raise ValueError(f"{text[:40]} is not a finite number (over the largest float: a field of "
                     f"a RUN or DONE, and a state, hold finite numbers only)")


_scan = json.JSONDecoder(parse_constant=_not_finite,  # type: ignore[attr-defined]
                         parse_float=_finite_float).scan_once


def parse(text: str) -> Any:
    """``json.loads(text)`` of a message's body, the same value or the same error (a
    ValueError; RecursionError for absurd nesting), without its checks and set-up per call:
    the decoder's C scanner reads the text, and only a text it does not take whole (leading
    or trailing whitespace, an error) goes through ``json.loads`` to be judged. Except that
    ``NaN``, ``Infinity`` and ``-Infinity``, and a number too large for a float, are a
    ValueError naming them (strict JSON)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # it says why
        return json.loads(text, parse_constant=_not_finite, parse_float=_finite_float)
    if end != len(text):
        return json.loads(text, parse_constant=_not_finite, parse_float=_finite_float)
    return value


def pack(kind: int, body: bytes) -> bytes:
    return _HEADER.pack(len(body), kind) + body


def send_msg(sock: socket.socket, kind: int, body: bytes,
             timeout: float = SEND_TIMEOUT_S) -> None:
    """Write one message; on a non-blocking socket, wait for room at most ``timeout`` in all.
    Raises LinkClosed if the peer is gone or too slow."""
    view = memoryview(pack(kind, body))
    deadline = 0.0
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            now = time.monotonic()
            if not deadline:
                deadline = now + timeout
            elif now >= deadline:
                raise LinkClosed(f"the worker took no run for {timeout:.1f} s") from None
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLOUT)
            poller.poll(max(1, int((deadline - now) * 1000)))
            continue
        except OSError as exc:
            raise LinkClosed(str(exc)) from exc
        view = view[sent:]


class Reader:
    """Reassembles the messages of one non-blocking connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def read(self) -> list[tuple[int, bytes]]:
        """Every complete message that has arrived; LinkClosed at the end of the connection
        (after the messages before it were returned by earlier calls)."""
        if not self._buf:  # the usual case: exactly one whole message has arrived
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return []
            except OSError:
                raise LinkClosed("end of the connection") from None
            if not data:
                raise LinkClosed("end of the connection")
            if len(data) >= _HEADER.size:
                size, kind = _HEADER.unpack_from(data)
                if size + _HEADER.size == len(data):
                    return [(kind, data[_HEADER.size:])]
            self._buf += data
            if len(data) < 1 << 16:
                return self._split(False)
        return self._split(self._fill())

    def _fill(self) -> bool:
        """Read what has arrived into the buffer; True at the end of the connection."""
        closed = False
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            self._buf += data
            if len(data) < 1 << 16:
                break
        return closed

    def _split(self, closed: bool) -> list[tuple[int, bytes]]:
        """The complete messages in the buffer (see :meth:`read`)."""
        out = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= _HEADER.size:
            size, kind = _HEADER.unpack_from(buf, pos)
            if size > MAX_BODY:
                raise LinkClosed(f"a message of {size} bytes")
            end = pos + _HEADER.size + size
            if len(buf) < end:
                break
            out.append((kind, bytes(buf[pos + _HEADER.size:end])))
            pos = end
        if pos:
            del buf[:pos]
        if closed and not out:
            raise LinkClosed("end of the connection")
        return out


class BlockingReader:
    """The worker's side: one message at a time from a blocking socket, read in as few
    ``recv`` calls as it arrived in (a run is one write of header and body: one call, where
    reading the header and then the body took two system calls per run)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def recv(self) -> tuple[int, bytes]:
        """The next message; LinkClosed at the end of the connection."""
        buf = self._buf
        if not buf:  # the usual case: one recv brings exactly one whole message
            data = self.sock.recv(1 << 16)
            if len(data) >= _HEADER.size:
                size, kind = _HEADER.unpack_from(data)
                if size + _HEADER.size == len(data):
                    return kind, data[_HEADER.size:]
            elif not data:
                raise LinkClosed("end of the connection")
            buf += data
        while True:
            if len(buf) >= _HEADER.size:
                size, kind = _HEADER.unpack_from(buf, 0)
                if size > MAX_BODY:
                    raise LinkClosed(f"a message of {size} bytes")
                end = _HEADER.size + size
                if len(buf) >= end:
                    body = bytes(buf[_HEADER.size:end])
                    del buf[:end]
                    return kind, body
                want = end - len(buf)
            else:
                want = _HEADER.size - len(buf)
            data = self.sock.recv(max(want, 1 << 16))
            if not data:
                raise LinkClosed("end of the connection")
            buf += data


def recv_msg(sock: socket.socket) -> tuple[int, bytes]:
    """Read one message from a blocking socket (the worker's side); LinkClosed at its end."""
    header = _recv_exact(sock, _HEADER.size)
    size, kind = _HEADER.unpack(header)
    if size > MAX_BODY:
        raise LinkClosed(f"a message of {size} bytes")
    return kind, _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    if n == 0:
        return b""
    data = sock.recv(n)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while True:
        if not data:
            raise LinkClosed("end of the connection")
        if got >= n:
            return b"".join(parts)
        data = sock.recv(n - got)
        parts.append(data)
        got += len(data)
