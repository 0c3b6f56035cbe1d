"""The client side of the control socket: :class:`ControlClient`, and reading output files.

::

    from supervisor import ControlClient

    ctl = ControlClient()                     # or ControlClient("/run/app/supervisor.sock")
    for row in ctl.status():                  # one dict per child, nested ones as "pool/w1"
        print(row["id"], row["state"], row["pid"], row["restarts"])
    ctl.restart("pool/worker-1")
    ctl.reload()                              # {"started": [...], "stopped": [...], ...}

Every failure is a :class:`ControlError` whose ``kind`` says what went wrong
(``unreachable``, ``refused``, ``not_found``, ``config``, ``start_failed``, ``failed``,
...) and whose message is ready to show to a person. See :mod:`supervisor._protocol`
for the socket's rules: the client refuses a socket that others could use.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from supervisor._errors import SupervisorError
from supervisor._protocol import (
    check_socket_path,
    decode,
    default_control_path,
    encode,
    read_line,
)

__all__ = ["ControlClient", "ControlError", "follow", "last_lines"]

# How often ``tail -f`` looks for new output and for a rotation: fast enough for a person
# watching, slow enough to cost nothing (one fstat and one stat per poll).
FOLLOW_INTERVAL = 0.1


class ControlError(SupervisorError):
    """A control request failed; ``kind`` classifies it (see :mod:`supervisor._client`)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class ControlClient:
    """Talks to a running tree's control socket (one connection per request).

    Args:
        path: the socket (default: :func:`supervisor._protocol.default_control_path`).
        timeout: seconds to wait for an answer (``None``: as long as the operation takes,
            e.g. a child's whole ``shutdown``).
    """

    def __init__(self, path: str | None = None, timeout: float | None = None) -> None:
        self.path = path if path is not None else default_control_path()[0]
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ControlClient({self.path!r})"

    def request(self, op: str, child_id: str | None = None) -> Any:
        """Send one request; return its ``result`` or raise :class:`ControlError`."""
        problem = check_socket_path(self.path)
        if problem is not None:
            kind = "unreachable" if "no such socket" in problem else "refused"
            raise ControlError(kind, problem)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as exc:
                raise ControlError(
                    "unreachable", f"{self.path}: cannot connect ({exc.strerror or exc})"
                ) from None
            message: dict[str, Any] = {"op": op}
            if child_id is not None:
                message["id"] = child_id
            try:
                sock.sendall(encode(message))
                answer = decode(read_line(sock))
            except (OSError, ValueError) as exc:
                raise ControlError("unreachable", f"{self.path}: no answer ({exc})") from None
        finally:
            sock.close()
        if not answer.get("ok"):
            raise ControlError(str(answer.get("kind", "failed")), str(answer.get("error")))
        return answer.get("result")

    def status(self) -> list[dict[str, Any]]:
        """One row per child, depth first (``id``, ``type``, ``restart``, ``pid``,
        ``state``, ``uptime``, ``restarts``, ``last_exit``, ``stdout``, ``stderr``)."""
        rows: list[dict[str, Any]] = self.request("status")
        return rows

    def child(self, child_id: str) -> dict[str, Any]:
        """The status row of one child; ``ControlError("not_found")`` naming the known."""
        rows = self.status()
        for row in rows:
            if row["id"] == child_id:
                return row
        known = ", ".join(r["id"] for r in rows) or "none"
        raise ControlError("not_found", f"no child {child_id!r} (known: {known})")

    def start(self, child_id: str) -> dict[str, Any]:
        """Start a stopped child (a no-op, ``already: True``, if it runs)."""
        result: dict[str, Any] = self.request("start", child_id)
        return result

    def stop(self, child_id: str) -> dict[str, Any]:
        """Stop a child with its ``shutdown``; it stays stopped until :meth:`start`."""
        result: dict[str, Any] = self.request("stop", child_id)
        return result

    def restart(self, child_id: str) -> dict[str, Any]:
        """Stop then start one child; its siblings are not touched."""
        result: dict[str, Any] = self.request("restart", child_id)
        return result

    def stop_all(self) -> list[str]:
        """Stop every top-level child, right to left; the supervisor keeps running."""
        result: list[str] = self.request("stop-all")
        return result

    def reload(self) -> dict[str, list[str]]:
        """Re-read the tree file and apply the difference (see :mod:`supervisor`)."""
        result: dict[str, list[str]] = self.request("reload")
        return result


