"""Length-prefixed pickled messages between a supervisor's API and its loop, and between a
parent supervisor and a nested one (socket pairs between our own processes only; the
operators' control socket speaks JSON, see ``_control.py``)."""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

__all__ = ["recv_msg", "send_msg"]

_HEADER = struct.Struct("!I")


def send_msg(sock: socket.socket, obj: object) -> None:
    """Send one pickled, length-prefixed message."""
    data = pickle.dumps(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> Any:
    """Receive one message; ``None`` when the peer has closed the socket."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    body = _recv_exact(sock, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)
