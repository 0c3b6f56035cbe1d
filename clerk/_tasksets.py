"""Members' task sets by reference: a digest in the member list, each set fetched once.

Each member announces the tasks it has loaded (:mod:`clerk._deploy`: a name per task, with
its parameters and the time the member started). The member list the manager replicates used
to carry every member's every entry: at 10,000 tasks a member's entries are ~0.25 MB, so from
4 or 5 members on a WELCOME or a HEARTBEAT with the list was over the 1 MiB message limit and
was not sent (a fifth node could not join), and every change of the list sent and validated
all of it again, to every member. Rules:

* **A set and its digest.** A member's entries without their start time (the ``"s"`` key of
  each entry with parameters, :func:`base_of`) are its *set*: equal on every member that runs
  the same build. Its digest (:func:`digest_of`) is a BLAKE2b-128 of the set's JSON text.
  A member's row in the list then says ``digest`` and ``started`` instead of its entries
  (``MemberInfo.tasks`` empty), and the receiver puts the entries back together
  (:func:`with_started`: exactly the entries the member announced). Entries that do not
  split that way (written by hand, or announced with different start times) are a set as they
  are, with no ``started``.
* **Who gets which form.** Only a node whose incarnation carries :data:`DIGEST_MARK` reads
  digests (an older build refuses a member row with fields it does not know, so the whole
  message); every other node gets the entries, as before. JOINs carry the joiner's own
  entries as before (one member's set: within the limit, and the manager needs it).
* **Fetching.** A node that is told a digest whose set it does not hold asks for it
  (TASKS_QUERY), first whoever sent it the list (the manager holds the set of every member
  that joined it), then, every ``FETCH_RETRY``, the members that announce that digest in turn
  (each holds its own). Any node that holds a set answers with all of it, in TASKS_REPLY parts
  of at most ``PART_CHARS`` characters. A set is taken only whole, and only if its digest is
  the one asked for (a forged or mixed reply is dropped); parts of digests nobody asked for
  are dropped. Each digest is fetched once: members running one build share one set.
* **Until it arrives** a row keeps the entries it had (a member that re-announces keeps its
  previous set, as the rolling-deploy resolver does), or none (a new member is not eligible
  for runs of tasks nobody else has until its set is known). A set that never comes is asked
  for again, forever, at most every ``FETCH_RETRY``.
* **Bounded memory.** Sets no row refers to are dropped once more than ``KEEP_SETS`` are
  held; at most ``MAX_FETCHES`` fetches are assembled at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clerk._deploy import SEP

__all__ = [
    "DIGEST_MARK",
    "FETCH_RETRY",
    "KEEP_SETS",
    "MAX_FETCHES",
    "MAX_PARTS",
    "PART_CHARS",
    "Fetch",
    "TaskSets",
    "base_of",
    "digest_of",
    "by_digest",
    "with_entries",
    "parts_of",
    "reads_digests",
    "split",
    "with_started",
]

#: In a node's incarnation: it reads member lists by digest and answers TASKS_QUERY.
DIGEST_MARK = "+d"
#: A set asked for and not received whole is asked for again (of the next holder) after this.
FETCH_RETRY = 1.0
#: Entries' characters per TASKS_REPLY part (the message limit is 1 MiB; a part stays small
#: enough to be encoded and decoded in a few milliseconds of the loop).
PART_CHARS = 192 * 1024
#: Sets kept beyond those the rows refer to.
KEEP_SETS = 16
#: Fetches assembled at once (parts of others are dropped until one ends).
MAX_FETCHES = 64
#: Parts of one set, at most (a forged reply cannot make a node hold more than this many
#: messages' worth for one fetch; a real set of 10,000 tasks is 2).
MAX_PARTS = 64
_T_KEY = '"t":'
_S_BEFORE = re.compile(r'"s":(-?[0-9][0-9.eE+-]*),$')


def reads_digests(incarnation: str) -> bool:
    """The node of this incarnation reads member lists by digest."""
    return DIGEST_MARK in incarnation


def base_of(entries: Sequence[str]) -> tuple[tuple[str, ...], float | None]:
    """``(set, started)`` of announced entries: each entry with parameters without its start
    time, and that time; ``(entries, None)`` when they do not split exactly (see the module
    docstring)."""
    fast = _base_as_announced(entries)
    if fast is not None:
        return fast
    started: float | None = None
    out: list[str] = []
    for entry in entries:
        cut = _cut(entry)
        if cut is None:
            if SEP in entry:
                return tuple(entries), None
            out.append(entry)
            continue
        base, s = cut
        if started is not None and s != started:
            return tuple(entries), None
        started = s
        out.append(base)
    base_set = tuple(out)
    if started is None:
        return base_set, None
    if with_started(base_set, started) != tuple(entries):
        return tuple(entries), None  # (not written as clerk._deploy.announce writes them)
    return base_set, started


def _base_as_announced(entries: Sequence[str]) -> tuple[tuple[str, ...], float] | None:
    """:func:`base_of` of entries as :func:`clerk._deploy.announce` writes them (the start
    time ``"s"`` of each with parameters, written alike, just before its target ``"t"``): one
    look per entry where the general path (a pattern search per entry, and the entries made
    again to check the cut) took ~10 ms for 10,000 on a manager's loop, at every JOIN. None:
    not such entries (the general path decides). What it cuts is what :func:`_cut` cuts (the
    same ``"s"`` text right before the last ``"t":``), and putting it back
    (:func:`with_started`) gives the entries again, as the start time's text is
    ``json.dumps``'s: no check of each entry afterwards."""
    first = next((e for e in entries if SEP in e), None)
    cut = _cut(first) if first is not None else None
    if first is None or cut is None:
        return None
    mark = '"s":' + json.dumps(cut[1]) + ","
    n = len(mark)
    out: list[str] = []
    for entry in entries:
        if SEP not in entry:
            out.append(entry)
            continue
        k = entry.rfind(_T_KEY)
        if k < n or not entry.startswith(mark, k - n):
            return None
        out.append(entry[:k - n] + entry[k:])
    return tuple(out), cut[1]