def last_lines(path: str, count: int) -> tuple[bytes, int]:
    """The last ``count`` lines of the output file ``path`` and the offset in it they end at
    (read backwards in blocks, not whole files). Where the file holds fewer lines, as right
    after a rotation, the rest come from the rotated files before it (``path.1``,
    ``path.2`` ...: :class:`supervisor._output.RotatingFile`)."""
    for _ in range(4):
        got = _last_lines(path, count, check=True)
        if got is not None:
            return got
    # Rotated at every try (a child writing that fast): what the file itself holds.
    return _last_lines(path, count, check=False) or (b"", 0)


def _last_lines(path: str, count: int, check: bool) -> tuple[bytes, int] | None:
    """:func:`last_lines` once; None if ``path`` was rotated while it read (with ``check``):
    its ``.1`` may then be the file it started with, whose lines it would give twice."""
    with open(path, "rb") as current:
        end = current.seek(0, os.SEEK_END)
        if count <= 0:
            return b"", end
        data = _read_back(current, end, b"", count)
        n = 1
        while data.count(b"\n") <= count and check:
            try:
                older = open(f"{path}.{n}", "rb")  # (closed by the with below)
            except FileNotFoundError:
                break  # no more (or a rotation under way: fewer lines, none twice)
            with older:
                try:
                    same = os.stat(path).st_ino == os.fstat(current.fileno()).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    return None
                data = _read_back(older, older.seek(0, os.SEEK_END), data, count)
            n += 1
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-count:]), end


def _read_back(f: Any, pos: int, data: bytes, count: int) -> bytes:
    """``data`` with what comes before it in ``f`` (up to ``pos``) put in front, in blocks
    from the end, until it holds more than ``count`` line ends or the file's start."""
    while pos > 0 and data.count(b"\n") <= count:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    return data


def follow(
    path: str,
    *,
    offset: int | None = None,
    stop: Callable[[], bool] = lambda: False,
    interval: float = FOLLOW_INTERVAL,
) -> Iterator[bytes]:
    """Yield what is appended to ``path``, across rotations (like ``tail -F``): when the
    file is renamed away, what is left in the old one is read, then the new one from its
    start. Starts at ``offset`` (default: the end). Ends when ``stop()`` is true."""
    f = _open_when_there(path, stop, interval)
    if f is None:
        return
    try:
        size = os.fstat(f.fileno()).st_size
        f.seek(size if offset is None or offset > size else offset)
        while not stop():
            chunk = f.read(65536)
            if chunk:
                yield chunk
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            here = os.fstat(f.fileno())
            if st is not None and (st.st_ino != here.st_ino or st.st_size < f.tell()):
                rest = f.read()
                if rest:
                    yield rest
                f.close()
                if st.st_ino != here.st_ino:  # rotated more than once since the last look?
                    yield from _skipped(path, here.st_ino)
                f = open(path, "rb")  # noqa: SIM115 - closed in finally or on rotation
                continue
            time.sleep(interval)
    finally:
        f.close()


def _skipped(path: str, old_ino: int) -> Iterator[bytes]:
    """The whole of each rotated file newer than the one we were reading (``old_ino``),
    oldest first: what a follower misses when the file rotated twice between two looks."""
    newer = []
    for n in range(1, 1000):
        try:
            ino = os.stat(f"{path}.{n}").st_ino
        except FileNotFoundError:
            return  # ours was deleted already: nothing sure to add
        if ino == old_ino:
            break
        newer.append(f"{path}.{n}")
    for name in reversed(newer):
        try:
            with open(name, "rb") as g:
                yield g.read()
        except FileNotFoundError:
            pass


def _open_when_there(path: str, stop: Callable[[], bool], interval: float) -> Any:
    while not stop():
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            time.sleep(interval)
    return None
