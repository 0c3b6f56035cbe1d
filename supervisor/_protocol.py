"""The operators' control socket: where it lives, who may use it, and what travels on it.

Rules:

* One Unix stream socket per running tree. Its path is ``control = "..."`` in the tree
  file, or ``--control PATH``, or by default ``$XDG_RUNTIME_DIR/supervisor.sock``; when
  ``XDG_RUNTIME_DIR`` is unset, ``/tmp/supervisor-<uid>/supervisor.sock`` in a directory
  of mode 0700 that must belong to us (:func:`default_control_path` says which).
* Owner only, checked on both sides: the server creates the socket with mode 0600 and
  answers only a peer whose uid (``SO_PEERCRED``) is its own; the client refuses a path
  that is not a socket, belongs to another user, or has any group/other permission bit.
* One request per connection: a JSON object on one line (``{"v": 1, "op": ..., "id": ...}``),
  one JSON line back (``{"v": 1, "ok": true, "result": ...}`` or ``{"v": 1, "ok": false,
  "kind": ..., "error": "message"}``), then the server closes. No pickle from a socket:
  JSON only. Lines are capped at :data:`MAX_LINE` bytes; anything else is answered with a
  ``bad_request`` error, never raised out of the server.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from typing import Any

__all__ = [
    "MAX_LINE",
    "VERSION",
    "check_socket_path",
    "decode",
    "default_control_path",
    "encode",
    "peer_uid",
    "read_line",
]

VERSION = 1

# The largest request or answer: a status of a thousand children is ~300 KiB of JSON.
MAX_LINE = 4 * 1024 * 1024


def default_control_path() -> tuple[str, str]:
    """The default socket path and a sentence saying where it comes from."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "supervisor.sock"), "$XDG_RUNTIME_DIR/supervisor.sock"
    path = os.path.join(f"/tmp/supervisor-{os.geteuid()}", "supervisor.sock")
    return path, f"{path} (XDG_RUNTIME_DIR is unset)"


def check_socket_path(path: str) -> str | None:
    """Why ``path`` is not a control socket we may trust (``None``: it is)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path}: no such socket (is the supervisor running? see --control)"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path}: not a socket"
    if st.st_uid != os.geteuid():
        return f"{path}: belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}); refused"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return f"{path}: mode {mode:04o} lets other users in (expected 0600); refused"
    return None


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, **obj}, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line; ``ValueError`` for anything but a JSON object of our version."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if obj.get("v") != VERSION:
        raise ValueError(f"protocol version {obj.get('v')!r}, expected {VERSION}")
    return obj


def read_line(sock: socket.socket) -> bytes:
    """Read up to and including the first newline; ``ValueError`` past :data:`MAX_LINE`
    or on EOF before it."""
    buf = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed before a full line")
        buf += chunk
        end = buf.find(b"\n")
        if end >= 0:
            return bytes(buf[:end])
        if len(buf) > MAX_LINE:
            raise ValueError(f"line longer than {MAX_LINE} bytes")
