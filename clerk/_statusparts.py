"""A status too big for one message travels in parts: the node's side and the client's.

A node's status holds a row per task (~300-600 bytes each with its last run and counters):
from ~2,000 tasks the whole of it is over the 1 MiB message limit (``MAX_MESSAGE_BYTES``), and
a STATUS_REPLY that cannot be encoded was never sent (``clerk status`` timed out). So:

* A status that fits is one STATUS_REPLY, as ever.
* One that does not: the first STATUS_REPLY holds the summary (manager, term, members, the
  node's counters: every key but ``tasks``, and the members' ``tasks`` lists too when those
  alone are over the budget), plus ``"parts": {"snapshot", "count", "keys"}``. The rest (the
  JSON text of ``{key: value}`` for the ``keys`` left out) is cut into strings of at most
  ``PACK_CHUNK`` characters, grouped into ``count`` parts of at most ``PART_BYTES`` encoded
  bytes each. The client asks for each with a STATUS carrying ``snapshot`` and ``part``
  (1 .. count) and puts the keys back: the caller gets the same dict as from one message.
* The parts are cut from one snapshot taken at the first request, kept by the node for
  ``SNAPSHOT_TTL`` s (at most ``MAX_SNAPSHOTS`` of them, the oldest dropped first): every part
  belongs to the same moment, and asking for them costs the loop no new status. A part of a
  snapshot the node no longer holds is answered ``{"gone": snapshot}``: the client starts
  again (a whole status or nothing, never a mix of two moments).

Wire compatibility: STATUS's ``part`` and ``snapshot`` are left out while None
(``OMIT_NONE``), so a plain STATUS is what it always was, and a client asks for parts only
from a node whose reply announced them (an older node never does). An older client asking a
newer node about a big cluster gets the summary without ``tasks`` (it got nothing before).
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from typing import Any

from clerk._codec import MAX_MESSAGE_BYTES
from clerk._messages import Status
from clerk._record import PACK_CHUNK
from clerk._statusjob import Slice, Steps, release, run

__all__ = [
    "MAX_SNAPSHOTS",
    "LOOP_PART_BYTES",
    "PART_BYTES",
    "SNAPSHOT_TTL",
    "StatusParts",
    "join_parts",
    "split_status",
]

#: Encoded bytes of a part's (or the summary's) JSON at most: the message limit less room for
#: the rest of the STATUS_REPLY (sender, term, frame headers).
PART_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
#: What a node puts in one message of a status (the whole of a small one, its summary, a
#: part): encoding a message is one step of the loop, ~0.6 ms for 96 KiB on a loaded machine
#: (a 1 MiB part was ~6 ms). 10,000 tasks are then ~55 parts, each a request of the client's.
LOOP_PART_BYTES = 96 * 1024
#: Seconds a node keeps the parts of a status after the first request (a client asks for them
#: at once: 10,000 tasks are ~6 parts, tens of milliseconds).
SNAPSHOT_TTL = 30.0
#: Snapshots kept at most (each is the status's text: ~5 MB at 10,000 tasks).
MAX_SNAPSHOTS = 4
_DUMP = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
Steps2 = Generator[None, None, tuple[dict[str, Any], list[list[str]]]]


def _size(value: Any) -> int:
    return len(_DUMP(value).encode())


def split_status(st: dict[str, Any], budget: int = PART_BYTES,
                 chunk: int = PACK_CHUNK) -> tuple[dict[str, Any], list[list[str]]]:
    """``st`` as a summary within ``budget`` and the parts of the rest (none if it fits).

    The summary is ``st`` less ``tasks`` (and less the members' ``tasks`` lists if it is still
    over the budget), with ``"parts": {"count", "keys"}`` (no ``snapshot``: the caller adds
    it). Each part is a list of strings, the consecutive pieces of one JSON text. The task
    rows are encoded once (10,000 of them: ~5 MB, ~0.1 s; :func:`split_steps`: in slices)."""
    return run(split_steps(st, Slice(), None, budget, chunk))


def split_steps(st: dict[str, Any], sl: Slice, texts: list[str] | None = None,
                budget: int = PART_BYTES, chunk: int = PACK_CHUNK) -> Steps2:
    """:func:`split_status`, yielding whenever ``sl`` is over; ``texts``: the task rows'
    JSON texts (``_DUMP``), if the caller encoded them already (emptied once they are cut
    into parts: released in slices)."""
    summary = {k: v for k, v in st.items() if k != "tasks"}
    if texts is None:
        texts = []
        for row in st.get("tasks", []):
            texts.append(_DUMP(row))
            if sl.over():
                yield
        if len(texts) > 64:
            yield  # (what follows looks at every text: a slice of its own)
    summary_size = _size(summary)
    tasks_size = 2 + len(texts) + sum(map(len, texts))  # brackets, commas; then the bytes
    if tasks_size + summary_size + len(',"tasks":') <= budget:
        tasks_size += sum(len(t.encode()) - len(t) for t in texts if not t.isascii())
        if tasks_size + summary_size + len(',"tasks":') <= budget:
            return st, []
    heads = ['{"tasks":[']
    keys = ["tasks"]
    if summary_size > budget and isinstance(summary.get("members"), list):
        members = summary["members"]
        heads.append(f'],"member_tasks":{_DUMP([m.get("tasks", []) for m in members])}}}')
        keys.append("member_tasks")
        summary["members"] = [{k: v for k, v in m.items() if k != "tasks"} for m in members]
    else:
        heads.append("]}")
    parts: list[list[str]] = [[]]
    used = 0
    for piece in _pieces(heads[0], texts, heads[1], chunk):
        size = _size(piece) + 1  # the comma between strings
        if parts[-1] and used + size > budget:
            parts.append([])
            used = 0
        parts[-1].append(piece)
        used += size
        if sl.over():
            yield
    yield from release(texts, sl)
    summary["parts"] = {"count": len(parts), "keys": keys}
    return summary, parts


def _pieces(head: str, texts: list[str], tail: str, chunk: int) -> Iterator[str]:
    """The text ``head + ",".join(texts) + tail`` in consecutive pieces of ``chunk``
    characters (the last one shorter), without joining the whole of it at once."""
    buf: list[str] = [head]
    size = len(head)
    for k, text in enumerate(texts):
        piece = text if k == 0 else "," + text
        buf.append(piece)
        size += len(piece)
        if size >= chunk:
            joined = "".join(buf)
            cut = len(joined) - len(joined) % chunk
            for i in range(0, cut, chunk):
                yield joined[i:i + chunk]
            buf, size = [joined[cut:]], len(joined) - cut
    joined = "".join(buf) + tail
    for i in range(0, len(joined), chunk):
        yield joined[i:i + chunk]


def join_parts(summary: dict[str, Any], parts: list[list[str]]) -> dict[str, Any]:
    """The whole status from ``summary`` (as :func:`split_status` made it) and its parts in
    order. Raises ``ValueError`` when they do not make one valid text."""
    rest = json.loads("".join(piece for part in parts for piece in part))
    if not isinstance(rest, dict):
        raise ValueError("the parts of a status are not a JSON object")
    st = {k: v for k, v in summary.items() if k != "parts"}
    member_tasks = rest.pop("member_tasks", None)
    if isinstance(member_tasks, list) and isinstance(st.get("members"), list):
        st["members"] = [{**m, "tasks": t} for m, t in
                         zip(st["members"], member_tasks, strict=False)]
    st.update(rest)
    return st


class StatusParts:
    """A node's snapshots of its big statuses, served part by part (see the module docstring)."""

    def __init__(self, clock: Callable[[], float], ttl: float = SNAPSHOT_TTL,
                 keep: int = MAX_SNAPSHOTS, budget: int = PART_BYTES) -> None:
        self._clock = clock
        self._ttl = ttl
        self._keep = keep
        self._budget = budget
        self._snapshots: OrderedDict[str, tuple[float, list[list[str]]]] = OrderedDict()
        self.served = 0  # statuses answered in parts (first replies)

    def answer(self, msg: Status, build: Callable[[bool], dict[str, Any]]) -> dict[str, Any]:
        """The body of the STATUS_REPLY to ``msg``: to a plain STATUS the status ``build(False)``
        makes, or its summary (``first``); to a STATUS naming a snapshot that part (no new
        status is made for it); to ``part`` 0 without a snapshot the brief status
        ``build(True)`` (no tasks: what ``LocalCluster`` polls for agreement)."""
        if msg.snapshot is not None:
            return self.part(msg.snapshot, msg.part if msg.part is not None else 0)
        if msg.part == 0:
            return build(True)
        return self.first(build(False))

    def first(self, st: dict[str, Any]) -> dict[str, Any]:
        """The reply to a plain STATUS: ``st`` itself if it fits one message, else its
        summary naming the snapshot whose parts the client asks for next."""
        return run(self.first_steps(st, Slice()))

    def first_steps(self, st: dict[str, Any], sl: Slice,
                    texts: list[str] | None = None) -> Steps:
        """:meth:`first`, yielding whenever ``sl`` is over (``texts``: see ``split_steps``)."""
        # (pieces of at most a sixth of a message: measuring one's escaped size is a step's
        # work, ~0.1 ms for 16 Ki characters)
        summary, parts = yield from split_steps(st, sl, texts, self._budget,
                                                min(PACK_CHUNK, self._budget // 6))
        if not parts:
            return summary
        now = self._clock()
        self._expire(now)
        snapshot = secrets.token_hex(8)
        self._snapshots[snapshot] = (now + self._ttl, parts)
        while len(self._snapshots) > self._keep:
            self._snapshots.popitem(last=False)
        summary["parts"]["snapshot"] = snapshot
        self.served += 1
        return summary

    def part(self, snapshot: str, part: int) -> dict[str, Any]:
        """Part ``part`` (1-based) of ``snapshot``: ``{"snapshot", "part", "chunks"}``, or
        ``{"gone": snapshot}`` when it is not held (expired, dropped, never made)."""
        self._expire(self._clock())
        held = self._snapshots.get(snapshot)
        if held is None or not 1 <= part <= len(held[1]):
            return {"gone": snapshot}
        return {"snapshot": snapshot, "part": part, "chunks": held[1][part - 1]}

    def _expire(self, now: float) -> None:
        for key in [k for k, (until, _) in self._snapshots.items() if until <= now]:
            del self._snapshots[key]
