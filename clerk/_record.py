"""One row of the task table, how it travels, and how two rows of one task combine.

A row (:class:`TaskRecord`) has two parts with different rules:

* **The state part**: ``state``, ``has_state``, ``origin``, ``version``, ``history``. Which of
  two is kept is decided by lineage and version alone (:mod:`clerk._lineage`): less history
  never replaces more, a fresh ``init`` never replaces an older lineage.
* **The schedule part**: ``slot`` (last finished), ``dispatched`` (last sent), ``decided``
  (last decided: run, sent or counted skipped), ``running``, ``counts``, ``last``. Merging two
  rows takes the furthest slot of either, so no slot that either side ran is run again, and
  none that either side counted is counted again (a slot skipped while the run before it is
  in flight moves neither ``slot`` nor ``dispatched``: a successor starts after ``decided``).

The operator's facts, ``pause`` and ``run_history`` (:mod:`clerk._control`), are merged by
the scheduler before the rest (the most recent command; both sides' runs).

``conflicts`` counts the updates dropped in merges (the losing side's runs); ``last_conflict``
says when, how many and whose.

The JSON form is forward-compatible: unknown keys are ignored, missing keys take their
defaults (a row from a node of an older version has no lineage: it counts as the oldest one).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clerk._control import RunHistory, parse_pause, parse_run_history
from clerk._finitejson import finite_float, finite_list, marked, no_constant, not_finite_of
from clerk._jsondump import encoder
from clerk._lineage import (
    better,
    dropped_updates,
    parse_history,
    parse_origin,
)

__all__ = ["PACK_CHUNK", "Conflict", "TaskRecord", "merge_rows", "pack_table", "unpack_table"]

#: A row's compact JSON text (as every table text: no NaN, ASCII).
_ROW_DUMP = encoder(allow_nan=False)  # (one C encoder for every call: clerk._jsondump)
#: A packed table's decoder: numbers finite only (clerk._finitejson).
_STRICT = json.JSONDecoder(parse_constant=no_constant, parse_float=finite_float).decode
log = logging.getLogger("clerk.table")
#: Chunk size of a packed table: under the codec's longest string (64 Ki characters).
PACK_CHUNK = 60_000

COUNT_KEYS = ("ok", "error", "timeout", "skipped", "refused")
#: Lost branches remembered per task for counting each once (see ``conflict_seen``).
SEEN_KEEP = 16


def pack_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """The table as it travels in heartbeats: its JSON text in a few ASCII strings.

    The codec checks every item of a message's JSON (types, depth, Unicode), which for a table
    of 1000 tasks is ~25k items per heartbeat on the manager and again on every follower: the
    largest cost of a big cluster. A few long strings cost next to nothing to check, and a
    follower parses the table only when it needs it (a takeover, a status request).
    """
    text = json.dumps(table, separators=(",", ":"), allow_nan=False)  # ASCII: chars == bytes
    return {"packed": 1,
            "chunks": [text[i:i + PACK_CHUNK] for i in range(0, len(text), PACK_CHUNK)]}


def unpack_table(raw: Any) -> Any:
    """The table from :func:`pack_table` (or an unpacked one as is); None if malformed.

    Its numbers are read finite only (clerk._finitejson), as :func:`pack_table` writes them.
    A table holding ``NaN``, ``Infinity`` or ``1e400`` (a HANDOVER's, an ACCEPT's or a
    PROMISE's rows) is refused whole, with a WARNING naming the row and the field of each
    (the first three), unless every one is in a row's run history entries (its list form,
    from a row of an older build): those entries are dropped here, with a WARNING naming the
    row (as :func:`clerk._control.parse_run_history` does), and the row kept. A row is where
    the readers take one: ``tasks.<name>`` (a whole table) or ``<name>.record`` (quorum rows);
    a key ``run_history`` anywhere else (inside a state) is no history. No number that is not
    finite is ever returned. ``json.loads`` took them all: the row was adopted, and the
    table's next :func:`pack_table` failed (``allow_nan=False``)."""
    if isinstance(raw, Mapping) and raw.get("packed") == 1:
        chunks = raw.get("chunks")
        if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
            return None
        text = "".join(chunks)
        try:
            return _STRICT(text)
        except RecursionError:
            return None
        except ValueError:
            try:
                value = marked(text)
            except (ValueError, RecursionError):
                return None  # not JSON
            _drop_history_entries(value)
            refused = not_finite_of(value)
            if not refused:
                return value
            log.warning("a packed table refused: %d number%s in it not finite (%s)",
                        len(refused), "" if len(refused) == 1 else "s",
                        "; ".join(refused[:3]))
            return None
    return raw


