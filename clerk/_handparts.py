"""A graceful hand-over of a table over the message limit, in parts.

A leaving manager hands its whole table to its successor when the successor's replica is too far
behind for a delta (:meth:`clerk._corestate.CoreState.handover_state`: it joined moments ago, or
the manager took over moments ago and no member has acknowledged its new log yet). At 10,000
tasks that table is ~5 MB of text: one HANDOVER of it was over the codec's 1 MiB limit
(``MAX_MESSAGE_BYTES``), was never sent ("cannot send Handover"), and the successor took over
only later, by an election, from its replica as it was: the leaver's last updates were lost
and the slots of the failover window were skipped.

Rules:

* **Sized by encoded bytes.** The packed table's text travels as JSON strings inside the
  message's JSON: every quote and backslash is escaped again, a non-ASCII character is several
  bytes. A message's size is therefore measured by encoding (:func:`wire_bytes`), never by
  counting characters (``HANDOVER_WHOLE_CHARS`` counted characters: a "fitting" table of quotes
  was up to twice the limit).
* **Parts of one text.** The whole packed text is cut into strings (at most ``PACK_CHUNK``
  characters each, fewer where a message's room ends) and the strings into HANDOVERs of at most
  ``limit`` bytes each (:func:`handover_parts`). Part ``i`` of ``n`` carries
  ``{"packed": 1, "chunks": [...], "part": i, "of": n, "id": ...}``; the first also carries
  the member list. The successor joins the chunks in part order: exactly the packed table that
  one HANDOVER carried before (:class:`PartsInbox`). The first part also says which log and
  sequence the table is the whole of (``log``, ``upto``; a complete log only): the successor's
  replica then stands there, caught up (it holds exactly that log's table as of that
  sequence), and its COORDINATOR says so. The leaver stops on that; a successor that took
  over without the parts (elected while a part was lost) says where its replica stands
  instead, and the leaver sends it the rows it lacks as a merge (``clerk._handover``,
  "Graceful leave").
* **Taken over with every part.** The successor holds the parts of the current manager's
  hand-over (one hand-over at a time, by sender, incarnation, term and ``id``; a new ``id``
  replaces it: the leaver handed over again) and takes over only once it has all ``n``: never
  with part of a table. Each part is a sign of life of the leaver (the successor does not
  suspect it while the parts arrive). A part lost is not asked for. The successor, no longer
  hearing from the leaver, elects after ``manager_timeout`` (below ``handover_timeout``), wins
  (the leaver's choice was the highest-ranked member) with its replica as it was, and says in
  its COORDINATOR where that replica stands; the leaver sends the rows it lacks as a
  confirmed merge (``clerk._handover.successor_took_over``). If the leaver's
  ``handover_timeout`` comes first, it hands over again, with a new ``id``
  (``clerk._handover.leave_timeout``).
* **Parts are dropped with the claim they came under.** A successor that takes a claim any
  other way (an election, above) or follows another one than the leaver's drops the parts it
  holds (:meth:`PartsInbox.keep_only`): they can never be completed into a table it would take
  over with, and held, they were up to a whole table's text (~5 MB at 10,000 tasks) kept until
  the next hand-over to this node. A candidate keeps them: the rest may still come (a delayed
  part), and the hand-over is then taken as it would have been.
* **Mixed builds.** Only a successor whose incarnation carries ``PARTS_MARK`` is sent parts:
  an older build would take a part for the whole table. A part is never a merge: a manager
  drops one (``handover_part``), a follower does not pass one on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clerk._codec import MAX_MESSAGE_BYTES, encode
from clerk._messages import Handover, Json, MemberInfo, Peer, TableAt
from clerk._record import PACK_CHUNK

__all__ = [
    "MAX_PARTS",
    "PartsInbox",
    "handover_parts",
    "is_part",
    "wire_bytes",
]

#: At most this many parts per hand-over (~60 MB of table text at the real limit): a part that
#: says more is malformed, so a forged one cannot make the successor wait for ever.
MAX_PARTS = 4096

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def wire_bytes(text: str) -> int:
    """The bytes of ``text`` as a JSON string in a message (quotes and escapes, UTF-8)."""
    if text.isascii() and text.isprintable():
        # (Cheaper than encoding, and exact: printable ASCII needs an escape only for quotes
        # and backslashes.)
        return len(text) + 2 + text.count('"') + text.count("\\")
    return len(_ENCODE(text).encode())


def is_part(state: Json) -> bool:
    """Is ``state`` a part of a graceful hand-over (see the module docstring)?"""
    return isinstance(state, Mapping) and "part" in state and state.get("packed") == 1


def _overhead(me: Peer, term: int, members: tuple[MemberInfo, ...], n: int,
              extra: dict[str, Any]) -> int:
    """The bytes of a part's HANDOVER without its chunks (``n``: a bound of the part count)."""
    probe = Handover(me, term, members, {"packed": 1, "chunks": [], "part": n, "of": n,
                                         "id": "x" * 24, **extra})
    return sum(len(f) for f in encode(probe, max_bytes=1 << 40))


