"""Operator control facts of the task table: the pause register and the run history (pure).

Both live in the task's row of the replicated table (:class:`clerk._record.TaskRecord`), so
they travel with heartbeats, hand-overs and merges like the state does, and a new manager
continues with them.

**Pause.** A row's ``pause`` is a register ``{"paused": bool, "node": str, "at": float}``: the
last command (``pause`` or ``resume``), the node the command came through and the manager's
wall time (seconds) when it applied it. A paused task is not dispatched (its slots are neither
run nor counted as skipped); a run already in flight finishes. Resume continues on the grid
with the first slot due after it. When two sides of a partition meet, each task keeps the
register with the larger ``(at, node)``: the most recent command wins, whichever side's state
wins (rule in :func:`newer_pause`). A resume is kept as a register too (``paused`` false), so
an older pause from the other side cannot undo it.

**History.** Each row keeps its last :data:`HISTORY_MAX_RUNS` finished runs, oldest first, as
compact arrays (see :data:`HISTORY_FIELDS`; :func:`history_view` turns them into objects),
carried in the row (``run_history``; the state's lineage has a ``history`` of its own) as one
JSON string (:class:`RunHistory` says why). The
whole table travels in one heartbeat, so the history is bounded in bytes too: each task gets
at most ``min(HISTORY_TASK_BYTES, HISTORY_BUDGET_BYTES / number of tasks)`` of encoded JSON and
the oldest entries go first. With a handful of tasks that is the full 50 runs; with 1000 tasks
it is the last run or two.

Unknown keys of a row are ignored and missing ones defaulted (:func:`parse_pause`,
:func:`parse_run_history`), so a newer node's table loads on an older node and the reverse.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from clerk._finitejson import finite_float, finite_items, finite_list, no_constant
from clerk._jsondump import encoder

__all__ = [
    "HISTORY_BUDGET_BYTES",
    "HISTORY_ERROR_CHARS",
    "HISTORY_FIELDS",
    "HISTORY_MAX_RUNS",
    "HISTORY_TASK_BYTES",
    "RunHistory",
    "OPS",
    "append_history",
    "entry",
    "history_view",
    "make_entry",
    "merge_run_history",
    "newer_pause",
    "parse_run_history",
    "parse_pause",
    "round_ms",
]

#: Runs kept per task (the issue asks for "the last runs, say 50").
HISTORY_MAX_RUNS = 50
#: Bytes of history (encoded JSON) one task may keep: 50 runs of ~100 bytes plus error tails.
HISTORY_TASK_BYTES = 8 * 1024
#: Bytes of history all tasks together may keep in the one heartbeat (1 MiB) that carries the
#: table, next to the states' 512 KiB and the rows themselves (~330 bytes per task: 1000 tasks
#: with full states take ~850 KiB before any history, tools/bench_ops.py).
HISTORY_BUDGET_BYTES = 96 * 1024
#: The tail of a failed run's error kept in its history entry (the exception line); the whole
#: traceback is in the manager's log and the last one in ``last_run``.
HISTORY_ERROR_CHARS = 160
#: Order of the fields of one compact history entry.
HISTORY_FIELDS = ("slot", "due", "node", "start", "duration_ms", "outcome", "error",
                  "version", "trigger")
#: Control operations a client may send: the first three change the table (manager only),
#: ``show`` reads one task's row (any node, from its replica).
OPS = ("pause", "resume", "trigger", "show")


def parse_pause(raw: Any, row: str = "") -> dict[str, Any] | None:
    """A pause register from the wire; None when absent or malformed. One whose ``at`` is not
    a finite number (``NaN``, ``Infinity``, ``1e400`` that ``json.loads`` read, an int past
    the largest float) is dropped with a WARNING naming ``row``: kept, it ordered commands
    wrongly (``newer_pause``) and the row's next encode failed (no encoder of ours writes
    one)."""
    if not isinstance(raw, dict):
        return None
    paused, node, at = raw.get("paused"), raw.get("node"), raw.get("at")
    if type(paused) is not bool or not isinstance(node, str):
        return None
    if type(at) is not int and type(at) is not float:  # (not a bool)
        return None
    try:
        when = float(at)
    except OverflowError:  # an int past the largest float
        when = math.inf
    if not math.isfinite(when):
        log.warning("%spause register dropped: its at is not a finite number (%s)",
                    f"row {row!r}: " if row else "", str(at)[:40])
        return None
    return {"paused": paused, "node": node, "at": when}


def newer_pause(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The register to keep: the most recent command by ``(at, node)``; ``a`` on a tie."""
    if a is None:
        return b
    if b is None:
        return a
    return b if (b["at"], b["node"]) > (a["at"], a["node"]) else a


log = logging.getLogger("clerk.control")
#: A history text's decoder: numbers finite only (clerk._finitejson), one for every call.
_STRICT = json.JSONDecoder(parse_constant=no_constant, parse_float=finite_float).decode


def _entry_ok(e: Any) -> bool:
    return (isinstance(e, list) and len(e) == len(HISTORY_FIELDS)
            and type(e[0]) is int and isinstance(e[5], str))


