"""The data directory's writer thread: the snapshots and the journal of
:mod:`clerk._store` put on disk (appends with one ``fdatasync``, atomic snapshots), and
compaction in a thread of its own.

Split from :mod:`clerk._store`, which mixes :class:`StoreWriter` into
:class:`clerk._store.Store`, states the rules in its docstring, and keeps the directory's
reading at start and the loop's side (pacing, handing rows over, closing). Apart because this
runs off the loop, on the writer's own state; the directory's format and size bounds are here,
where they are written, and :mod:`clerk._store` re-exports them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clerk._durable import replace_durably
from clerk._journal import (
    change_record,
    header_record,
    journal_name,
    journals,
    snapshot_text,
    sync_dir,
    write_all,
)

__all__ = ["COMPACT_MIN_BYTES", "COMPACT_RECORDS", "FORMAT", "JOURNAL_KEY", "MAX_FILE_BYTES",
           "TABLE_FILE", "Rows", "StoreWriter"]

log = logging.getLogger("clerk.store")
Rows = Mapping[str, str | None] | list[tuple[str, str | None]]  # a whole table's rows

#: Every snapshot's format: an older build's, which reads ``node``, ``table`` and ``members``
#: and ignores any other key.
FORMAT = "clerk-task-table/1"
#: The key of a snapshot continued by the journals of its generation and later ones (its
#: value); a snapshot without it has no journal (a graceful stop's, an older build's).
JOURNAL_KEY = "journal"
TABLE_FILE = "tasks.json"
#: The replicated table travels in heartbeats; 8 MiB on disk leaves room for the JSON around
#: a 10,000-task table (~5 MB) and refuses only a runaway one.
MAX_FILE_BYTES = 8 * 1024 * 1024
#: Compaction: when the journal passes this many bytes and the snapshot's size (a read then
#: costs at most the snapshot plus this, or about twice the snapshot), or ``COMPACT_RECORDS``
#: records. Every changed row is appended whole (~3 KB with its run history), so a busy node's
#: journal grows ~1 MB/s at 400 runs/s: at 256 KiB that was ~6 compactions a second, each a
#: thread, a snapshot with two fsyncs, a new journal with two more and an unlink; at 4 MiB one
#: every few seconds (a read at start replays at most ~4 MiB more: tens of milliseconds).
COMPACT_MIN_BYTES = 4 * 1024 * 1024
COMPACT_RECORDS = 10_000


def _row_size(key: str, text: str) -> int:
    return len(key) + len(text) + 4


class StoreWriter:
    """Mixed into :class:`clerk._store.Store` (which provides these attributes and sets them
    up): the methods of the writer thread, and those ``close`` reuses."""

    if TYPE_CHECKING:
        path: Path
        node: str
        file: Path
        _cond: threading.Condition
        _p_full: Rows | None
        _p_changes: dict[str, str | None]
        _p_members: dict[str, str] | None
        _p_set: bool
        _busy: bool
        _closing: bool
        writes: int
        snapshots: int
        bytes_written: int
        syncs: int
        _rows: dict[str, str]
        _rows_bytes: int
        _members: dict[str, str] | None
        _members_written: dict[str, str] | None
        _gen: int
        _jfd: int | None
        _jbytes: int
        _jrecords: int
        _snap_bytes: int
        _must_snapshot: bool
        _plain: bool
        _too_big: bool
        _compactor: threading.Thread | None

    def _writer(self) -> None:
        while True:
            with self._cond:
                while not self._p_set and not self._closing:
                    self._cond.wait()
                if not self._p_set:
                    return
                full, changes, members = self._p_full, self._p_changes, self._p_members
                self._p_full, self._p_changes, self._p_set = None, {}, False
                self._busy = True
            try:
                if self._apply(full, changes, members):
                    self.writes += 1
            except Exception:  # a bug must not kill the writer silently
                log.exception("writing %s failed", self.path)
                self._must_snapshot = True
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _apply(self, full: Rows | None,
               changes: Mapping[str, str | None], members: dict[str, str] | None) -> bool:
        """Bring the in-memory table up to date and put it on disk: an append of
        ``changes``, or a snapshot. True if something was written."""
        rows = self._rows
        if full is not None:
            pairs = full.items() if isinstance(full, Mapping) else full  # (track(): a copy)
            rows = self._rows = {k: t for k, t in pairs if t is not None}
            self._rows_bytes = sum(_row_size(k, t) for k, t in rows.items())
            self._must_snapshot = True
        size = self._rows_bytes
        for key, text in changes.items():
            old = rows.pop(key, None)
            if old is not None:
                size -= _row_size(key, old)
            if text is not None:
                rows[key] = text
                size += _row_size(key, text)
        self._rows_bytes = size
        if members is not None:
            self._members = members
        new_members = self._members != self._members_written
        if full is None and not changes and not new_members:
            return False
        self._plain = False
        if size > MAX_FILE_BYTES:
            if not self._too_big:
                log.error("task table of %d bytes is over the %d-byte limit of %s: not "
                          "written (the previous files stay)", size, MAX_FILE_BYTES, self.file)
            self._too_big = self._must_snapshot = True
            return False
        self._too_big = False
        if self._must_snapshot:
            return self._snapshot_now()
        record = change_record(changes, self._members if new_members else None)
        if len(record) > max(COMPACT_MIN_BYTES, self._snap_bytes) // 2:
            return self._snapshot_now()  # most of the table: a snapshot is as cheap
        if not self._append(record):
            self._must_snapshot = True
            return False
        self._members_written = self._members
        if self._compactor is not None and not self._compactor.is_alive():
            self._compactor = None  # the last compaction is done
        if (self._compactor is None
                and (self._jbytes > max(COMPACT_MIN_BYTES, self._snap_bytes)
                     or self._jrecords >= COMPACT_RECORDS)):
            self._start_compaction()
        return True

    def _snapshot_now(self) -> bool:
        """A snapshot of the next generation, here (the first write, a new table, an error):
        its journal starts empty."""
        self._join_compactor()  # its (older) snapshot must not land after this one
        gen = self._gen + 1
        if not self._write_snapshot(gen, list(self._rows.items()), self._members):
            self._must_snapshot = True
            return False
        self._close_journal()
        self._gen, self._jbytes, self._jrecords = gen, 0, 0
        self._must_snapshot = False
        self._members_written = self._members
        self._remove_journals(gen)
        return True

    def _start_compaction(self) -> None:
        """Start journal ``gen + 1`` (at the next append) and write snapshot ``gen + 1`` of
        the rows as they are now in a thread of its own (module docstring)."""
        gen = self._gen + 1
        self._close_journal()
        self._gen, self._jbytes, self._jrecords = gen, 0, 0
        items = list(self._rows.items())
        members = self._members

        def compact() -> None:
            if self._write_snapshot(gen, items, members):
                self._remove_journals(gen)

        self._compactor = threading.Thread(target=compact, name="clerk-store-compact",
                                           daemon=True)
        self._compactor.start()

    def _join_compactor(self) -> None:
        if self._compactor is not None:
            self._compactor.join()
            self._compactor = None

    def _write_snapshot(self, gen: int | None, items: list[tuple[str, str]],
                        members: dict[str, str] | None) -> bool:
        """Snapshot ``gen`` (None: a plain one, without ``JOURNAL_KEY``), atomically; False
        if not written (logged). Both are ``FORMAT``: an older build reads them."""
        doc: dict[str, Any] = {"format": FORMAT, "node": self.node, "written": time.time()}
        if gen is not None:
            doc[JOURNAL_KEY] = gen
        if members is not None:
            doc["members"] = members
        head = json.dumps(doc, separators=(",", ":"))
        data = f'{head[:-1]},"table":{snapshot_text(items)}}}'.encode()
        if len(data) > MAX_FILE_BYTES:
            log.error("task table of %d bytes is over the %d-byte limit of %s: not written "
                      "(the previous files stay)", len(data), MAX_FILE_BYTES, self.file)
            return False
        try:
            replace_durably(self.file, data,
                            self.file.with_name(f".{TABLE_FILE}.{os.getpid()}.tmp"))
        except OSError as exc:
            log.error("cannot write %s: %s", self.file, exc.strerror)
            return False
        self._snap_bytes = len(data)
        self.snapshots += 1
        self.bytes_written += len(data)
        self.syncs += 2
        return True

    def _append(self, record: bytes) -> bool:
        """Append ``record`` to the current journal (created, with its header, at its first
        record) and ``fdatasync`` it; False (logged) on an error: that journal then takes no
        more records (the next write is a snapshot)."""
        try:
            if self._jfd is None:
                path = self.path / journal_name(self._gen)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
                self._jfd = fd
                head = header_record(self.node, self._gen)
                write_all(fd, head + record)
                os.fdatasync(fd)
                sync_dir(self.path)  # the new file's name is durable too
                self._jbytes, self._jrecords = len(head) + len(record), 1
                self.bytes_written += len(head) + len(record)
                self.syncs += 2
                return True
            write_all(self._jfd, record)
            os.fdatasync(self._jfd)
        except OSError as exc:
            log.error("cannot append to the journal in %s: %s", self.path, exc.strerror)
            self._close_journal()
            return False
        self._jbytes += len(record)
        self._jrecords += 1
        self.bytes_written += len(record)
        self.syncs += 1
        return True

    def _close_journal(self) -> None:
        if self._jfd is not None:
            try:
                os.close(self._jfd)
            except OSError:
                pass
            self._jfd = None

    def _remove_journals(self, below: int | None) -> None:
        """Delete the journals a snapshot superseded (generation < ``below``; None: all)."""
        for gen, path in journals(self.path):
            if below is None or gen < below:
                try:
                    path.unlink()
                except OSError:
                    pass
