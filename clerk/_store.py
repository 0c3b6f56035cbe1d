"""The node's data directory: a durable replica of the task table.

Rules:

* **What it holds.** ``tasks.json``: a snapshot of the task table this node holds (as
  manager, its own; as a follower, the manager's replicated one merged with its own better
  states), with every row's state, lineage, version, last slot and counters; runs in flight
  are not kept (a run of a previous incarnation is unknowable). Beside the table, ``members``:
  the other live members (name -> address) of this node's list at the write (a change of the
  list alone is a reason to write: clerk._replication, ``persist``); a node restarted
  from it waits for them before it runs alone (:mod:`clerk._joining`, "Restarts"). A file
  without it (an older build's) records none. ``tasks.<gen>.journal``: the rows changed
  since that snapshot (:mod:`clerk._journal`). ``lock``: the pid and name of the node using
  the directory. Nothing else, and nothing secret (the cookie is not in it).
* **Snapshot plus journal.** A write appends only the rows changed since the last write (the
  row texts the loop already made for replication, and the member list when it changed) to
  the journal, with one ``fdatasync``: its cost is O(changes), whatever the table's size. A
  record is framed (length, checksum): a torn tail (a crash mid-append) is dropped on read,
  never misread. Reading is the snapshot, then its journals' intact records in order.
* **Snapshots are atomic.** Temp file in the same directory, ``fsync``, ``rename`` over the
  old file, ``fsync`` of the directory: a crash at any point leaves the old file or the new
  one, never a mix. A snapshot is written at the first write of a node's life (the journal
  then starts from it), when the table handed over is a new one (a takeover, a new log), after
  an error, and by **compaction**: when the journal outgrows ``COMPACT_MIN_BYTES`` and the
  snapshot (or ``COMPACT_RECORDS`` records), the writer starts journal ``gen + 1`` and a
  second thread writes snapshot ``gen + 1`` (the rows as of the switch), then deletes the
  journals before it. Snapshot ``g`` names its generation, and a read replays every journal
  of generation ``>= g``: a crash before the rename reads the old snapshot, the old journal
  and the new one; after it, the new snapshot and the new journal (the older journals are
  superseded and deleted at the next snapshot). Appends go on meanwhile: a compaction never
  widens the loss window.
* **Formats.** Every snapshot is ``clerk-task-table/1`` (``FORMAT``), as an older build
  (before the journal) reads and writes it; one continued by journals names their first
  generation in one more key, ``"journal": <gen>`` (``JOURNAL_KEY``), which an older build
  ignores. Without the key (a graceful stop folds the journal in and deletes it; an older
  build's file) the snapshot is the whole table and a journal beside it is superseded (an
  older build wrote the snapshot later): not replayed, deleted at the next snapshot. So an
  older build's directory upgrades in place, and a **downgrade** after a kill -9 or a host
  crash keeps the states: the older build reads the table as of the last snapshot, missing
  only the journal's changes since (compacted at ``COMPACT_MIN_BYTES`` and the snapshot);
  such a row is an older copy, less history by the lineage rules (a member's newer copy wins;
  a node alone runs on from it, as from what any kill -9 leaves). Its own snapshot has no
  key: a later upgrade ignores the stale journals. (An unreleased build of this branch wrote
  ``clerk-task-table/2``; none is in the field, and it is moved aside as foreign.)
* **Coalesced and bounded.** Changes mark the table dirty; it is written at most every
  ``WRITE_INTERVAL`` seconds (so at most 1/WRITE_INTERVAL writes per second, whatever the rate
  of results), less often if handing it over took the loop long (``WRITE_SHARE``: a whole
  table, rare now), and on a graceful stop. A kill -9 loses at most the updates since the
  last write (``WRITE_INTERVAL``), plus the one write in progress. A table over
  ``MAX_FILE_BYTES`` is not written (an error is logged, the previous files stay).
* **Off the loop.** The node's loop hands over the row texts already made for replication:
  only the changed ones (``write_changes``: the table log's and the replica's change sets),
  or a snapshot of the rows (``write_rows``) when they are a new table; it serializes only a
  leaving manager's own last table. The framing, the joining, the writes and the fsyncs
  happen in one writer thread (and compaction's snapshot in a second one), which takes
  everything handed over since its last write at once (coalesced again). An fsync that stalls
  on a busy disk therefore never delays a heartbeat or a dispatch. ``close()`` waits for the
  last table to be on disk.
* **Read at start.** An unreadable or foreign snapshot (not JSON, not our format, another
  node's name) is moved aside to ``tasks.json.<reason>-<time>`` with a warning naming both
  paths, and so are journals that cannot be replayed (foreign, or damaged before their end):
  never deleted, never fatal; the node starts without durable rows (or with those before the
  damage). A row holding a number that is not finite (``NaN``, ``Infinity``, ``1e400``: no
  encoder of ours writes one) loses only what holds it, with a WARNING naming the file, the
  row and the field (``Store._row_texts``); the other rows and fields are read as they are.
* **One node per directory.** The directory is locked (``fcntl.flock`` on ``lock``) for the
  node's life; a second node on it is refused with an error naming the directory and the
  holder. The lock dies with the process, so a kill -9 never leaves a stale lock.

The writer thread (appends, snapshots, compaction) is :class:`clerk._storewriter.StoreWriter`,
mixed into :class:`Store`; the format and size bounds it writes by are defined there and
re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clerk._datadir import DataDirInUse, check_free, default_data_dir, lock_dir, move_aside
from clerk._finitejson import finite_row
from clerk._journal import JOURNAL_FORMAT, apply_rows, journals, split_records, torn_tail
from clerk._replica import DUMP, split_table
from clerk._storewriter import (
    COMPACT_MIN_BYTES,
    COMPACT_RECORDS,
    FORMAT,
    JOURNAL_KEY,
    MAX_FILE_BYTES,
    TABLE_FILE,
    Rows,
    StoreWriter,
    _row_size,
)

__all__ = ["COMPACT_MIN_BYTES", "COMPACT_RECORDS", "FORMAT", "JOURNAL_KEY",
           "MAX_FILE_BYTES", "WRITE_INTERVAL", "WRITE_SHARE", "DataDirInUse", "Store",
           "default_data_dir", "check_free"]

log = logging.getLogger("clerk.store")

#: Seconds between two writes: at most 20 writes/s, each an fdatasync (~1-10 ms on a disk).
#: Tasks of a 200 ms interval still reach the disk at every run, and 1000 tasks' results
#: coalesce.
WRITE_INTERVAL = 0.05
#: The disk may take at most ~1/WRITE_SHARE of the loop: after a write whose preparation
#: (collecting the changed rows; a whole table's rows after a takeover) cost ``c`` seconds,
#: the next waits at least ``c * (WRITE_SHARE - 1)``. Changed rows cost microseconds (20
#: writes/s at any table size).
WRITE_SHARE = 10


class Store(StoreWriter):
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
        self._based = False  # (loop) a whole table was handed over: changes may follow it
        self.writes = 0  # appends and snapshots
        self.snapshots = 0  # of which snapshots (first write, new table, compaction)
        self.bytes_written = 0  # to the disk, snapshots and journal records
        self.syncs = 0  # fsync / fdatasync calls (a snapshot's two, an append's one)
        self.moved_aside: list[Path] = []
        self._cond = threading.Condition()
        # Handed over and not taken by the writer yet: a whole table's rows (None: none), then
        # the rows changed after it, and the member list.
        self._p_full: Rows | None = None
        self._p_changes: dict[str, str | None] = {}
        self._p_members: dict[str, str] | None = None
        self._p_set = False
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        #: The other live members (name -> address) to record with each write, asked on the
        #: loop's thread at each write; None: none recorded.
        self.members: Callable[[], dict[str, str]] | None = None
        #: What the directory read at start recorded (name -> address).
        self.recorded: dict[str, str] = {}
        # --- the writer's (and close's) own -------------------------------------------------
        self._rows: dict[str, str] = {}  # the table as on disk (snapshot + journal), by row key
        self._rows_bytes = 0
        self._members: dict[str, str] | None = None
        self._members_written: dict[str, str] | None = None
        self._gen = 0  # generation of the current journal (and of the last snapshot)
        self._jfd: int | None = None  # the current journal, once created
        self._jbytes = 0
        self._jrecords = 0
        self._snap_bytes = 0
        self._must_snapshot = True  # the next write is a whole snapshot (start, error)
        self._plain = True  # the directory needs no final snapshot (nothing to fold in)
        self._too_big = False
        self._compactor: threading.Thread | None = None

    # --- start ----------------------------------------------------------------------------------

    def open(self) -> dict[str, Any] | None:
        self._fd = lock_dir(self.path, self.source)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"node {self.node} (pid {os.getpid()})\n".encode(), 0)
        return self.read()

    def read(self) -> dict[str, Any] | None:
        """The snapshot and its journals' intact records (module docstring)."""
        found = journals(self.path)
        self._gen = max((g for g, _ in found), default=0)
        table, gen = self._read_snapshot()
        if table is None:
            if found:  # journals without their snapshot: kept aside, not replayed
                self._journals_aside([p for _, p in found], "orphan",
                                     f"no readable {TABLE_FILE} to replay it onto")
            return None
        self._gen = max(self._gen, gen or 0)
        came: dict[str, tuple[Path, int]] = {}  # row key -> the journal record it came from
        if gen is not None:
            self._replay(table, [(g, p) for g, p in found if g >= gen], came)
        self._plain = gen is None
        self._rows = self._row_texts(table, came)
        self._rows_bytes = sum(_row_size(k, t) for k, t in self._rows.items())
        self._members = dict(self.recorded) if self.recorded else None
        return table

    def _row_texts(self, table: dict[str, Any],
                   came: dict[str, tuple[Path, int]]) -> dict[str, str]:
        """The rows of ``table`` as the writer keeps them (their texts). A row holding a
        number that is not finite (``NaN``, ``Infinity``, ``1e400``: a damaged or hand-made
        file; no encoder of ours writes one) cannot be written again: what holds it is dropped
        from the row, here and in ``table``, with a WARNING naming the file, the row and the
        field (:func:`clerk._finitejson.finite_row`); every other row and field is kept (as
        the whole table was not, and the next snapshot wrote an empty one)."""
        rows: dict[str, str] = {}
        for key, value in split_table(table).items():
            try:
                rows[key] = DUMP(value)
                continue
            except (TypeError, ValueError, RecursionError):
                pass
            kept, fixed, notes = finite_row(key, value)
            try:
                text = DUMP(fixed) if kept else None
            except (TypeError, ValueError, RecursionError):
                kept, text, notes = False, None, notes or ["not JSON"]
            journal = came.get(key)
            where = f"{journal[0]} (record {journal[1]})" if journal else str(self.file)
            what = f"task {key[2:]!r}" if key.startswith("t:") else f"table key {key[2:]!r}"
            log.warning("data directory: %s: %s: %s not finite, dropped: %s%s", where, what,
                        "a number" if len(notes) < 2 else "numbers", "; ".join(notes),
                        "" if text is not None else " (the whole row)")
            owner = table.get("tasks") if key.startswith("t:") else table
            if isinstance(owner, dict):
                if text is None:
                    owner.pop(key[2:], None)
                else:
                    owner[key[2:]] = fixed
            if text is not None:
                rows[key] = text
        return rows

    def _read_snapshot(self) -> tuple[dict[str, Any] | None, int | None]:
        """The snapshot's table and journal generation (None: no ``JOURNAL_KEY``)."""
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            self._move_aside("unreadable", f"cannot read it: {exc.strerror}")
            return None, None
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self._move_aside("unreadable", f"not JSON: {exc}")
            return None, None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            self._move_aside("foreign", f"not a Clerk task table (format {FORMAT!r})")
            return None, None
        if doc.get("node") != self.node:
            self._move_aside("foreign", f"written by node {doc.get('node')!r}, not "
                                        f"{self.node!r}")
            return None, None
        table = doc.get("table")
        if not isinstance(table, dict):
            self._move_aside("unreadable", "no table in it")
            return None, None
        gen = doc.get(JOURNAL_KEY)
        if gen is not None and (type(gen) is not int or gen < 0):
            # The table is good (an older build reads it): kept; the journals set aside.
            self._journals_aside([p for _, p in journals(self.path)], "unreplayed",
                                 f"{TABLE_FILE} names no journal generation")
            gen = None
        self._record_members(doc.get("members"))
        return table, gen

    def _record_members(self, members: object) -> None:
        if isinstance(members, dict):
            self.recorded = {k: v for k, v in members.items()
                             if isinstance(k, str) and isinstance(v, str) and k != self.node}

    def _replay(self, table: dict[str, Any], found: list[tuple[int, Path]],
                came: dict[str, tuple[Path, int]]) -> None:
        """Apply the intact records of ``found`` (oldest first) to ``table``, noting in
        ``came`` which record each row came from last (for a warning about it). A torn tail
        of the last journal is dropped (a crash mid-append); damage anywhere else ends the
        replay, and that journal and the later ones are moved aside."""
        for i, (gen, path) in enumerate(found):
            try:
                data = path.read_bytes()
            except OSError as exc:
                self._journals_aside([p for _, p in found[i:]], "unreadable",
                                     f"cannot read it: {exc.strerror}")
                return
            records, end = split_records(data)
            head = records[0] if records else None
            if head is not None and not (isinstance(head, dict)
                                         and head.get("format") == JOURNAL_FORMAT
                                         and head.get("node") == self.node
                                         and head.get("gen") == gen):
                self._journals_aside([p for _, p in found[i:]], "foreign",
                                     f"not this node's journal of generation {gen}")
                return
            applied = 1
            for rec in records[1:]:
                rows = rec.get("rows") if isinstance(rec, dict) else None
                if not isinstance(rows, dict) or not apply_rows(table, rows):
                    break
                for key in rows:
                    came[key] = (path, applied)
                self._record_members(rec.get("members"))
                applied += 1
            if applied < len(records) or (end < len(data) and (
                    i < len(found) - 1 or not torn_tail(data, end))):
                self._journals_aside([p for _, p in found[i:]], "unreadable",
                                     f"damaged at record {applied}")
                return
            if end < len(data):
                log.warning("journal %s: dropped %d byte(s) of a record cut short (a crash "
                            "while it was written)", path, len(data) - end)

    def _journals_aside(self, paths: list[Path], reason: str, why: str) -> None:
        for path in paths:
            self._move_aside(reason, why, path)

    def _move_aside(self, reason: str, why: str, file: Path | None = None) -> None:
        target = move_aside(file or self.file, reason, why, beyond=file not in (None, self.file))
        if target is not None:
            self.moved_aside.append(target)

    # --- the loop's side ------------------------------------------------------------------------

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

    def takes_changes(self) -> bool:
        """A whole table was handed over: changed rows may follow (``write_changes``)."""
        return self._based

    def write(self, table: dict[str, Any] | str, now: float, spent: float = 0.0) -> bool:
        """Hand a whole ``table`` (a dict, or its JSON text) to the writer thread: its rows
        are made here (a leaving manager's own last table; tests). False (and logged) if it
        cannot be written at all (not JSON, over the size bound)."""
        began = time.perf_counter()
        self._dirty = False
        try:
            try:
                doc = json.loads(table) if isinstance(table, str) else table
                items: list[tuple[str, str | None]] = [
                    (k, DUMP(v)) for k, v in split_table(doc).items()]
            except (TypeError, ValueError, RecursionError) as exc:
                log.error("cannot write %s: %s", self.file, exc)
                return False
            size = sum(_row_size(k, t or "") for k, t in items)
            if size > MAX_FILE_BYTES:
                log.error("task table of %d bytes is over the %d-byte limit of %s: not "
                          "written (the previous file stays)", size, MAX_FILE_BYTES, self.file)
                return False
            self._hand_over(items, None)
            return True
        finally:
            self._paced(now, spent + time.perf_counter() - began)

    def write_rows(self, items: Rows, now: float,
                   spent: float = 0.0) -> bool:
        """Hand over a whole table as its rows' texts (``(key, text)``; None: no row): a
        snapshot, which changed rows may then follow."""
        began = time.perf_counter()
        self._dirty = False
        self._hand_over(items, None)
        self._paced(now, spent + time.perf_counter() - began)
        return True

    def write_changes(self, changes: dict[str, str | None], now: float,
                      spent: float = 0.0) -> bool:
        """Hand over the rows changed since the last hand-over (key -> text; None: gone):
        appended to the journal. False if no whole table came first (hand one over)."""
        if not self._based:
            return False
        began = time.perf_counter()
        self._dirty = False
        self._hand_over(None, changes)
        self._paced(now, spent + time.perf_counter() - began)
        return True

    def _paced(self, now: float, cost: float) -> None:
        self._next_write = now + max(WRITE_INTERVAL, cost * (WRITE_SHARE - 1))

    def _hand_over(self, full: Rows | None,
                   changes: dict[str, str | None] | None) -> None:
        members = self.members() if self.members is not None else None
        with self._cond:
            if full is not None:
                self._based = True
                self._p_full = full
                self._p_changes = {}
            if changes:
                self._p_changes.update(changes)
            self._p_members = members
            self._p_set = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name="clerk-store",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every table handed over is on disk (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._p_set or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)

    def close(self) -> None:
        """Write what is pending, stop the writer, fold the journal into a plain snapshot
        (no ``JOURNAL_KEY``, no journals left), release the directory."""
        self.flush()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._join_compactor()
        self._close_journal()
        if self._fd is not None and not self._plain and not self._too_big:
            if self._write_snapshot(None, list(self._rows.items()), self._members):
                self._remove_journals(None)
                self._plain = True
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