def handover_parts(me: Peer, term: int, members: tuple[MemberInfo, ...], text: str,
                   hand_id: str, limit: int = MAX_MESSAGE_BYTES,
                   at: TableAt | None = None) -> list[Handover]:
    """The HANDOVERs that carry the packed table ``text`` in parts of at most ``limit`` bytes
    each (the first with ``members`` and ``at``: the log and sequence the table is the whole
    of; see the module docstring). At least one."""
    first: dict[str, Any] = {} if at is None else {"log": at.log, "upto": at.seq}
    rest = limit - _overhead(me, term, (), MAX_PARTS, {})
    room = limit - _overhead(me, term, members, MAX_PARTS, first)
    groups: list[list[str]] = [[]]
    used = 0
    pos = 0
    while pos < len(text):
        left = room - used - 1  # (the comma between strings)
        n = min(PACK_CHUNK, len(text) - pos, left - 2)
        piece = text[pos:pos + n] if n > 0 else ""
        size = wire_bytes(piece) if piece else 0
        while size > left and n > 1:
            n = max(1, n * left // size - 1)
            piece = text[pos:pos + n]
            size = wire_bytes(piece)
        if not piece or size > left:
            if not groups[-1] and len(groups) > 1:
                raise ValueError(f"a part of {limit} bytes holds no table text")
            groups.append([])
            room, used = rest, 0
            continue
        groups[-1].append(piece)
        used += size + 1
        pos += n
    count = len(groups)
    return [Handover(me, term, members if i == 0 else (),
                     {"packed": 1, "chunks": chunks, "part": i, "of": count, "id": hand_id,
                      **(first if i == 0 else {})})
            for i, chunks in enumerate(groups)]


class PartsInbox:
    """A successor's parts of the current manager's hand-over, until it has all of them."""

    def __init__(self) -> None:
        self._key: tuple[str, str, int, str] | None = None
        self._parts: dict[int, list[str]] = {}
        self._of = 0
        self._members: tuple[MemberInfo, ...] = ()
        self._at: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._parts)

    def add(self, msg: Handover) -> Handover | None:
        """Keep part ``msg``; the whole hand-over (one HANDOVER of the packed table, with the
        first part's members) once every part is here, else None. A malformed part is
        refused (``ValueError``)."""
        state: Any = msg.state
        i, of, hand_id, chunks = (state.get("part"), state.get("of"), state.get("id"),
                                  state.get("chunks"))
        if not (type(i) is int and type(of) is int and 0 <= i < of <= MAX_PARTS
                and isinstance(hand_id, str) and isinstance(chunks, list)
                and all(isinstance(c, str) for c in chunks)):
            raise ValueError("a malformed hand-over part")
        s = msg.sender
        key = (s.name, s.incarnation, msg.term, hand_id)
        if key != self._key or of != self._of:
            self.clear()
            self._key, self._of = key, of
        self._parts[i] = chunks
        if i == 0:
            self._members = msg.members
            log, upto = state.get("log"), state.get("upto")
            self._at = {"log": log, "upto": upto} if (isinstance(log, str)
                                                      and type(upto) is int) else {}
        if len(self._parts) < of:
            return None
        whole = [c for j in range(of) for c in self._parts[j]]
        members, at = self._members, self._at
        self.clear()
        return Handover(s, msg.term, members, {"packed": 1, "chunks": whole, **at})

    def keep_only(self, name: str | None, term: int) -> None:
        """Drop the parts held unless they are of a hand-over by ``name`` at ``term`` (the
        claim this node follows now; ``None``: it took a claim itself, drop any)."""
        if self._key is not None and (self._key[0], self._key[2]) != (name, term):
            self.clear()

    def clear(self) -> None:
        self._key = None
        self._parts = {}
        self._of = 0
        self._members = ()
        self._at = {}
