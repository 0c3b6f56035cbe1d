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
  (``Member.snaps``, :mod:`clerk._heartbeats`); only a delta from one of them carries patches.
* **A patch** (``[hid, base_n, n, keep, "new"]`` beside the row's text without its history,
  the row's *head*): the history was ``hid`` at ``base_n`` and is now at ``n``; its text (as it
  sits in the row, inside a JSON string) is the last ``keep`` characters of the one the member
  holds between ``[`` and ``]``, a comma if both are non-empty, and ``new``: the new entries'
  texts. Nothing is parsed or encoded for it on either side: the manager knows the quoted
  texts of its newest entries (``RunHistory.patch_view``), the member slices the row text it
  holds. The manager sends one only when the member's state at ``b`` is the same ``hid``
  with at most ``PATCH_TAIL`` entries since; else the whole row, with ``[hid, n, qlen]`` (the
  history's quoted length, where it starts in the row's text) so the member can take a patch
  next time. A row whose history text is not its entries' texts joined (received with other
  spacing) goes whole without it.
* **The member checks** (:func:`apply_hist`): the row it holds must carry ``hid`` at exactly
  ``base_n`` (noted when the row came), the kept characters must start at an entry's start
  (after a comma, or the whole text), and ``new`` must be a JSON string's content, so the
  row it rebuilds is JSON. If any row of a delta fails, the whole delta is refused (as a
  gap): the manager sends the window again after ``TABLE_RESEND`` from the acknowledged
  position, as whole rows (``Member.snaps`` is cleared at a resend). The text a member
  rebuilds is the manager's, character for character, so what it stores and writes to its
  data directory is what it stored before.
* **Mixed builds.** Only a member that announced ``HIST_MARK`` in its incarnation is sent
  patches (``TableDelta.hist``, left out of the body when None); any other gets whole rows.
  A member keeps a row's history identity only within one log: a new log, a hand-over's
  table or a manager's own last table forgets them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from clerk._finitejson import finite_float, no_constant, not_finite_in
from clerk._messages import HIST_MARK

__all__ = [
    "HIST_MARK",
    "HistVersions",
    "KEEP",
    "apply_hist",
    "hist_problem",
    "parse_hist",
    "reads_hist",
]

#: History states kept per row in the manager's log: a member at most this many history
#: changes of one row behind gets a patch, else the whole row.
KEEP = 4
#: What precedes a row's history in its text (it is the row's last key).
_KEY = ',"run_history":'


def reads_hist(incarnation: str) -> bool:
    """The node of ``incarnation`` announced that it reads ``TableDelta.hist``."""
    return HIST_MARK in incarnation


#: (hid, n, len of the history's quoted text, the newest entries' quoted texts) of a row's
#: history: ``RunHistory.patch_view``.
View = tuple[int, int, int, tuple[str, ...]]


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
        if view is None:
            if states is None:
                return  # (a row never patchable: nothing to note)
            self._view.pop(key, None)
            hid = n = -1
        else:
            self._view[key] = view
            hid, n = view[0], view[1]
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
        hid, n, qlen, tail = view
        was = self.at(key, base)
        if was is None or was[0] != hid or not 0 <= n - was[1] <= len(tail):
            return None
        new = ",".join(tail[len(tail) - (n - was[1]):]) if n > was[1] else ""
        inner = qlen - 4  # the text between '"[' and ']"'
        keep = inner - len(new) - (1 if new and inner > len(new) else 0)
        return (text[:-(qlen + len(_KEY) + 1)] + "}",
                f"[{hid},{was[1]},{n},{keep},{_DUMP(new)}]")

    def whole(self, key: str) -> str | None:
        """The ``[hid, n, qlen]`` that goes with row ``key`` sent whole (None: not
        patchable)."""
        view = self._view.get(key)
        return None if view is None else f"[{view[0]},{view[1]},{view[2]}]"


_DUMP = json.JSONEncoder(separators=(",", ":")).encode


#: Parses one JSON value at an index: (value, end); NaN, Infinity and a number too large for
#: a float (``1e400``, read as inf) refused (clerk._finitejson).
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(  # type: ignore[attr-defined]
    parse_constant=no_constant, parse_float=finite_float).scan_once
#: One decoder for every delta: ``json.loads`` with a hook builds a decoder per call (~6 us of
#: the ~45 us a 20-row ``hist`` took to parse on a loaded machine).
_DECODE: Callable[[str], Any] = json.JSONDecoder(parse_constant=no_constant,
                                                 parse_float=finite_float).decode