def _cut(entry: str) -> tuple[str, float] | None:
    """An entry with parameters without its start time, and that time (None: not such an
    entry). The parameters are compact JSON with sorted keys, so the start time ``"s"`` is
    just before the target ``"t"`` (always there); a ``"t":`` can only be a key (a quote in
    a string value is escaped), and the only one after the top level's is none (``"u"`` and
    ``"z"`` hold plain strings), so the top level's is the last. Checked by the caller
    against :func:`with_started`."""
    k = entry.rfind(_T_KEY)
    if k < 0 or SEP not in entry:
        return None
    m = _S_BEFORE.search(entry, max(0, k - 48), k)  # ($: ending at k)
    if m is None:
        return None
    try:
        started = float(m.group(1))
    except ValueError:
        return None
    return entry[:m.start()] + entry[k:], started


def with_started(base: Sequence[str], started: float | None) -> tuple[str, ...]:
    """The entries a member announced, from its set and start time (:func:`base_of`'s
    inverse: the start time put back before the target, as ``json.dumps`` writes it)."""
    if started is None:
        return tuple(base)
    s = '"s":' + json.dumps(started) + ","
    out: list[str] = []
    for entry in base:
        k = entry.rfind(_T_KEY) if SEP in entry else -1
        out.append(entry if k < 0 else entry[:k] + s + entry[k:])
    return tuple(out)


