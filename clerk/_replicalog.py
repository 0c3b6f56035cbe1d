"""The manager's side of replication by change: :class:`ReplicaLog`, the table's rows numbered
by change, which answers a member's acknowledged sequence with bounded deltas, and
:class:`RowEncoder`, which puts the rows a scheduler changed into it a bounded amount per step.

Split from :mod:`clerk._replica`, which keeps a member's side (:class:`clerk._replica.Replica`,
a hand-over's delta, what a member offers a new manager), states the rules both sides keep in
its docstring, and re-exports these names. Apart because the log's bookkeeping (change
sequences, their compaction, deltas cut into chunks) is the manager's alone; a member only
applies what it sends.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from clerk._histdelta import HistVersions, View
from clerk._messages import TableDelta
from clerk._rowtexts import DUMP, RowTexts, row_key, split_table

_DUMP = DUMP

__all__ = ["COMPACT_AFTER", "COMPACT_SLICE", "TABLE_CHUNK_CHARS", "ReplicaLog", "RowEncoder"]

#: Row text per delta: 32 Ki characters are built and encoded (escaped into the heartbeat)
#: in ~0.3 ms on a loaded 2-core machine, far below the 1 MiB frame limit.
TABLE_CHUNK_CHARS = 32 * 1024
#: The log's list of changes keeps an entry per change, stale ones (rows changed again since)
#: skipped when met; it is compacted when the stale ones pass this many and the live rows
#: (a slice of it at each change from then on, see ``COMPACT_SLICE``).
COMPACT_AFTER = 4096
#: Entries of that list compacted per change, once it is under way (a slice of ~30 us).
COMPACT_SLICE = 512
#: Part of a delta's text per string: under the codec's longest string (64 Ki characters).
_PART = 60_000


def _seq_of(change: tuple[int, str]) -> int:
    return change[0]


class ReplicaLog(RowTexts):
    """The manager's rows with their change sequences (see :mod:`clerk._replica`)."""

    def __init__(self, log: str = "") -> None:
        self.log = log
        self.seq = -1
        self.complete = False
        self._text: dict[str, str | None] = {}  # key -> row text (None: removed)
        self._at: dict[str, int] = {}  # key -> sequence of its last change
        # (sequence, key) of every change, oldest first; an entry whose sequence is no longer
        # its key's last change is stale (skipped). Sorted by sequence: a delta finds where it
        # starts by bisection, so a joiner's chunk costs O(log rows + chunk), not O(rows).
        self._changes: list[tuple[int, str]] = []
        self._stale = 0
        self._sweep: int | None = None  # where the compaction under way is (_compact_some)
        self._hists = HistVersions()  # the rows' history states (clerk._histdelta)
        # key -> its JSON string (a delta names every row it carries, and its history's
        # patch: two encoder calls per row per delta, ~0.6 of a row's ~1 us there). As
        # many as ``_at`` holds: every key the log ever held.
        self._quoted: dict[str, str] = {}

    def __len__(self) -> int:
        return sum(1 for t in self._text.values() if t is not None)

    def _bump(self, key: str) -> None:
        if self._changed is not None:
            self._changed.add(key)
        if key in self._at:
            self._stale += 1
        self.seq += 1
        self._at[key] = self.seq
        self._changes.append((self.seq, key))
        if self._sweep is None and self._stale > max(COMPACT_AFTER, len(self._at)):
            self._sweep = 0
        if self._sweep is not None:
            self._compact_some()

    def _compact_some(self) -> None:
        """Drop the stale entries of the next ``COMPACT_SLICE`` of the list (in place: it
        stays sorted, a delta bisects it as before). The whole list at once was O(rows): at
        10,000 rows one change in ~10,000 took 2-11 ms of the loop."""
        assert self._sweep is not None
        at, changes = self._at, self._changes
        start = self._sweep
        end = min(start + COMPACT_SLICE, len(changes))
        live = [e for e in changes[start:end] if at[e[1]] == e[0]]
        self._stale -= (end - start) - len(live)
        changes[start:end] = live
        start += len(live)
        self._sweep = None if start >= len(changes) else start

    def put(self, key: str, text: str, hist: View | None = None) -> bool:
        """Row ``key`` is now ``text`` (its JSON; ``hist``: its run history's
        ``RunHistory.patch_view``, if a member may get it as a patch). True if that is a
        change."""
        if self._text.get(key) == text:
            return False
        self._text[key] = text
        self._bump(key)
        self._hists.note(key, self.seq, hist)
        return True

    def remove(self, key: str) -> bool:
        if self._text.get(key) is None:
            return False
        self._text[key] = None
        self._bump(key)
        self._hists.drop(key)
        return True

    def put_table(self, table: Any) -> None:
        """Make the log hold exactly ``table`` (a whole table: O(rows); tests, simulator)."""
        rows = split_table(table)
        for key, value in rows.items():
            self.put(key, _DUMP(value))
        for key in [k for k, t in self._text.items() if t is not None and k not in rows]:
            self.remove(key)
        self.mark_complete()

    def changed_after(self, seq: int) -> set[str]:
        """Keys of the live rows whose last change is after ``seq``."""
        changes, at, text = self._changes, self._at, self._text
        start = bisect.bisect_right(changes, seq, key=_seq_of)
        return {k for q, k in changes[start:] if at[k] == q and text[k] is not None}

    def newer_than(self, seq: int) -> Callable[[str], bool]:
        """Whether a key's row is one of :meth:`changed_after` ``seq`` (as of now)."""
        return self.changed_after(seq).__contains__

    def mark_complete(self) -> None:
        """Every row is in: members that reach the end may drop rows the log never held."""
        if not self.complete:
            self.complete = True
            self.seq += 1  # a delta reaching this sequence carries ``done``

    def delta(self, base: int, max_chars: int = TABLE_CHUNK_CHARS,
              hist: int = 0, raw: bool = False) -> TableDelta | None:
        """The rows changed after ``base`` (oldest change first), up to ``max_chars`` of row
        text (at least one row); None if the member is up to date. ``hist``, for a member
        that reads ``TableDelta.hist`` (:mod:`clerk._histdelta`): 1, each row's history's
        identity; 2, and the rows' histories as what changed since ``base``, for a member
        that holds the log as of ``base`` exactly (an uncut delta's end). ``raw``, for a
        member that reads rows after the body (``clerk._messages.reads_raw_rows``): the rows'
        text in one piece, with its length (``TableDelta.tail``), not cut into strings."""
        if base >= self.seq:
            return None
        changes, at = self._changes, self._at
        start = bisect.bisect_right(changes, base, key=_seq_of)
        keys = (changes[i][1] for i in range(start, len(changes))
                if at[changes[i][1]] == changes[i][0])
        parts: list[str] = []
        gone: list[str] = []
        hists: list[str] | None = [] if hist else None
        size = 0
        upto = self.seq
        last = ""
        quoted = self._quoted
        for key in keys:
            text = self._text[key]
            qkey = quoted.get(key)
            if qkey is None:
                qkey = quoted[key] = _DUMP(key)
            sent, h = text, None
            if hists is not None and text is not None:
                p = self._hists.patch(key, text, base) if hist == 2 else None
                if p is not None:
                    sent, h = p
                else:
                    h = self._hists.whole(key)
            if (parts or gone) and size + len(sent or "") + len(h or "") > max_chars:
                upto = self._at[last]
                break
            if sent is None:
                gone.append(key)
            else:
                parts.append(f"{qkey}:{sent}")
                size += len(sent) + len(key) + 3
            if h is not None:
                assert hists is not None
                hists.append(f"{qkey}:{h}")
                size += len(h)
            last = key
        body = "{" + ",".join(parts) + "}"
        more = "{" + ",".join(hists) + "}" if hists else ""
        return TableDelta(self.log, base, upto,
                          (body,) if raw else
                          tuple(body[i:i + _PART] for i in range(0, len(body), _PART)),
                          tuple(gone), self.complete and upto == self.seq,
                          tuple(more[i:i + _PART] for i in range(0, len(more), _PART))
                          if hists else None, len(body) if raw else None)

    def window(self, base: int, max_chars: int, hist: int = 0,
               raw: bool = False) -> list[TableDelta]:
        """Consecutive deltas after ``base`` with at most ``max_chars`` of row text in all
        (at least one delta if the member is behind); ``hist``: see :meth:`delta` (patches
        in the first only: the next ones start where a cut delta ended); ``raw``: as there."""
        out: list[TableDelta] = []
        spent = 0
        while spent < max_chars or not out:
            d = self.delta(base, min(TABLE_CHUNK_CHARS, max(1, max_chars - spent)),
                           min(hist, 1) if out else hist, raw)
            if d is None:
                break
            out.append(d)
            spent += sum(len(p) for p in d.rows)
            base = d.upto
        return out


