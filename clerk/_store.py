"""The node's data directory: a durable replica of the task table.

Rules:

* **What it holds.** ``tasks.json``: the task table this node holds (as manager, its own; as a
  follower, the manager's replicated one merged with its own better states), with every row's
  state, lineage, version, last slot and counters; runs in flight are not kept (a run of a
  previous incarnation is unknowable). Beside the table, ``members``: the other live members
  (name -> address) of this node's list at the write; a node restarted from it waits for
  them before it runs alone (:mod:`clerk._joining`, "Restarts"). A file without it (an
  older build's) records none. ``lock``: the pid and name of the node using the
  directory. Nothing else, and nothing secret (the cookie is not in it).
* **Atomic writes.** Temp file in the same directory, ``fsync``, ``rename`` over the old file,
  ``fsync`` of the directory: a crash at any point leaves the old file or the new one, never a
  mix.
* **Coalesced and bounded.** Changes mark the table dirty; it is written at most every
  ``WRITE_INTERVAL`` seconds (so at most 1/WRITE_INTERVAL writes per second, whatever the rate
  of results), less often for big tables (``WRITE_SHARE``), and on a graceful stop. A kill -9
  loses at most the updates since the last write (``WRITE_INTERVAL`` for a few tasks), plus
  the one write in progress. A table over ``MAX_FILE_BYTES`` is not
  written (an error is logged, the previous file stays).
* **Off the loop.** The node's loop hands over a snapshot of the replicated rows' JSON texts,
  already made for replication (it serializes only a leaving manager's own last table); the
  joining of the rows into one text, the write, the fsyncs and the rename happen in one
  writer thread, which takes the
  newest table handed to it (an older one still waiting is dropped: coalesced again). An fsync
  that stalls on a busy disk therefore never delays a heartbeat or a dispatch. ``close()``
  waits for the last table to be on disk.
* **Read at start.** An unreadable or foreign file (not JSON, not our format, another node's
  name) is moved aside to ``tasks.json.<reason>-<time>`` with a warning naming both paths:
  never deleted, never fatal; the node starts without durable rows.
* **One node per directory.** The directory is locked (``fcntl.flock`` on ``lock``) for the
  node's life; a second node on it is refused with an error naming the directory and the
  holder. The lock dies with the process, so a kill -9 never leaves a stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clerk._durable import replace_durably
from clerk._errors import ConfigError

__all__ = ["FORMAT", "MAX_FILE_BYTES", "WRITE_INTERVAL", "DataDirInUse", "Store",
           "default_data_dir", "check_free"]

log = logging.getLogger("clerk.store")

FORMAT = "clerk-task-table/1"
TABLE_FILE = "tasks.json"
LOCK_FILE = "lock"
#: Seconds between two writes: at most 20 writes/s, each an fsync (~1-10 ms on a disk). Tasks
#: of a 200 ms interval still reach the disk at every run, and 1000 tasks' results coalesce.
WRITE_INTERVAL = 0.05
#: The disk may take at most ~1/WRITE_SHARE of the loop: after a write whose preparation
#: (building and serializing the table) cost ``c`` seconds, the next waits at least
#: ``c * (WRITE_SHARE - 1)``. A few tasks cost well under a millisecond (20 writes/s); 1000
#: tasks cost tens of ms, so their writes coalesce over a few hundred ms instead of taking
#: most of the loop (as replication does, see clerk._runner.REPLICATE_SHARE).
WRITE_SHARE = 10
#: The replicated table travels in one heartbeat of at most 1 MiB; 8 MiB on disk leaves room
#: for the JSON around it and refuses only a table that could never have been replicated.
MAX_FILE_BYTES = 8 * 1024 * 1024


class DataDirInUse(ConfigError):
    """Another node holds the data directory."""


def default_data_dir(name: str) -> Path:
    """``$XDG_STATE_HOME/clerk/<node name>`` (``~/.local/state/clerk/<node name>``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return Path(base) / "clerk" / name


def _holder(path: Path) -> str:
    try:
        text = (path / LOCK_FILE).read_text().strip()
    except OSError:
        return "another node"
    return text or "another node"


def _lock(path: Path, source: str) -> int:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(source, "data_dir", path,
                          f"cannot be used: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirInUse(source, "data_dir", path,
                               f"is in use by {_holder(path)}: two nodes cannot share a "
                               "data directory (give each node its own)") from None
        raise
    return fd


def check_free(path: Path, source: str = "") -> None:
    """Pre-flight: raise :class:`DataDirInUse` (or ConfigError) if ``path`` cannot be ours."""
    os.close(_lock(path, source))


class Store:
    """The data directory of one node (see the module docstring). ``open()`` locks it and
    returns the table read from it (None if there is none, or it was moved aside)."""

    def __init__(self, path: Path | str, node: str, source: str = "") -> None:
        self.path = Path(path)
        self.node = node
        self.source = source
        self.file = self.path / TABLE_FILE
        self._fd: int | None = None
        self._dirty = False
        self._next_write = 0.0  # monotonic
        self.writes = 0
        self.moved_aside: list[Path] = []
        self._cond = threading.Condition()
        #: The newest table not yet written: its bytes, or a function that makes them.
        self._pending: bytes | Callable[[], bytes | None] | None = None
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        #: The other live members (name -> address) to record with each write, asked on the
        #: loop's thread at each write; None: none recorded.
        self.members: Callable[[], dict[str, str]] | None = None
        #: What the file read at start recorded (name -> address).
        self.recorded: dict[str, str] = {}

    # --- start ----------------------------------------------------------------------------------

    def open(self) -> dict[str, Any] | None:
        self._fd = _lock(self.path, self.source)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"node {self.node} (pid {os.getpid()})\n".encode(), 0)
        return self.read()

    def read(self) -> dict[str, Any] | None:
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._move_aside("unreadable", f"cannot read it: {exc.strerror}")
            return None
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self._move_aside("unreadable", f"not JSON: {exc}")
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            self._move_aside("foreign", f"not a Clerk task table (format {FORMAT!r})")
            return None
        if doc.get("node") != self.node:
            self._move_aside("foreign", f"written by node {doc.get('node')!r}, not "
                                        f"{self.node!r}")
            return None
        table = doc.get("table")
        if not isinstance(table, dict):
            self._move_aside("unreadable", "no table in it")
            return None
        members = doc.get("members")
        if isinstance(members, dict):
            self.recorded = {k: v for k, v in members.items()
                             if isinstance(k, str) and isinstance(v, str) and k != self.node}
        return table

    def _move_aside(self, reason: str, why: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.file.with_name(f"{TABLE_FILE}.{reason}-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.file.with_name(f"{TABLE_FILE}.{reason}-{stamp}.{n}")
        try:
            os.replace(self.file, target)
        except OSError as exc:
            log.warning("data file %s is %s (%s) and could not be moved aside: %s; starting "
                        "without durable task states", self.file, reason, why, exc.strerror)
            return
        self.moved_aside.append(target)
        log.warning("data file %s is %s (%s): moved aside to %s; starting without durable "
                    "task states", self.file, reason, why, target)

    # --- writing --------------------------------------------------------------------------------

    def mark(self) -> None:
        """The table changed: write it at the next opportunity (coalesced)."""
        self._dirty = True

    def next_deadline(self) -> float:
        """Monotonic time of the next write; ``inf`` if nothing is pending."""
        return max(self._next_write, 0.0) if self._dirty else float("inf")

    def defer(self, until: float) -> None:
        """Keep the change pending, but write it no earlier than ``until`` (monotonic)."""
        self._next_write = max(self._next_write, until)

    def skip(self) -> None:
        """Nothing worth writing after all (the change is already on disk)."""
        self._dirty = False

    def due(self, now: float) -> bool:
        return self._dirty and now >= self._next_write

    def write(self, table: dict[str, Any] | str | Callable[[], str], now: float,
              spent: float = 0.0) -> bool:
        """Hand ``table`` (a dict, its JSON text, or a function that makes that text: called
        by the writer thread, so a big table is joined off the loop) to the writer thread.
        False (and logged) if it cannot be written at all (not JSON, over the size bound).
        ``spent``: seconds the caller took to build it (counted in the pacing, see
        ``WRITE_SHARE``)."""
        began = time.perf_counter()
        self._dirty = False
        try:
            return self._hand_over(table, self.members() if self.members is not None else None)
        finally:
            cost = spent + time.perf_counter() - began
            self._next_write = now + max(WRITE_INTERVAL, cost * (WRITE_SHARE - 1))

    def _frame(self, text: str, members: dict[str, str] | None = None) -> bytes | None:
        """The file's bytes around the table's text; None (logged) if over the size bound."""
        doc: dict[str, Any] = {"format": FORMAT, "node": self.node, "written": time.time()}
        if members is not None:
            doc["members"] = members
        head = json.dumps(doc, separators=(",", ":"))
        data = f'{head[:-1]},"table":{text}}}'.encode()
        if len(data) > MAX_FILE_BYTES:
            log.error("task table of %d bytes is over the %d-byte limit of %s: not written "
                      "(the previous file stays)", len(data), MAX_FILE_BYTES, self.file)
            return None
        return data

    def _hand_over(self, table: dict[str, Any] | str | Callable[[], str],
                   members: dict[str, str] | None = None) -> bool:
        pending: bytes | Callable[[], bytes | None]
        if callable(table):
            source = table
            pending = lambda: self._frame(source(), members)  # noqa: E731
        else:
            try:
                text = table if isinstance(table, str) else json.dumps(
                    table, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                log.error("cannot write %s: %s", self.file, exc)
                return False
            data = self._frame(text, members)
            if data is None:
                return False
            pending = data
        with self._cond:
            self._pending = pending
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name="clerk-store",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every table handed over is on disk (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)

    def _writer(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
                pending, self._pending = self._pending, None
                self._busy = True
            try:
                data = pending() if callable(pending) else pending
                if data is not None and self._write_file(data):
                    self.writes += 1
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write_file(self, data: bytes) -> bool:
        """Temp file, fsync, rename, fsync of the directory."""
        try:
            replace_durably(self.file, data,
                            self.file.with_name(f".{TABLE_FILE}.{os.getpid()}.tmp"))
        except OSError as exc:
            log.error("cannot write %s: %s", self.file, exc.strerror)
            return False
        return True

    def close(self) -> None:
        """Write what is pending, stop the writer, release the directory."""
        self.flush()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