def digest_of(base: Sequence[str]) -> str:
    """The digest of a set (hex, 32 characters)."""
    text = json.dumps(list(base), separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def split(entries: Sequence[str]) -> tuple[str, tuple[str, ...], float | None]:
    """``(digest, set, started)`` of announced entries."""
    base, started = base_of(entries)
    return digest_of(base), base, started


def parts_of(base: Sequence[str], chars: int = PART_CHARS) -> list[tuple[str, ...]]:
    """A set cut into parts of at most ``chars`` characters (at least one entry each; an
    empty set is one empty part)."""
    parts: list[tuple[str, ...]] = []
    cur: list[str] = []
    size = 0
    for entry in base:
        if cur and size + len(entry) + 3 > chars:
            parts.append(tuple(cur))
            cur, size = [], 0
        cur.append(entry)
        size += len(entry) + 3
    parts.append(tuple(cur))
    return parts


@dataclass
class Fetch:
    """A set asked for: when last, how many times, and the parts received so far."""

    asked_at: float
    attempts: int = 1
    parts: int = 0
    got: dict[int, tuple[str, ...]] = field(default_factory=dict)


class TaskSets:
    """The sets this node holds (digest -> set), the entries rebuilt from them (per digest and
    start time), and the fetches under way. Pure: no I/O, time comes in as ``now``."""

    def __init__(self) -> None:
        self.sets: dict[str, tuple[str, ...]] = {}
        self._entries: dict[tuple[str, float | None], tuple[str, ...]] = {}
        self._at: dict[str, list[tuple[int, int]]] = {}  # digest -> where "s" goes, per entry
        self._parts: dict[str, list[tuple[str, ...]]] = {}  # digest -> its TASKS_REPLY parts
        self.fetches: dict[str, Fetch] = {}
        #: A row began waiting for a set since the last look (ask at once, not at a retry).
        self.fresh = False
        self.fetched = 0  # sets received whole (counters for status and tests)
        self.refused = 0  # sets received whole whose digest was not the one asked for

    def add(self, digest: str, base: tuple[str, ...]) -> None:
        """A set this node holds (its own, a JOINer's, or fetched). One that was being
        fetched (our own, announced since: a node's workers became ready after the list
        came) is a look due now: the rows waiting for it take it there
        (clerk._setfetch.fetch_sets), as no reply and no retry would come for it."""
        self.sets.setdefault(digest, base)
        if self.fetches.pop(digest, None) is not None:
            self.fresh = True

    def entries(self, digest: str, started: float | None) -> tuple[str, ...] | None:
        """The entries of a member that announced ``digest`` and ``started`` (one tuple per
        pair, so an unchanged member hands the resolver the same object); None if the set is
        not held."""
        key = (digest, started)
        got = self._entries.get(key)
        if got is None:
            base = self.sets.get(digest)
            if base is None:
                return None
            if started is None:
                got = base
            else:
                # Only the entries with parameters change (at most MAX_ANNOUNCE_CHARS of
                # them): where each takes the start time is found once per set.
                at = self._at.get(digest)
                if at is None:
                    at = self._at[digest] = [(i, e.rfind(_T_KEY)) for i, e in enumerate(base)
                                             if SEP in e and _T_KEY in e]
                text = '"s":' + json.dumps(started) + ","
                out = list(base)
                for i, k in at:
                    e = out[i]
                    out[i] = e[:k] + text + e[k:]
                got = tuple(out)
            self._entries[key] = got
        return got

    def parts(self, digest: str) -> list[tuple[str, ...]] | None:
        """The set's TASKS_REPLY parts (:func:`parts_of`), cut once per set: every member
        that joins with a build asks for its set (10,000 entries: ~1 ms to cut); None if
        the set is not held."""
        got = self._parts.get(digest)
        if got is None:
            base = self.sets.get(digest)
            if base is None:
                return None
            got = self._parts[digest] = parts_of(base)
        return got

    def due(self, digest: str, now: float) -> int | None:
        """The attempt number (0: the first) if ``digest`` should be asked for now, else
        None (asked less than ``FETCH_RETRY`` ago, or too many fetches under way)."""
        f = self.fetches.get(digest)
        if f is None:
            if len(self.fetches) >= MAX_FETCHES:
                return None
            self.fetches[digest] = Fetch(now)
            return 0
        if now < f.asked_at + FETCH_RETRY:  # (as next_retry computes it: no busy loop)
            return None
        f.asked_at = now
        f.attempts += 1
        return f.attempts - 1

    def next_retry(self) -> float:
        """When to look again (-inf: now, a row began waiting)."""
        if self.fresh:
            return float("-inf")
        return min((f.asked_at + FETCH_RETRY for f in self.fetches.values()),
                   default=float("inf"))

    def part(self, digest: str, part: int, parts: int, entries: tuple[str, ...]) -> str:
        """A TASKS_REPLY part: ``"done"`` (the set is whole and verified: in :attr:`sets`),
        ``"more"`` (waiting for other parts), or a reason it was dropped (``"unasked"``,
        ``"parts"``, ``"digest"``)."""
        f = self.fetches.get(digest)
        if f is None:
            return "unasked"
        if not 1 <= part <= parts or (f.parts and parts != f.parts) or parts > MAX_PARTS:
            return "parts"
        if f.parts != parts:
            f.parts, f.got = parts, {}
        f.got[part] = entries
        if len(f.got) < parts:
            return "more"
        base = tuple(e for i in range(1, parts + 1) for e in f.got[i])
        del self.fetches[digest]
        if digest_of(base) != digest:
            self.refused += 1
            return "digest"
        self.sets[digest] = base
        self.fetched += 1
        return "done"

    def crowded(self, rows: int) -> bool:
        """More sets or rebuilt entries held than ``rows`` rows can use (and some spare)."""
        return max(len(self.sets), len(self._entries)) > rows + KEEP_SETS

    def trim(self, used: Iterable[tuple[str, float | None]]) -> None:
        """Drop the sets and rebuilt entries no row uses (``used``: the rows' digests and
        start times)."""
        pairs = set(used)
        keep = {d for d, _ in pairs}
        self.sets = {d: b for d, b in self.sets.items() if d in keep}
        self._entries = {k: e for k, e in self._entries.items() if k in pairs}
        self._at = {d: a for d, a in self._at.items() if d in keep}
        self._parts = {d: p for d, p in self._parts.items() if d in keep}
        for d in [d for d in self.fetches if d not in keep]:
            del self.fetches[d]


# --- for the simulator: what a node of an older build sends and reads --------------------------


def by_digest(msg: Any) -> bool:
    """Does ``msg`` hold a member list by digest (which an older build refuses whole)?"""
    members = getattr(msg, "members", None)
    return members is not None and any(m.digest is not None for m in members)


def with_entries(msg: Any, tasks_of: Callable[[str], tuple[str, ...] | None]) -> Any:
    """``msg`` with its member list as a node of an older build sends it: each row with the
    entries (``tasks_of(name)``: the sender's, None: as they are)."""
    members = getattr(msg, "members", None)
    if not members or not by_digest(msg):
        return msg
    rows = []
    for m in members:
        tasks = tasks_of(m.name) if m.digest is not None else None
        rows.append(m if tasks is None and m.digest is None else dataclasses.replace(
            m, tasks=tasks or (), digest=None, started=None))
    return dataclasses.replace(msg, members=tuple(rows))