#: ``json.dumps(value, separators=(",", ":"))`` without making an encoder per call (one per
#: history entry: every result on the manager).
_dumps = encoder()  # (one C encoder for every call: clerk._jsondump)


#: A text as a JSON string literal (ASCII, like every table text).
_quote = encode_basestring_ascii
#: Ids of the histories this process made (``RunHistory.hid``).
_HIDS = itertools.count(1)
#: The newest entries a history's ``patch_view`` carries: a member that lacks more of them
#: gets the whole row.
PATCH_TAIL = 4
#: A history shorter than this (its quoted text: ~7 entries) goes whole. Below it the
#: patch's bookkeeping (per row, on the manager and on each member) cost more CPU than the
#: bytes it saved (``tools/bench_histdelta.py``: CPU equal at 100 tasks, whose histories
#: are ~1,000 characters; +20 % at 200 tasks, ~500; at 1,000 tasks a history is the last
#: run, ~110 characters, and a patch saves nothing).
PATCH_MIN_CHARS = 768


class RunHistory:
    """A task's last runs (compact entries, oldest first) with their JSON text kept up to date.

    The row carries the history as one JSON *string*: the manager packs the whole table at
    every replication, and one string per task costs a copy where 50 arrays of 9 items cost
    ~450 items to encode (``tools/bench_ops.py``). Each entry's text is made once, when it is
    appended: the history's text is the entries' texts joined (no entry is encoded twice), and
    its quoted form (as it sits in a row's JSON, :meth:`quoted`) is made once per change, not
    once per row encoding (a row changes at every dispatch too)."""

    __slots__ = ("entries", "hid", "n", "_parts", "_qparts", "_bytes", "_text", "_quoted",
                 "_joined")

    def __init__(self, entries: Sequence[list[Any]] = ()) -> None:
        self.entries: list[list[Any]] = list(entries)
        #: Which history this is (new at every one made: a parse, a merge) and how many
        #: entries it has had in all (``append`` adds one): its entries are numbered
        #: ``n - len + 1 .. n``. Replication sends a member that holds this same history at an
        #: earlier ``n`` only the entries after it (:mod:`clerk._histdelta`).
        self.hid = next(_HIDS)
        self.n = len(self.entries)
        self._joined: bool | None = None  # text() is the entries' texts joined (patch_view)
        self._parts: list[str] | None = None  # each entry's JSON text
        self._qparts: list[str] | None = None  # the same, escaped as inside a JSON string
        self._bytes = 0  # sum(len(part) + 1): the entries' share of the history's text
        self._text: str | None = None
        self._quoted: str | None = None

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> list[Any]:
        return self.entries[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunHistory):
            return self.entries == other.entries
        return self.entries == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RunHistory({self.entries!r})"

    def _texts(self) -> tuple[list[str], list[str]]:
        if self._parts is None or self._qparts is None:
            self._parts = [_dumps(e) for e in self.entries]
            # JSON escaping is per character: the escaped text of the whole history is the
            # escaped texts of its entries joined by the same (unescaped) commas.
            self._qparts = [_quote(p)[1:-1] for p in self._parts]
            self._bytes = sum(len(p) + 1 for p in self._parts)
        return self._parts, self._qparts

    def text(self) -> str:
        """The entries' JSON text (a list of arrays), as :func:`parse_run_history` reads it."""
        if self._text is None:
            self._text = "[" + ",".join(self._texts()[0]) + "]"
        return self._text

    def quoted(self) -> str:
        """:meth:`text` as a JSON string literal (how a row's JSON holds it)."""
        if self._quoted is None:
            if self._parts is None and self._text is not None:
                self._quoted = _quote(self._text)  # as received (see parse_run_history)
            else:
                self._quoted = '"[' + ",".join(self._texts()[1]) + ']"'
        return self._quoted

    def append(self, entry: list[Any], cap_bytes: int) -> None:
        """Append ``entry``; drop the oldest past HISTORY_MAX_RUNS or ``cap_bytes``."""
        parts, qparts = self._parts, self._qparts
        if parts is None or qparts is None:
            parts, qparts = self._texts()
        text = _dumps(entry)
        entries = self.entries
        entries.append(entry)
        parts.append(text)
        qparts.append(_quote(text)[1:-1])
        size = self._bytes + len(text) + 1
        count = len(entries)
        drop = 0
        while count - drop > HISTORY_MAX_RUNS or (
                size > cap_bytes and drop < count - 1):  # newest stays
            size -= len(parts[drop]) + 1
            drop += 1
        self._bytes = size
        if drop == 1:  # (the usual case: a full history, one in and one out)
            del entries[0], parts[0], qparts[0]
        elif drop:
            del entries[:drop], parts[:drop], qparts[:drop]
        self.n += 1
        self._text = self._quoted = None
        self._joined = True

    def patch_view(self) -> tuple[int, int, int, tuple[str, ...]] | None:
        """``(hid, n, len(quoted()), the last PATCH_TAIL entries' texts as quoted)`` for a
        replication that sends only new entries (:mod:`clerk._histdelta`); None when the
        history is short (``PATCH_MIN_CHARS``) or its text as it sits in the row is not its
        entries' texts joined (one received with other spacing): then the row goes whole."""
        quoted = self.quoted()  # (first: as received, if it was, before _texts() is made)
        if len(quoted) < PATCH_MIN_CHARS:
            return None
        parts, qparts = self._texts()
        if self._joined is None:
            self._joined = self._text is None or self._text == "[" + ",".join(parts) + "]"
        if not self._joined:
            return None
        return self.hid, self.n, len(quoted), tuple(qparts[-PATCH_TAIL:])


