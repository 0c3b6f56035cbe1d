"""A member's OFFER to a new manager, built in slices between loop turns.

A follower that starts following a new manager sends it the rows it holds with a state
(:mod:`clerk._replication`, "OFFERs": which rows). Built in one step, that parsed every row of
the replica its scheduler had not seen (a follower parses the table only when it needs it):
~0.7 s at 10,000 tasks, ~1 s for 4,000 on a loaded machine, then packed them all again
(~0.3 s at 10,000 for every row), in one step of the loop. Rules:

* **The rows of the moment it follows.** The job starts from the rows the replica (or this
  node's own complete log) holds when the node starts following (:func:`offer_job`: their
  texts, and which of them are newer than where the new manager's table stands, taken at
  once). The new manager's deltas replace the replica's rows from then on; what this node held
  before them is what the OFFER is for.
* **Parse only what must be merged.** A row whose text the scheduler already loaded is the
  scheduler's record (the replica's row merged with this node's own state). A row not loaded
  whose task holds a state in the scheduler (from the data directory, or an older row) is
  loaded now (``Scheduler.load_rows``: a state of ours that is better is kept, ``kept_own``)
  and is then the same. A row not loaded whose task holds no state here is offered as its
  text, unparsed (a row that says it has no state, ``NO_STATE``, is left out as before; a
  run in flight in it is cleared as before). The rows offered are the same as before: all
  with a state, or to a fellow member that said where its table stands only those it may
  lack (``clerk._replica.offer_keys``), those whose state we kept over the replica's, and
  those the replica lacks.
* **Slices.** The rows are gone through, and the parts packed, in slices of ``LOAD_BUDGET``
  (:class:`clerk._statusjob.Slice`); a part per turn is sent (each is encoded as it leaves).
  Parts are of ``OFFER_PART_CHARS`` of text, more when a table would need more than
  ``OFFER_MOST_PARTS`` of them (a manager that is still loading keeps at most
  ``MAX_OFFER_PARTS`` per member), never more than ``OFFER_CHARS`` (the message limit).
* **Numbered parts.** Every part's packed table also says which part of how many of which
  OFFER it is (``"part": i, "of": n, "id": ...``, :func:`number_parts`; a manager of an
  older build reads ``packed`` and ``chunks`` only). A manager counts a member as having
  offered (``Scheduler.offer_from``: an ``init``, or a dispatch from a table that waits for
  the members' states, stops waiting for it) only once it holds every part of one of its
  OFFERs (:class:`OfferParts`); each part is merged as it comes. Before, the first part of an
  OFFER over ``OFFER_PART_CHARS`` (a hundred or so tasks with a state and a run history)
  ended the wait: a task whose state was in a later part ran from ``init``, or from an older
  state, while a live member held a newer one. An OFFER without numbers (an older build's)
  counts at its first part, as before; so does a malformed number (a forgery can only end a
  wait, which a member's silence ends anyway).
* **Runs in flight.** The last part also lists the runs queued or running on this node as
  it leaves (:mod:`clerk._offerruns`): the new manager adopts them, so a run its table never
  showed is neither overlapped nor loses its result.
* **Again when the link comes back.** A follower whose link to its manager comes up again
  builds and sends its OFFER anew (``OfferAgain``, :mod:`clerk._core`): one sent while the
  link was down may have been lost, and a new manager may be holding its dispatches for it.
* **Results after the OFFER.** Until the last part is sent, this node's results wait for it
  (the new manager applies a result to the row its run started from, which may be only in our
  OFFER); then every unacknowledged one goes, as at once before.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, Protocol

from clerk._messages import Peer
from clerk._offerruns import OfferedRun, with_runs
from clerk._record import PACK_CHUNK, TaskRecord
from clerk._replica import DUMP, HANDOVER_WHOLE_CHARS, table_text
from clerk._statusjob import Slice

__all__ = ["MAX_OFFER_PARTS", "NO_STATE", "OFFER_CHARS", "OFFER_MOST_PARTS", "OFFER_PART_CHARS",
           "OfferJob", "OfferParts", "number_parts", "offer_job", "offer_rows"]

#: Table text per OFFER message at most: every row of a big table (10,000 tasks: ~5 MB) goes
#: in several OFFERs, each within the 1 MiB message limit (as a hand-over's whole table).
OFFER_CHARS = HANDOVER_WHOLE_CHARS
#: Table text per OFFER message as a rule: a part is encoded in one step as it leaves (and
#: decoded and merged in one step of the manager): ~0.6 ms for 128 Ki characters, ~2-3 ms for
#: ``OFFER_CHARS``, on a loaded machine.
OFFER_PART_CHARS = 64 * 1024
#: Parts of one member's OFFER a manager keeps while they wait (a 10,000-task table is ~10
#: of ``OFFER_CHARS``): the bound is for forgeries.
MAX_OFFER_PARTS = 64
#: An OFFER's parts at most, unless each would be over ``OFFER_CHARS`` (then bigger ones,
#: within a manager's ``MAX_OFFER_PARTS`` with room to spare): 10,000 tasks of small states
#: (~5.4 MB) are 48 parts of ~110 Ki characters.
OFFER_MOST_PARTS = MAX_OFFER_PARTS * 3 // 4
#: How a row that has no state begins (``TaskRecord.to_text``: ``state`` first). A row of
#: another form (an older build's) is taken to have one: offering it costs a few bytes.
NO_STATE = '{"state":null,"has_state":false,'
_NOT_RUNNING = '"running":null'


class _Sched(Protocol):
    """What the job needs of the scheduler (clerk._adopt, clerk._schedstate)."""

    @property
    def records(self) -> Mapping[str, TaskRecord]: ...
    @property
    def kept_own(self) -> set[str]: ...
    @property
    def dirty(self) -> Any: ...

    def load_rows(self, items: Any, start: int, deadline: float) -> int: ...


Parts = Generator[None, None, list[Any]]


def _record_text(rec: TaskRecord) -> str:
    if rec.running is None:
        return rec.to_text()
    row = rec.to_json()
    row["running"] = None  # (the new manager adopts runs from its own table, not from OFFERs)
    return str(DUMP(row))


def _row_text(text: str) -> str:
    """A replica's row as offered: without its run in flight (a state in it mentioning
    ``"running":null`` only leaves a run in the row: the manager ignores it)."""
    if _NOT_RUNNING in text:
        return text
    try:
        row = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(row, dict):
        row["running"] = None
        return str(DUMP(row))
    return text


def offer_rows(sched: _Sched, rows: Mapping[str, str | None],
               newer: Callable[[str], bool] | None, seen: dict[str, str | None],
               sl: Slice) -> Parts:
    """The OFFER's parts (packed tables) of the rows ``rows`` (key -> text: a copy of the
    replica's or the log's) merged with ``sched``'s own states (see the module docstring),
    yielding whenever ``sl`` is over. ``newer``: a key's row may be newer than what the new
    manager holds (None: every row is offered). ``seen``: the row texts ``sched`` loaded (a
    row loaded here is added)."""
    records, kept = sched.records, sched.kept_own
    # Rows loaded before whose state we kept over theirs (a load here updates ``kept``).
    kept_keys = {"t:" + name for name in kept}
    offered: list[tuple[str, str]] = []
    size = 0
    skipped = 0
    for key, text in rows.items():
        if text is None:
            continue
        fresh = newer is None or newer(key)
        loaded = seen.get(key) is text
        if loaded and not fresh and key not in kept_keys:
            # The common row of an OFFER to a fellow: loaded, and the new manager holds it.
            # (Cheap: the clock is looked at every 16 of them.)
            skipped += 1
            if not skipped & 15 and sl.over():
                yield
            continue
        if not key.startswith("t:"):
            continue
        name = key[2:]
        if not loaded:
            rec = records.get(name)
            if rec is None or not rec.has_state:
                if fresh and not text.startswith(NO_STATE):
                    offered.append((key, _row_text(text)))
                    size += len(key) + len(text) + 4
                if sl.over():
                    yield
                continue
            # Our own state (our data directory's, or an older row of the replica) and this
            # row: merged as a follow merges them (a better state of ours is kept).
            sched.load_rows([(key, text)], 0, math.inf)
            seen[key] = text
            for watch in sched.dirty.watchers:
                watch.add(name)
        rec = records.get(name)
        if rec is not None and rec.has_state and (fresh or name in kept):
            row = _record_text(rec)
            offered.append((key, row))
            size += len(key) + len(row) + 4
        if sl.over():
            yield
    # States of ours the rows do not hold (a task only our data directory has).
    for name in list(records):
        rec = records.get(name)
        if rec is not None and rec.has_state and rows.get(key := "t:" + name) is None:
            row = _record_text(rec)
            offered.append((key, row))
            size += len(key) + len(row) + 4
        if sl.over():
            yield
    limit = min(OFFER_CHARS, max(OFFER_PART_CHARS, math.ceil(size / OFFER_MOST_PARTS)))
    parts: list[Any] = []
    group: list[tuple[str, str | None]] = []
    used = 0
    # Taken off the list as they are packed: its rows' texts are let go a part at a time, not
    # all at once when the job ends (10,000 rows: ~1 ms of one step).
    offered.reverse()
    while offered:
        key, row = offered.pop()
        grow = len(key) + len(row) + 4
        if group and used + grow > limit:
            parts.append(_packed(group))
            group, used = [], 0
            if sl.over():
                yield
        group.append((key, row))
        used += grow
    parts.append(_packed(group))
    return number_parts(parts)


def _packed(group: list[tuple[str, str | None]]) -> dict[str, Any]:
    """Rows as a packed table (``clerk._record.pack_table``'s form), from their texts."""
    text = table_text(group) if group else '{"tasks":{}}'
    return {"packed": 1, "chunks": [text[i:i + PACK_CHUNK]
                                    for i in range(0, len(text), PACK_CHUNK)]}


_OFFER_IDS = itertools.count(1)


def number_parts(parts: list[Any]) -> list[Any]:
    """``parts`` (packed tables, :func:`clerk._record.pack_table`'s form: dicts) as the
    parts of one OFFER, numbered in place (see the module docstring)."""
    ident = next(_OFFER_IDS)
    for i, part in enumerate(parts):
        part.update(part=i, of=len(parts), id=ident)
    return parts


def _numbers(state: Any) -> tuple[int, int, Any] | None:
    """(part, of, id) of an OFFER's part; None if it has none or they make no sense."""
    if not isinstance(state, Mapping):
        return None
    part, of, ident = state.get("part"), state.get("of"), state.get("id")
    if (type(part) is not int or type(of) is not int or not 0 <= part < of <= MAX_OFFER_PARTS
            or not isinstance(ident, (int, str))):
        return None
    return part, of, ident


class OfferParts:
    """The parts of the OFFERs a manager has from each member (see the module docstring):
    :meth:`add` says when a member's OFFER is whole."""

    def __init__(self) -> None:
        # member name -> ((incarnation, term, id), parts held of it, how many it has)
        self._open: dict[str, tuple[tuple[str, int, Any], set[int], int]] = {}

    def add(self, sender: Peer, term: int, state: Any) -> bool:
        """A part of ``sender``'s OFFER (following claim ``term``) arrived: True if that
        OFFER is now whole (or was never in numbered parts)."""
        numbers = _numbers(state)
        if numbers is None:
            self._open.pop(sender.name, None)
            return True
        part, of, ident = numbers
        key = (sender.incarnation, term, ident)
        held = self._open.get(sender.name)
        if held is None or held[0] != key or held[2] != of:
            held = (key, set(), of)
            self._open[sender.name] = held
        held[1].add(part)
        if len(held[1]) < of:
            return False
        del self._open[sender.name]
        return True

    def clear(self) -> None:
        """Forget every part (this node no longer manages, or manages anew)."""
        self._open.clear()


class OfferJob:
    """An OFFER under way to ``to`` (see the module docstring): :meth:`step` builds it in a
    slice per call, then sends a part per call (``send``; the first in the slice that built
    it, unless that slice is over); ``done`` once the last is sent."""

    def __init__(self, to: str, steps: Parts, send: Callable[[Any], None],
                 sl: Slice | None = None,
                 runs: Callable[[], Iterable[OfferedRun]] | None = None) -> None:
        self.to = to
        #: The runs in flight on this node as the last part leaves (clerk._offerruns).
        self._runs = runs
        self._steps = steps
        self._send = send
        self._parts: list[Any] | None = None
        self.slice = sl if sl is not None else Slice()
        self.done = False
        self.slices = 0

    def step(self, budget: float) -> bool:
        """One slice (``budget`` s) of building, or one part sent; True once all are sent."""
        if self.done:
            return True
        self.slices += 1
        if self._parts is None:
            self.slice.start(budget)
            try:
                next(self._steps)
                return False
            except StopIteration as stop:
                self._parts = list(stop.value)
            if self.slice.over():
                return False  # (the parts leave from the next turn on, one a turn)
        part = self._parts.pop(0)
        self.done = not self._parts
        if self.done and self._runs is not None:
            part = with_runs(part, self._runs())
        self._send(part)
        return self.done


def offer_job(to: str, sched: _Sched, rows: Mapping[str, str | None],
              newer: Callable[[str], bool] | None, seen: dict[str, str | None],
              send: Callable[[Any], None],
              runs: Callable[[], Iterable[OfferedRun]] | None = None) -> OfferJob:
    """An :class:`OfferJob` of :func:`offer_rows` over ``rows`` (a copy taken now: see the
    module docstring); ``runs``: this node's runs in flight, listed in the last part."""
    sl = Slice()
    return OfferJob(to, offer_rows(sched, rows, newer, seen, sl), send, sl, runs)
