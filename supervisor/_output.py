"""Children's output in files, written and rotated by the supervisor (never by the child).

Rules:

* A child whose spec names ``stdout``/``stderr`` files (or whose supervisor has a ``logs``
  directory) gets pipes instead of the supervisor's own output. One :class:`OutputPump`
  thread per supervisor process reads every such pipe and appends what it reads to the
  file. It is a thread of its own, not the supervisor's loop, because the loop blocks
  while it terminates a child (OTP semantics): a child that writes while it shuts down
  must never stall on a full pipe waiting for the loop.
* Rotation is by size (:class:`RotatingFile`): a write that would take the file past
  ``max_bytes`` is cut after the last complete line that fits, the file is renamed
  ``<file>.1`` (``.1`` becomes ``.2`` ... up to ``backups``; the oldest is deleted), and
  the rest goes to a fresh file. A line longer than ``max_bytes`` is split. With
  ``backups = 0`` the file is truncated instead. So no file ever exceeds ``max_bytes``.
* stdout and stderr sent to the same file share one pipe, so their order is kept.
* Files are opened on the supervisor's side of a restart: a restarted child appends to
  the same file. Each pipe is read until EOF (the child and everything that inherited
  the pipe are gone), then closed; a file is closed when the pump stops.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
import time
from dataclasses import dataclass

__all__ = ["DEFAULT_BACKUPS", "DEFAULT_MAX_BYTES", "OutputPump", "RotatingFile"]

log = logging.getLogger("supervisor")

# supervisord's defaults are 50 MB x 10; a supervised worker's output is rarely worth more
# than a few MB of history, and 10 MiB x 5 keeps the worst case per stream at 60 MiB.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

# One read per wake-up: the size of a Linux pipe buffer, so a full pipe drains in one go.
_READ_SIZE = 65536

# How long stop() waits for pipes still open after the children died (an escaped
# grandchild may hold one); the children are gone by then, so this only bounds teardown.
_DRAIN_TIMEOUT = 1.0


class RotatingFile:
    """An append-only file rotated by size (see the module docstring)."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating as often as needed so no file exceeds ``max_bytes``."""
        while data:
            room = self.max_bytes - self.size
            if len(data) <= room:
                self._append(data)
                return
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1
            if cut == 0 and self.size == 0:
                cut = room  # a line longer than a whole file: split it
            if cut:
                self._append(data[:cut])
                data = data[cut:]
            self.rotate()

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n

    def rotate(self) -> None:
        """Shift ``file.N-1`` to ``file.N`` ..., ``file`` to ``file.1``; start empty."""
        os.close(self._fd)
        if self.backups > 0:
            for n in range(self.backups - 1, 0, -1):
                older = f"{self.path}.{n}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{n + 1}")
            os.replace(self.path, f"{self.path}.1")
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
        self._fd = os.open(self.path, flags, 0o644)
        self.size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class Target:
    """Where one stream goes: a file and its rotation settings."""

    path: str
    max_bytes: int
    backups: int


class OutputPump:
    """The thread that copies children's pipes into their rotating files."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._new: list[tuple[int, Target]] = []
        self._files: dict[str, RotatingFile] = {}
        self._open_pipes = 0
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"supervisor-output:{name}", daemon=True
        )
        self._thread.start()

    def open(self, target: Target) -> RotatingFile:
        """Open (or reuse) the file now, from the caller's thread, so a bad path is a
        start error of the child rather than a silent loss of its output."""
        with self._lock:
            rf = self._files.get(target.path)
            if rf is None:
                rf = self._files[target.path] = RotatingFile(
                    target.path, target.max_bytes, target.backups
                )
            return rf

    def attach(self, read_fd: int, target: Target) -> None:
        """Copy ``read_fd`` (a pipe's read end, now owned by the pump) into the file."""
        self.open(target)
        with self._lock:
            self._new.append((read_fd, target))
        os.write(self._wake_w, b"+")

    def stop(self) -> None:
        """Drain what is left (bounded by ``_DRAIN_TIMEOUT``), close everything, join."""
        with self._lock:
            self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        for rf in self._files.values():
            rf.close()
        for key in list(self._sel.get_map().values()):
            if key.data is not None:
                os.close(key.fd)
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            with self._lock:
                new, self._new = self._new, []
                stopping = self._stopping
            for fd, target in new:
                os.set_blocking(fd, False)
                self._sel.register(fd, selectors.EVENT_READ, target)
                self._open_pipes += 1
            if stopping:
                if self._open_pipes == 0:
                    return
                if deadline is None:
                    deadline = time.monotonic() + _DRAIN_TIMEOUT
                elif time.monotonic() >= deadline:
                    return
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in self._sel.select(timeout):
                if key.data is None:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                self._pump(key.fd, key.data)

    def _pump(self, fd: int, target: Target) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._sel.unregister(fd)
            os.close(fd)
            self._open_pipes -= 1
            return
        try:
            with self._lock:
                rf = self._files[target.path]
            rf.write(data)
        except OSError as exc:  # a full disk must not kill the tree: say so, drop it
            log.warning("%s: cannot write %s: %s", self._name, target.path, exc)
