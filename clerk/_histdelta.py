"""A task row's run history replicated as what changed: the entries a member has not got.

A task's row (:class:`clerk._record.TaskRecord`) ends with its run history (``run_history``,
:class:`clerk._control.RunHistory`): the last runs' entries, most of the row's text (~77 % at
40 tasks). A row changes at every dispatch and every result, and replication used to send
the whole row each time, history included, to every member. Rules:

* **Which history, how far.** A history has an id (``hid``: new whenever one is made other
  than by appending: a parse, a merge) and a count (``n``: entries it has had in all), so its
  entries are numbered ``n - len + 1 .. n``. Appending keeps the id and adds one to ``n``,
  and drops the oldest entries past the cap: a later state of the same history holds a
  window of the numbers that only moves forward.
* **What the manager knows a member holds** (:class:`HistVersions`). The table log notes, per
  row, the history state (``hid``, ``n``) from each change on where it changed (the last
  ``KEEP``). A member whose position ``b`` was reached by a delta that reached the end of the
  log as it stood (``upto == seq`` when it was made: an *uncut* delta) holds every row as of
  its last change at or before ``b``, exactly: each row's history state at ``b`` is known.
  The manager remembers, per member, which of the positions it sent it were such ends
  (``Member.snaps``, :mod:`clerk._joining`); only a delta from one of them carries patches.
* **A patch** (``[hid, n, K, [entries]]`` beside the row's text without its history, the
  row's *head*): the history is now ``hid`` at ``n`` with ``K`` entries; the member keeps its
  own entries numbered ``n - K + 1 .. n - len(entries)`` and appends ``entries``. The manager
  sends one only when the member's state at ``b`` is the same ``hid`` with some entries still
  kept; else the whole row, with ``[hid, n]`` so the member can take a patch next time. A row
  whose history text is not its entries' texts joined (received with other spacing) goes whole
  without it.
* **The member checks** (:func:`apply_hist`): the row it holds must carry ``hid`` at an
  ``n0`` with ``n - len(entries) <= n0 <= n``, and hold the numbers it is asked to keep. If
  any row of a delta fails, the whole delta is refused (as a gap): the manager sends the
  window again after ``TABLE_RESEND`` from the acknowledged position, as whole rows
  (``Member.snaps`` is cleared at a resend). The row's text a member rebuilds is the
  manager's, character for character (the entries' texts are ``json`` round trips of the
  manager's compact texts), so what it stores and writes to its data directory is what it
  stored before.
* **Mixed builds.** Only a member that announced ``HIST_MARK`` in its incarnation is sent
  patches (``TableDelta.hist``, left out of the body when None); any other gets whole rows.
  A member keeps a row's history identity only within one log: a new log, a hand-over's
  table or a manager's own last table forgets them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clerk._control import HISTORY_FIELDS
from clerk._messages import HIST_MARK

__all__ = [
    "HIST_MARK",
    "HistVersions",
    "KEEP",
    "apply_hist",
    "held_parts",
    "parse_hist",
    "reads_hist",
]

#: History states kept per row in the manager's log: a member at most this many history
#: changes of one row behind gets a patch, else the whole row.
KEEP = 4
#: Length of ``,"run_history":`` plus the row's closing ``}``.
_TAIL = len(',"run_history":') + 1

#: An entry's compact JSON text, as the manager makes it (clerk._control), but refusing what
#: the manager never writes (NaN, Infinity).
_DUMPS = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_QUOTE = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def reads_hist(incarnation: str) -> bool:
    """The node of ``incarnation`` announced that it reads ``TableDelta.hist``."""
    return HIST_MARK in incarnation


#: (hid, n, the entries' JSON texts, len of the history's quoted text) of a row's history:
#: ``RunHistory.patch_view``.
View = tuple[int, int, tuple[str, ...], int]


class HistVersions:
    """The manager's log's note of each row's history states (see the module docstring)."""

    def __init__(self) -> None:
        self._view: dict[str, View] = {}  # key -> its current history (patchable rows only)
        # key -> [(seq, hid, n)] oldest first: the history state from that change on
        # (hid -1: not patchable). A key with no change here has no entry.
        self._states: dict[str, list[tuple[int, int, int]]] = {}

    def note(self, key: str, seq: int, view: View | None) -> None:
        """Row ``key`` changed at ``seq``; its history is now ``view`` (None: none to patch)."""
        states = self._states.get(key)
        hid, n = (view[0], view[1]) if view is not None else (-1, -1)
        if view is None:
            self._view.pop(key, None)
        else:
            self._view[key] = view
        if states is None:
            self._states[key] = [(seq, hid, n)]
            return
        last = states[-1]
        if (last[1], last[2]) != (hid, n):
            states.append((seq, hid, n))
            if len(states) > KEEP:
                del states[0]

    def drop(self, key: str) -> None:
        self._view.pop(key, None)
        self._states.pop(key, None)

    def view(self, key: str) -> View | None:
        return self._view.get(key)

    def at(self, key: str, base: int) -> tuple[int, int] | None:
        """The history state (hid, n) of row ``key`` as of its last change at or before
        ``base``; None if unknown (no such change noted, or not patchable)."""
        states = self._states.get(key)
        if not states or states[0][0] > base:
            return None
        for seq, hid, n in reversed(states):
            if seq <= base:
                return None if hid < 0 else (hid, n)
        return None

    def patch(self, key: str, text: str, base: int) -> tuple[str, str] | None:
        """Row ``key`` (now ``text``) for a member at the exact position ``base``: (its head,
        its patch's JSON text), or None if it goes whole."""
        view = self._view.get(key)
        if view is None:
            return None
        hid, n, parts, qlen = view
        was = self.at(key, base)
        if was is None or was[0] != hid or not 0 <= n - was[1] < len(parts):
            return None
        new = parts[len(parts) - (n - was[1]):]
        return (text[:-(qlen + _TAIL)] + "}",
                f"[{hid},{n},{len(parts)},[{','.join(new)}]]")

    def whole(self, key: str) -> str | None:
        """The ``[hid, n]`` that goes with row ``key`` sent whole (None: not patchable)."""
        view = self._view.get(key)
        return None if view is None else f"[{view[0]},{view[1]}]"