class _Rows(Protocol):
    """What :class:`RowEncoder` needs of the scheduler (clerk._schedstate)."""

    @property
    def records(self) -> Mapping[str, Any]: ...
    @property
    def node_runs(self) -> Mapping[str, int]: ...
    all_dirty: bool
    runs_dirty: bool

    def take_dirty(self) -> tuple[list[str], bool]: ...


class RowEncoder:
    """Puts the rows a scheduler changed into a table log, a bounded amount per ``step``."""

    def __init__(self) -> None:
        self._queue: dict[str, None] = {}
        self._runs = False
        self._log: ReplicaLog | None = None
        # Name -> (its mark count when its text was made with no run in flight, its
        # ``dispatched`` and ``decided`` then, the text): see :meth:`_text`.
        self._bases: dict[str, tuple[int, int, int, str]] = {}

    def _text(self, name: str, rec: Any, marks: Mapping[str, int],
              dispatch_marks: Mapping[str, int], log: ReplicaLog, key: str,
              skip_marks: Mapping[str, int] | None = None) -> str:
        """Row ``name``'s text. A dispatch changes ``dispatched``, ``decided`` and
        ``running`` alone (the rest of the row is what the result before it left): when the
        row's one mark (``Touched.marks``) since its last text here is that dispatch's
        (``SchedulerState.dispatch_marks``), and the log still holds that text, those three
        are spliced into it (~35,000 instructions, against ~106,000 for the whole row:
        ``TaskRecord.to_text``). A slot skipped because the run before it is still in
        flight changes ``decided`` and ``counts`` alone (``SchedulerState.skip_marks``): the
        same way, those two are spliced into the row's last text (on an overloaded cluster
        about one skip per run, each a whole row before). Every change to a row is marked
        (replication encodes only marked rows), so the rest is unchanged; any other mark, a
        new log, or a number of another type, a row that changed unmarked (``all_dirty``),
        and the row is encoded whole."""
        n = marks.get(name, 0)
        base = self._bases.get(name)
        d, e, run = rec.dispatched, rec.decided, rec.running
        # (The marks first: a result's mark, the usual one, rules a splice out at once.)
        splice = base is not None and n == base[0] + 1 and (
            dispatch_marks.get(name) == n
            or (skip_marks is not None and skip_marks.get(name) == n))
        if (splice and base is not None and type(d) is int and type(e) is int
                and log._text.get(key) == base[3]):
            was = base[3]
            if dispatch_marks.get(name) == n:
                # Where the three are: found by their text with what follows them, once
                # only (a state holding that same text as keys and values: not spliced).
                mark = f',"dispatched":{base[1]},"decided":{base[2]},"running":null,"counts":'
                at = was.find(mark)
                if at > 0 and was.find(mark, at + 1) < 0:
                    text = (f'{was[:at + 1]}"dispatched":{d},"decided":{e},"running":'
                            f'{"null" if run is None else DUMP(run)}'
                            f'{was[at + len(mark) - 10:]}')
                    self._bases[name] = (n, d, e, text)
                    return text
            elif skip_marks is not None and skip_marks.get(name) == n and run is not None:
                spliced = _skip_splice(was, base[1], base[2], e, run, rec.counts)
                if spliced is not None:
                    self._bases[name] = (n, d, e, spliced)
                    return spliced
        text = rec.to_text()
        if type(d) is int and type(e) is int:
            self._bases[name] = (n, d, e, text)
        else:
            self._bases.pop(name, None)
        return text

    def step(self, rows: _Rows, log: ReplicaLog, deadline: float,
             clock: Callable[[], float] = time.perf_counter) -> bool:
        """Encode changed rows into ``log`` until ``deadline`` (``clock`` time); True when
        none is left (the log is then complete: ``mark_complete``)."""
        if log is not self._log:  # a new claim: every row goes into the new log
            self._log = log
            self._queue.clear()
            self._bases.clear()
            rows.all_dirty = rows.runs_dirty = True
        if rows.all_dirty:  # (rows changed unmarked, a load, an activation: all encoded whole)
            self._bases.clear()
        names, runs = rows.take_dirty()
        dirty = getattr(rows, "dirty", None)
        marks: Mapping[str, int] = getattr(dirty, "marks", {})
        dispatch_marks: Mapping[str, int] = getattr(rows, "dispatch_marks", {})
        skip_marks: Mapping[str, int] | None = getattr(rows, "skip_marks", None)
        queue = self._queue
        queue.update(dict.fromkeys(names))
        self._runs |= runs
        n = 0
        records = rows.records
        while queue:
            name, _ = queue.popitem()
            rec = records.get(name)
            key = row_key(name)
            if rec is None:
                log.remove(key)
                self._bases.pop(name, None)
            else:
                log.put(key, self._text(name, rec, marks, dispatch_marks, log, key,
                                        skip_marks),
                        rec.run_history.patch_view())
            n += 1
            # A row is ~20 us to encode (a 10,000-task table's rows, with their history):
            # looked at every 16 rows, a step overran its budget by ~0.3 ms and more.
            if n % 2 == 0 and clock() > deadline:
                return False
        if self._runs:
            self._runs = False
            log.put("k:node_runs", DUMP(dict(rows.node_runs)))
        log.mark_complete()
        return True