def _rows_in(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """The rows of a decoded packed table, by task name: ``tasks.<name>`` (a whole table)
    and ``<name>.record`` (a quorum write's or promise's rows)."""
    if not isinstance(value, dict):
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    tasks = value.get("tasks")
    if isinstance(tasks, dict):
        out.extend((str(k), v) for k, v in tasks.items() if isinstance(v, dict))
    for key, item in value.items():
        record = item.get("record") if isinstance(item, dict) else None
        if isinstance(record, dict):
            out.append((str(key), record))
    return out


def _drop_history_entries(value: Any) -> None:
    """Drop, in place, each run history entry (list form) of a row of ``value`` holding a
    number that is not finite, with a WARNING naming the row."""
    for name, row in _rows_in(value):
        history = row.get("run_history")
        if not isinstance(history, list):
            continue
        kept, dropped = finite_list(history)
        if dropped:
            row["run_history"] = kept
            log.warning("row %r: run history: %d entr%s dropped, holding a number that is "
                        "not finite (%s)", name, len(dropped),
                        "y" if len(dropped) == 1 else "ies", "; ".join(dropped[:3]))


@dataclass
class TaskRecord:
    """One row of the replicated task table (see the module docstring)."""

    state: Any = None
    has_state: bool = False
    slot: int = -1  # last slot finished (any outcome)
    dispatched: int = -1  # last slot sent to a node
    decided: int = -1  # last slot decided (run, sent, or counted skipped)
    running: dict[str, Any] | None = None  # run id, slot, node, deadline (wall ms), started
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    last: dict[str, Any] | None = None
    runs: int = 0
    origin: dict[str, Any] | None = None  # the init this state descends from
    version: int = 0  # completed (ok) runs this lineage has seen
    history: list[list[Any]] = field(default_factory=list)  # [term, manager, start version]
    conflicts: int = 0  # updates dropped in merges (the losing side's)
    last_conflict: dict[str, Any] | None = None
    #: Losing branches already counted -> the loser's version counted up to: the same lost
    #: branch offered again (by each node of the side that lost) is counted once.
    conflict_seen: dict[str, int] = field(default_factory=dict)
    # Operator facts (clerk._control): the last pause/resume command, the last runs.
    pause: dict[str, Any] | None = None
    run_history: RunHistory = field(default_factory=RunHistory)

    @property
    def paused(self) -> bool:
        return self.pause is not None and self.pause["paused"]

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "has_state": self.has_state, "slot": self.slot,
                "dispatched": self.dispatched, "decided": self.decided, "running": self.running,
                "counts": dict(self.counts), "last": self.last, "runs": self.runs,
                "origin": self.origin, "version": self.version,
                "history": [list(h) for h in self.history], "conflicts": self.conflicts,
                "last_conflict": self.last_conflict, "conflict_seen": dict(self.conflict_seen),
                "pause": self.pause, "run_history": self.run_history.text()}

    def to_text(self) -> str:
        """``to_json()`` as compact JSON text, the same characters, made without encoding the
        run history again: a row changes at every dispatch and every result, its history only
        at a result, and the history is most of the row (raises ValueError like
        ``json.dumps(allow_nan=False)`` for a state JSON cannot carry).

        The top level is written here (its keys are literals: the C encoder escapes each key
        of a dict again at every call) and each part that is not a plain int, bool or None
        by one C encoder call of its own: ~0.85x the time of one call for the whole head as
        a dict (tools/bench_mgrpath.py), with no cache (every part is encoded at every
        call; reusing unchanged parts' texts, checked object for object in Python, made the
        manager's work per run 1.6 % fewer to 11.5 % more instructions, 2026-12-04). A
        number of another type (a bool or float where an int is expected) takes the dict
        form, whose text it is. Writing ``counts``, ``last`` and ``running`` by hand too (in
        their usual key order, with type and finiteness checks) saved only 1.1 % of those
        instructions (466,257 -> 461,047 a run) for ~50 lines: not kept. A dispatch's row
        is spliced instead, by what the scheduler marked (``clerk._replicalog.RowEncoder``)."""
        slot, dispatched, decided, runs = self.slot, self.dispatched, self.decided, self.runs
        version, conflicts, has_state = self.version, self.conflicts, self.has_state
        if not (type(slot) is int and type(dispatched) is int and type(decided) is int
                and type(runs) is int and type(version) is int and type(conflicts) is int
                and type(has_state) is bool):
            return self._dict_text()
        dump = _ROW_DUMP
        state, running, last, origin = self.state, self.running, self.last, self.origin
        lc, seen, pause = self.last_conflict, self.conflict_seen, self.pause
        return (f'{{"state":{"null" if state is None else dump(state)},'
                f'"has_state":{"true" if has_state else "false"},"slot":{slot},'
                f'"dispatched":{dispatched},"decided":{decided},'
                f'"running":{"null" if running is None else dump(running)},'
                f'"counts":{dump(self.counts)},"last":{"null" if last is None else dump(last)},'
                f'"runs":{runs},"origin":{"null" if origin is None else dump(origin)},'
                f'"version":{version},"history":{dump(self.history)},"conflicts":{conflicts},'
                f'"last_conflict":{"null" if lc is None else dump(lc)},"conflict_seen":'
                f'{"{}" if type(seen) is dict and not seen else dump(seen)},'
                f'"pause":{"null" if pause is None else dump(pause)},'
                f'"run_history":{self.run_history.quoted()}}}')

    def _dict_text(self) -> str:
        """:meth:`to_text` in one C encoder call of the head as a dict (any value)."""
        head = _ROW_DUMP({
            "state": self.state, "has_state": self.has_state, "slot": self.slot,
            "dispatched": self.dispatched, "decided": self.decided, "running": self.running,
            "counts": self.counts, "last": self.last, "runs": self.runs, "origin": self.origin,
            "version": self.version, "history": self.history, "conflicts": self.conflicts,
            "last_conflict": self.last_conflict, "conflict_seen": self.conflict_seen,
            "pause": self.pause})
        return f'{head[:-1]},"run_history":{self.run_history.quoted()}}}'

    @classmethod
    def from_json(cls, raw: Any, name: str = "") -> TaskRecord | None:
        """Parse a replicated row (of task ``name``, for the warnings); None if it is not
        one (never trust the wire blindly)."""
        if not isinstance(raw, dict):
            return None
        try:
            rec = cls(state=raw.get("state"), has_state=bool(raw.get("has_state")),
                      slot=int(raw.get("slot", -1)), dispatched=int(raw.get("dispatched", -1)),
                      decided=int(raw.get("decided", -1)), runs=int(raw.get("runs", 0)))
            running = raw.get("running")
            rec.running = running if isinstance(running, dict) and "run" in running else None
            counts = raw.get("counts")
            if isinstance(counts, dict):
                for key in rec.counts:
                    value = counts.get(key, 0)
                    rec.counts[key] = value if type(value) is int else 0
            last = raw.get("last")
            rec.last = last if isinstance(last, dict) else None
            rec.origin = parse_origin(raw.get("origin"))
            version = raw.get("version", 0)
            rec.version = version if type(version) is int and version >= 0 else 0
            rec.history = parse_history(raw.get("history"))
            conflicts = raw.get("conflicts", 0)
            rec.conflicts = conflicts if type(conflicts) is int and conflicts >= 0 else 0
            lc = raw.get("last_conflict")
            rec.last_conflict = lc if isinstance(lc, dict) else None
            seen = raw.get("conflict_seen")
            if isinstance(seen, dict):
                rec.conflict_seen = {str(k): v for k, v in list(seen.items())[-SEEN_KEEP:]
                                     if type(v) is int}
            rec.pause = parse_pause(raw.get("pause"), name)
            rec.run_history = parse_run_history(raw.get("run_history"), name)
        except (TypeError, ValueError, OverflowError):
            return None
        if not rec.has_state:
            rec.origin, rec.version, rec.history = None, 0, []
        return rec

    def progress(self) -> tuple[int, int]:
        return (max(self.slot, self.dispatched), self.runs)

    def take_state(self, other: TaskRecord) -> None:
        """Adopt ``other``'s state part (the caller decided it is better)."""
        self.state, self.has_state = other.state, other.has_state
        self.origin = dict(other.origin) if other.origin is not None else None
        self.version = other.version
        self.history = [list(h) for h in other.history]

    def describe(self) -> str:
        """Lineage and version, for logs."""
        if not self.has_state:
            return "no state"
        o = self.origin or {}
        return (f"lineage init@term {o.get('term', 0)} by {o.get('node') or '?'} "
                f"version {self.version}")


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two rows of a task had diverged; ``dropped`` updates of the loser were dropped."""

    task: str
    dropped: int
    kept: str  # describe() of the winner
    lost: str  # describe() of the loser


def merge_rows(name: str, mine: TaskRecord, theirs: TaskRecord, wall_ms: float,
               source: str) -> tuple[bool, Conflict | None]:
    """Fold ``theirs`` into ``mine`` (in place). Returns (changed, conflict if any).

    State part by lineage and version; schedule part by the furthest slot; counts by the
    larger of each; ``last`` by the later finish. A run in flight whose state was replaced is
    marked ``rebased``: its result no longer applies to the state (see ``Scheduler._finish``).
    """
    changed = False
    conflict: Conflict | None = None
    if theirs.conflicts > mine.conflicts:
        mine.conflicts, mine.last_conflict = theirs.conflicts, theirs.last_conflict
        changed = True
    for sig, upto in theirs.conflict_seen.items():
        if upto > mine.conflict_seen.get(sig, -1):
            mine.conflict_seen[sig] = upto
    if better(theirs, mine):
        conflict = _count(name, mine, theirs, mine, wall_ms, source)
        mine.take_state(theirs)
        if mine.running is not None:
            mine.running["rebased"] = True
        changed = True
    elif theirs.has_state and better(mine, theirs):
        conflict = _count(name, theirs, mine, mine, wall_ms, source)
    if conflict is not None:
        changed = True
    while len(mine.conflict_seen) > SEEN_KEEP:
        del mine.conflict_seen[next(iter(mine.conflict_seen))]
    for attr in ("slot", "dispatched", "decided"):
        if getattr(theirs, attr) > getattr(mine, attr):
            setattr(mine, attr, getattr(theirs, attr))
            changed = True
    for key, value in theirs.counts.items():
        if value > mine.counts.get(key, 0):
            mine.counts[key] = value
            changed = True
    if theirs.runs > mine.runs:
        mine.runs, changed = theirs.runs, True
    if theirs.last is not None and (mine.last is None or float(
            theirs.last.get("finished") or 0) > float(mine.last.get("finished") or 0)):
        mine.last, changed = theirs.last, True
    return changed, conflict


def _branch(rec: TaskRecord) -> str:
    o = rec.origin or {}
    tip = rec.history[-1][:2] if rec.history else [0, ""]
    return f"{o.get('time', 0)}/{o.get('term', 0)}/{o.get('node', '')}@{tip[0]}/{tip[1]}"


def _count(name: str, loser: TaskRecord, winner: TaskRecord, into: TaskRecord,
           wall_ms: float, source: str) -> Conflict | None:
    """Count (once) the loser's updates that the winner does not hold, into ``into``."""
    dropped = dropped_updates(loser, winner)
    if not dropped:
        return None
    sig = _branch(loser)
    done = into.conflict_seen.get(sig)
    if done is not None:
        dropped = min(dropped, loser.version - done)
    if dropped <= 0:
        return None
    into.conflict_seen[sig] = loser.version
    conflict = Conflict(name, dropped, winner.describe(), loser.describe())
    into.conflicts += dropped
    into.last_conflict = {"time": wall_ms, "dropped": dropped, "kept": conflict.kept,
                          "lost": conflict.lost, "from": source}
    return conflict
