"""Replication of the task table by change: the manager's log of rows, a member's replica.

Rules:

* **Rows and keys.** The table is split into rows, each kept as its JSON text: ``t:<task>``
  for a task's row (:class:`clerk._record.TaskRecord`), ``k:<key>`` for any other top-level
  key of the table (``node_runs``). Row text is made once, when the row changes, and never
  again for sending (``ReplicaLog.put``): no step of the manager's loop encodes the whole
  table.
* **Versioned rows.** The manager's :class:`ReplicaLog` numbers every change: the log's
  sequence ``seq`` grows by one per changed row, and each row remembers the sequence of its
  last change. The log has an id (``log``): sequences of two logs (two managers, or one
  manager's two terms) are never compared.
* **Acknowledged per member.** A member's ACK carries the log id and sequence its replica
  holds; the manager sends it the rows changed after that sequence (:meth:`ReplicaLog.delta`),
  oldest change first. A member of another log (new, or following a new manager) holds -1 and
  gets every row. Deltas are bounded: at most ``TABLE_CHUNK_CHARS`` of row text each, and at
  most ``TABLE_WINDOW_CHARS`` sent and not acknowledged per member; a delta ends at the change
  sequence of its last row, so a member that got part of the table resumes from there (chunks
  of a join are resumable by construction). A window not acknowledged for ``TABLE_RESEND`` s is
  sent again from the acknowledged sequence.
* **Applying** (:class:`Replica`): a delta applies if it is of the replica's log and starts at
  or before the replica's sequence (a gap is refused: the ACK tells the manager where to
  resume); a delta of another log applies only from -1 (the replica then switches log, keeping
  its rows until they are replaced). ``done`` says the log is complete and this delta reaches
  its end: rows the replica holds that the new log never sent are then dropped, so a finished
  transfer leaves exactly the manager's table.
* **Completeness.** A manager fills its log incrementally (a bounded number of rows per loop
  step); only once every row is in does it ``mark_complete`` the log, so no member drops a
  row the manager has not encoded yet.
* **Where a replica stands** (a takeover's OFFERs, :func:`offer_keys`). A sequence alone does
  not say what a replica holds: a delta cut into chunks ends at its last row's change, and a
  row changed again after that (its newer change beyond the cut) was skipped, so two replicas
  at one sequence can hold different versions of a row. What holds: a replica whose last
  delta was ``done`` (``caught_up``: it reached the end of a complete log) holds exactly the
  log's table as it was when that delta was made, and every change it lacks has a sequence
  above its own. So a replica ``caught_up`` at ``seq`` of ``log`` (:meth:`Replica.position`)
  lacks nothing that another copy of ``log`` holds with a change at or below ``seq``: each
  row remembers the end (``upto``) of the delta that brought it, an upper bound of its
  change's sequence, and a member offers a new manager whose table stands there only the
  rows it holds above ``seq`` (or of no known sequence: rows of an earlier log). Anything else
  (another log, a replica not caught up, a position not announced) means every row.

The manager's side, :class:`ReplicaLog` and :class:`RowEncoder`, is in
:mod:`clerk._replicalog` (re-exported here); this module keeps a member's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from clerk._histdelta import Held, apply_hist, hist_problem, parse_hist
from clerk._messages import TableAt, TableDelta
from clerk._record import unpack_table
from clerk._replicalog import COMPACT_SLICE, TABLE_CHUNK_CHARS, ReplicaLog, RowEncoder
from clerk._rowtexts import (
    DUMP,
    RowsView,
    RowTexts,
    row_key,
    row_texts,
    rows_problem,
    split_table,
    table_text,
)

_DUMP = DUMP
log = logging.getLogger("clerk.replica")

__all__ = [
    "COMPACT_SLICE",
    "DUMP",
    "HANDOVER_WHOLE_CHARS",
    "TABLE_CHUNK_CHARS",
    "TABLE_RESEND",
    "TABLE_WINDOW_CHARS",
    "Replica",
    "RowsView",
    "handover_delta",
    "offer_keys",
    "offer_test",
    "ReplicaLog",
    "RowEncoder",
    "row_key",
    "row_texts",
    "split_table",
    "table_text",
]

#: Row text sent to one member and not acknowledged yet: two chunks per heartbeat round, so a
#: round costs ~0.6 ms per distinct member position (members in step share one) and the loop
#: is not blocked for more than ~1 ms by a join (measured: tools/bench_replication.py). The
#: price: a joiner of a 10,000-task table (~5.4 MB of rows) takes ~80 rounds (~8 s) to hold
#: all of it; it follows, acknowledges and runs tasks meanwhile.
TABLE_WINDOW_CHARS = 2 * TABLE_CHUNK_CHARS
#: A window not acknowledged this long (s) is sent again from the acknowledged sequence. An
#: ACK is back within milliseconds; this covers a link that dropped queued messages, a gap the
#: member refused, or a joiner that never answered (which is not re-sent the table each round).
TABLE_RESEND = 1.0
#: A graceful hand-over carries the whole table when its text is at most this long (a 1 MiB
#: message, with room for JSON's escaping of the quotes in the packed text); a bigger one
#: carries only the rows the successor has not acknowledged (``handover_delta``).
HANDOVER_WHOLE_CHARS = 600_000


def handover_delta(raw: Mapping[str, Any]) -> TableDelta | None:
    """The rows of a hand-over that carries only what the successor lacks (checked: it comes
    off the wire); None if malformed. Such a delta reaches the end of a complete log
    (``CoreState.handover_state`` sends one only then): it is ``done``."""
    log, base, upto = raw.get("log"), raw.get("base"), raw.get("upto")
    rows, gone = raw.get("rows"), raw.get("gone")
    if not (isinstance(log, str) and type(base) is int and type(upto) is int
            and isinstance(rows, list) and all(isinstance(r, str) for r in rows)
            and isinstance(gone, list) and all(isinstance(g, str) for g in gone)):
        return None
    return TableDelta(log, base, upto, tuple(rows), tuple(gone), True)


class Replica(RowTexts):
    """A member's copy of its manager's table, kept by applying deltas (module docstring)."""

    def __init__(self) -> None:
        self.log = ""
        self.seq = -1
        self.refused = 0  # deltas refused (a gap, another log, malformed)
        self.version = 0  # changes applied (of any log): when to write the data directory
        self._text: dict[str, str] = {}
        self._fresh: set[str] | None = None  # keys sent by the current log, until ``done``
        self._fresh_gone = False  # one of them was a removal (``delta.gone``)
        # key -> the end (upto) of the delta of the current log that brought the row: at
        # least its change's sequence. A row of an earlier log has none.
        self._at: dict[str, int] = {}
        self.caught_up = False  # the last delta applied was ``done`` (module docstring)
        # key -> its history's identity, for a patch (clerk._histdelta): rows of this log only.
        self._hist: dict[str, Held] = {}
        self.refused_hist = 0  # deltas refused because a patch did not fit (of ``refused``)
        self.refusal = ""  # why the last delta whose contents were refused was
        self._warned = ""  # the last refusal logged

    def __bool__(self) -> bool:
        return bool(self._text)

    def _warn_refused(self) -> None:
        """Log a refusal whose contents were not JSON, once per distinct one (the manager sends
        a refused window again every TABLE_RESEND)."""
        if self.refusal != self._warned:
            self._warned = self.refusal
            log.warning("refused a table delta: %s", self.refusal)

    def apply(self, delta: TableDelta) -> bool:
        """Apply ``delta`` if it fits (see the module docstring). True if the table changed."""
        if delta.log != self.log:
            if delta.base != -1:
                self.refused += 1
                return False
            self.log, self.seq, self._fresh = delta.log, -1, set()
            self._fresh_gone = False
            self._at = {}
            self._hist = {}
            self.caught_up = False
        if delta.base > self.seq:
            self.refused += 1
            return False
        if delta.upto <= self.seq:
            return False
        rows = row_texts("".join(delta.rows)) if delta.rows else {}
        if rows is None:
            # (Rows as strings in the body or after it, clerk._codectail: every row is
            # parsed here, and a delta with one that is not JSON is refused whole.)
            self.refused += 1
            self.refusal = (f"the rows of the delta {delta.base}..{delta.upto} of log "
                            f"{delta.log!r} are not a JSON object of rows: "
                            f"{rows_problem(''.join(delta.rows))}")
            log.warning("refused a table delta: %s", self.refusal)
            return False
        notes: dict[str, Held] = {}
        if delta.hist is not None:
            hist = parse_hist("".join(delta.hist))
            got = None if hist is None else apply_hist(hist, rows, self._hist, self._text)
            if got is None:
                self.refused += 1
                self.refusal = (f"the history patches of the delta {delta.base}..{delta.upto}"
                                f" of log {delta.log!r} do not fit the rows held")
                problem = hist_problem("".join(delta.hist))
                if problem is not None:
                    self.refusal = (f"the history patches of the delta {delta.base}.."
                                    f"{delta.upto} of log {delta.log!r} are not JSON: {problem}")
                    self._warn_refused()
                self.refused_hist += 1
                return False
            notes = got
        fresh = self._fresh
        at, upto = self._at, delta.upto
        changed = self._changed
        held = self._hist
        for key, text in rows.items():
            self._text[key] = text
            at[key] = upto
            note = notes.get(key)
            if note is not None:
                held[key] = note
            elif held:
                held.pop(key, None)
            if fresh is not None:
                fresh.add(key)
        for key in delta.gone:
            self._text.pop(key, None)
            at.pop(key, None)
            held.pop(key, None)
            if fresh is not None:
                fresh.add(key)
                self._fresh_gone = True
        if changed is not None:
            changed.update(rows)
            changed.update(delta.gone)
        self.seq = upto
        self.caught_up = delta.done
        self.version += 1
        if delta.done and fresh is not None:
            # Every key the log sent is held unless one was gone (``delta.gone``): then, and
            # only then, the counts cannot say that no other key is held. (A loop over every
            # key was ~1 ms of the step that ends a join or a takeover's transfer.)
            if self._fresh_gone or len(fresh) != len(self._text):
                for key in [k for k in self._text if k not in fresh]:
                    del self._text[key]
                    held.pop(key, None)
                    if changed is not None:
                        changed.add(key)
            self._fresh = None
        return True

    def reset(self, table: Any) -> None:
        """Hold exactly ``table`` (a hand-over's, packed or not), outside any log."""
        self._text = {k: _DUMP(v) for k, v in split_table(unpack_table(table)).items()}
        self._outside_logs()

    def _outside_logs(self) -> None:
        self._changed = None  # replaced wholesale: the data directory takes a snapshot
        self.log, self.seq, self._fresh = "", -1, None
        self._at = {}
        self._hist = {}
        self.caught_up = False
        self.version += 1

    def take(self, items: list[tuple[str, str | None]]) -> None:
        """Hold exactly these rows (a manager's own last log), outside any log."""
        self._text = {k: t for k, t in items if t is not None}
        self._outside_logs()

    def position(self) -> TableAt | None:
        """Where this replica stands, if it is caught up with a log (module docstring): a
        new manager announces it, so that members offer only what it lacks."""
        return TableAt(self.log, self.seq) if self.caught_up and self.log else None

    def changed_after(self, seq: int) -> set[str]:
        """Keys of the rows that may have changed after ``seq`` of this replica's log: those
        brought by a delta ending after it, and those of no known sequence."""
        at = self._at
        return {k for k in self._text if at.get(k, seq + 1) > seq}

    def newer_than(self, seq: int) -> Callable[[str], bool]:
        """Whether a key's row is one of :meth:`changed_after` ``seq``, as of now (the
        marks are copied: O(rows) in C, no loop over the rows in Python)."""
        marks = dict(self._at)
        return lambda key: marks.get(key, seq + 1) > seq


def offer_keys(source: ReplicaLog | Replica, at: TableAt | None) -> set[str] | None:
    """The keys of the rows that ``source`` (a member's table log if complete, else its
    replica) may hold newer than a new manager whose table stands at ``at`` (its replica,
    caught up with ``at.log`` at ``at.seq``); None: maybe any row (no position announced,
    or of another log). See the module docstring."""
    if at is None or not at.log or source.log != at.log:
        return None
    return source.changed_after(at.seq)


def offer_test(source: ReplicaLog | Replica, at: TableAt | None) -> Callable[[str], bool] | None:
    """:func:`offer_keys` as a test of one key at a time, of the rows as they are now (an
    OFFER built in slices: clerk._offerjob)."""
    if at is None or not at.log or source.log != at.log:
        return None
    return source.newer_than(at.seq)