def _skip_splice(was: str, dispatched: int, decided: int, new_decided: int,
                 run: Any, counts: Any) -> str | None:
    """``was`` (a row's text, a run in flight) with ``decided`` and ``counts`` put in, as
    ``TaskRecord.to_text`` writes them; None where that text is not found as expected: the
    ``dispatched``/``decided``/``running`` run of it once only, the run's own text right after
    it, then ``counts`` (ints only: no nested text) and ``last`` (a quote inside a JSON
    string is escaped, so ``,"last":`` after ``counts`` is the key)."""
    if type(counts) is not dict or not all(type(v) is int for v in counts.values()):
        return None
    mark = f',"dispatched":{dispatched},"decided":{decided},"running":'
    at = was.find(mark)
    if at < 0 or was.find(mark, at + 1) >= 0:
        return None
    run_at = at + len(mark)
    run_text = DUMP(run)
    counts_at = run_at + len(run_text)
    if not (was.startswith(run_text, run_at) and was.startswith(',"counts":{', counts_at)):
        return None
    last_at = was.find(',"last":', counts_at)
    if last_at < 0:
        return None
    return (f'{was[:at]},"dispatched":{dispatched},"decided":{new_decided},"running":'
            f'{run_text},"counts":{DUMP(counts)}{was[last_at:]}')