def parse_run_history(raw: Any, row: str = "") -> RunHistory:
    """History from the wire (its JSON text, or a list of entries), malformed entries
    dropped, at most HISTORY_MAX_RUNS. An entry holding a number that is not
    finite (``NaN``, ``Infinity``, ``1e400``: no encoder of ours writes one) is dropped with
    a WARNING naming ``row`` (clerk._finitejson): kept, the row it came in failed later, far
    from where it came from (a status, the row's next encode)."""
    text = raw if isinstance(raw, str) else None
    dropped: list[str] = []
    if text is not None:
        try:
            raw = _STRICT(text)
        except RecursionError:
            return RunHistory()
        except ValueError:
            found = finite_items(text)
            if found is None:
                return RunHistory()
            raw, dropped = found
            text = None  # (encoded again: not as received)
    elif isinstance(raw, list):
        # The list form (a row of an older build) was decoded by ``json.loads`` already (a
        # packed table: clerk._record.unpack_table), which reads NaN, Infinity and 1e400.
        raw, dropped = finite_list(raw)
    if dropped:
        log.warning("%srun history: %d entr%s dropped, holding a number that is not "
                    "finite (%s)", f"row {row!r}: " if row else "", len(dropped),
                    "y" if len(dropped) == 1 else "ies", "; ".join(dropped[:3]))
    if not isinstance(raw, list):
        return RunHistory()
    entries = [e for e in raw if _entry_ok(e)][-HISTORY_MAX_RUNS:]
    out = RunHistory(entries)
    if text is not None and len(entries) == len(raw):
        out._text = text  # as received: a row passed on unchanged is not encoded again
    return out


def merge_run_history(a: RunHistory, b: RunHistory, cap_bytes: int) -> RunHistory:
    """Both sides' runs (after a partition each side ran some), one entry per (start, slot,
    node), ordered by start, bounded like :meth:`RunHistory.append`. ``a`` itself if ``b``
    adds nothing."""
    seen = {(e[3], e[0], e[2]) for e in a.entries}
    extra = [e for e in b.entries if (e[3], e[0], e[2]) not in seen]
    if not extra:
        return a
    out = RunHistory()
    for e in sorted([*a.entries, *extra], key=lambda e: (e[3], e[0])):
        out.append(e, cap_bytes)
    return out


def append_history(history: RunHistory, entry: list[Any], cap_bytes: int) -> None:
    """``history.append(entry, cap_bytes)``."""
    history.append(entry, cap_bytes)


def make_entry(*, slot: int, due_ms: float | None, node: str | None, start_ms: float,
               duration_ms: float, outcome: str, error: str, version: int,
               trigger: bool) -> list[Any]:
    """One compact history entry (times in wall milliseconds, rounded to 0.1 ms)."""
    return entry(slot, due_ms, node, start_ms, round(duration_ms, 3), outcome, error, version,
                 trigger)


def round_ms(value: float) -> float:
    """``round(value, 1)``; a whole number (an interval grid's due time, an int; a run that
    started at it) as it is, which is what round() gives it: with digits, round() goes
    through a decimal conversion (~0.7 us, twice a result on the manager)."""
    kind = type(value)
    if kind is int or (kind is float and value.is_integer()):
        return value
    return round(value, 1)


def entry(slot: int, due_ms: float | None, node: str | None, start_ms: float,
          duration_ms: float, outcome: str, error: str, version: int,
          trigger: bool) -> list[Any]:
    """:func:`make_entry` without the keywords, ``duration_ms`` already rounded to 0.001 ms
    (the manager's ``_finish`` rounds it once for the row's last run and the entry)."""
    if error:
        stripped = error.strip()
        tail = stripped.splitlines()[-1] if stripped else ""
        if len(tail) > HISTORY_ERROR_CHARS:
            tail = "..." + tail[-HISTORY_ERROR_CHARS:]
    else:
        tail = ""
    return [slot, None if due_ms is None else round_ms(due_ms), node, round_ms(start_ms),
            duration_ms, outcome, tail, version, 1 if trigger else 0]


def history_view(history: Iterable[list[Any]]) -> list[dict[str, Any]]:
    """Entries as objects with times in seconds: ``{"slot", "due", "node", "start",
    "duration_ms", "outcome", "error", "version", "trigger"}``, oldest first."""
    out = []
    for e in history:
        row = dict(zip(HISTORY_FIELDS, e, strict=True))
        row["due"] = None if row["due"] is None else row["due"] / 1000
        row["start"] = row["start"] / 1000
        row["trigger"] = bool(row["trigger"])
        out.append(row)
    return out