def parse_hist(text: str) -> dict[str, list[Any]] | None:
    """A delta's ``hist`` object (key -> ``[hid, n]`` or ``[hid, n, K, [entries]]``),
    checked; None if malformed."""
    try:
        raw = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    for value in raw.values():
        if not (isinstance(value, list) and len(value) in (2, 4)
                and all(type(v) is int and v >= 0 for v in value[:3])):
            return None
        if len(value) == 4 and not (isinstance(value[3], list) and value[2] >= 1
                                    and all(_entry_ok(e) for e in value[3])):
            return None
    return raw


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _entry_ok(e: Any) -> bool:
    return (isinstance(e, list) and len(e) == len(HISTORY_FIELDS)
            and type(e[0]) is int and isinstance(e[5], str))


def held_parts(text: str) -> list[str] | None:
    """The quoted entry texts of the history a row's ``text`` ends with (as the manager's
    ``TaskRecord.to_text`` writes it), checked to rebuild the same text; None if it does
    not end so."""
    at = text.rfind(',"run_history":"')
    if at < 0 or not text.endswith('"}'):
        return None
    quoted = text[at + _TAIL - 1:-1]
    try:
        entries = json.loads(json.loads(quoted), parse_constant=_refuse)
        if not isinstance(entries, list):
            return None
        parts = [_QUOTE(_DUMPS(e))[1:-1] for e in entries]
    except (ValueError, TypeError, RecursionError):
        return None
    if '"[' + ",".join(parts) + ']"' != quoted:
        return None
    return parts


#: A member's note of a row's history: [hid, n, the entries' quoted texts or None (not
#: split yet: ``held_parts`` when a patch needs them)].
Held = list[Any]


def apply_hist(hist: Mapping[str, list[Any]], rows: dict[str, str],
               held: Mapping[str, Held], texts: Mapping[str, str]) -> dict[str, Held] | None:
    """Rebuild the patched rows of a delta in ``rows`` (key -> head, replaced by the whole
    row's text) from the histories the member holds (``held``, of the rows ``texts``); the
    notes to keep for the delta's rows that carry one. None if a patch does not fit (the
    delta is refused: see the module docstring)."""
    out: dict[str, Held] = {}
    for key, value in hist.items():
        head = rows.get(key)
        if head is None:
            return None
        hid, n = value[0], value[1]
        if len(value) == 2:
            out[key] = [hid, n, None]
            continue
        k, entries = value[2], value[3]
        note = held.get(key)
        if note is None or note[0] != hid or not n - len(entries) <= note[1] <= n:
            return None
        parts = note[2]
        if parts is None:
            old = texts.get(key)
            parts = held_parts(old) if old is not None else None
            if parts is None:
                return None
        n0 = note[1]
        first = n0 - len(parts) + 1  # the number of parts[0]
        keep_from, keep_to = n - k + 1, n - len(entries)  # numbers kept, inclusive
        if keep_to >= keep_from:
            if keep_from < first or keep_to > n0:
                return None
            kept = parts[keep_from - first:keep_to - first + 1]
        else:
            kept = []
        try:
            new = [_QUOTE(_DUMPS(e))[1:-1] for e in entries[max(0, len(entries) - k):]]
        except ValueError:
            return None
        if not (head.endswith("}") and len(head) > 2):
            return None
        parts = kept + new
        rows[key] = head[:-1] + ',"run_history":"[' + ",".join(parts) + ']"}'
        out[key] = [hid, n, parts]
    return out