def parse_hist(text: str) -> dict[str, list[Any]] | None:
    """A delta's ``hist`` object (key -> ``[hid, n, qlen]`` or
    ``[hid, base_n, n, keep, "new"]``), checked; None if malformed."""
    try:
        raw = _DECODE(text)
    except (ValueError, RecursionError):
        return None
    if type(raw) is not dict:
        return None
    # Unrolled (a generator per entry was most of a 20-row patch's parse): the JSON decoder
    # makes only dict, list, str, int, float, bool and None, so the types are checked exactly.
    for value in raw.values():
        if type(value) is not list:
            return None
        if len(value) == 5:
            a, b, c, d, e = value
            if not (type(a) is int and type(b) is int and type(c) is int and type(d) is int
                    and type(e) is str and a >= 0 and b >= 0 and c >= 0 and d >= 0):
                return None
        elif len(value) == 3:
            a, b, c = value
            if not (type(a) is int and type(b) is int and type(c) is int
                    and a >= 0 and b >= 0 and c >= 0):
                return None
        else:
            return None
    return raw


#: A member's note of a row's history: (hid, n, len of its quoted text in the row).
Held = tuple[int, int, int]


def _quoted_at(text: str, qlen: int) -> bool:
    """``text`` (a row) ends with its history's key and a quoted list ``qlen`` long."""
    end = len(text) - 1
    start = end - qlen
    return (qlen >= 4 and start - len(_KEY) > 0 and text.endswith(']"}')
            and text.startswith('"[', start) and text.startswith(_KEY, start - len(_KEY)))


def apply_hist(hist: Mapping[str, list[Any]], rows: dict[str, str],
               held: Mapping[str, Held], texts: Mapping[str, str]) -> dict[str, Held] | None:
    """Rebuild the patched rows of a delta in ``rows`` (key -> head, replaced by the whole
    row's text) from the rows the member holds (``texts``, their notes ``held``); the notes
    of the delta's rows that carry one. None if a patch or a note does not fit (the delta
    is refused: see the module docstring)."""
    out: dict[str, Held] = {}
    for key, value in hist.items():
        row = rows.get(key)
        if row is None:
            return None
        if len(value) == 3:
            if not _quoted_at(row, value[2]):
                return None
            out[key] = (value[0], value[1], value[2])
            continue
        hid, base_n, n, keep, new = value
        note = held.get(key)
        old = texts.get(key)
        if note is None or old is None or note[0] != hid or note[1] != base_n:
            return None
        inner = old[len(old) - note[2] + 1:-3]  # between '"[' and ']"'
        if keep > len(inner) or (0 < keep < len(inner) and inner[-keep - 1] != ","):
            return None
        if new:
            try:
                entries, end = _SCAN(f'"{new}"', 0)
                if end != len(new) + 2:
                    return None
                # The new entries: JSON, their numbers finite (the scanner, without the
                # decoder's Python-level set-up per call).
                listed = f"[{entries}]"
                if _SCAN(listed, 0)[1] != len(listed):
                    return None
            except (ValueError, StopIteration, RecursionError):
                return None
        kept = inner[len(inner) - keep:] if keep else ""
        body = kept + ("," if kept and new else "") + new
        if not (row.endswith("}") and len(row) > 2):
            return None
        rows[key] = f'{row[:-1]}{_KEY}"[{body}]"}}'
        out[key] = (hid, n, len(body) + 4)
    return out


def hist_problem(text: str) -> str | None:
    """A number that is not finite in a delta's ``hist`` (``text``) or in the new history
    entries of one of its patches, named by row and field, for the refusal's error; None if
    there is none (the patches did not fit for another reason). Parses again: only on a
    refusal."""
    found = not_finite_in(text)
    if found:
        key, where = found[0]
        return f"row {key!r}, history patch field {where.split(': ', 1)[0]}: " \
               f"{where.split(': ', 1)[1]} is not a finite number"
    hist = parse_hist(text)
    for key, value in (hist or {}).items():
        if len(value) != 5 or not value[4]:
            continue
        try:
            entries, _ = _SCAN(f'"{value[4]}"', 0)
        except (ValueError, StopIteration):
            continue
        inner = not_finite_in(f"[{entries}]")
        if inner:
            where = inner[0][1]
            return (f"row {key!r}, new run_history entry {where.split(': ', 1)[0]}: "
                    f"{where.split(': ', 1)[1]} is not a finite number")
    return None
