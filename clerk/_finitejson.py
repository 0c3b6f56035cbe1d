"""Strict JSON numbers for the follower's replication decoders (:mod:`clerk._rowtexts`,
:mod:`clerk._histdelta`): finite only, as the manager's encoders write them.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``-Infinity`` (``parse_constant``) and a
number too large for a float, ``1e400``, as ``inf`` (which never reaches ``parse_constant``).
A table row holding one would be kept, written to the data directory, and fail later, far
from where it came in (an EXECUTE of that state cannot be encoded; a status cannot be
written). The decoders here refuse both as they read (:func:`finite_float`,
:func:`no_constant`: a ValueError), and :func:`not_finite_in` names the row and the field for
the error a refused delta reports (it parses again, only then). A packed table
(:func:`clerk._record.unpack_table`) is read with the same decoders, and
:func:`not_finite_of` lists where it holds such numbers (it is refused whole unless every one
is in a row's run history entries, which are dropped there). A row of the data directory
holding one (:mod:`clerk._store`) loses only the field that holds it (:func:`finite_row`).

A row's run history is a JSON string inside the row (:class:`clerk._control.RunHistory`): the
row's scan reads it as a string, and only a history *patch*'s new entries are parsed at a
delta (:mod:`clerk._histdelta`). A whole row's history is checked where it is parsed
(:func:`clerk._control.parse_run_history`, on a load, a merge, a takeover): an entry holding a
number that is not finite is dropped there, with a WARNING naming it (:func:`finite_items`;
:func:`finite_list` for a history in its list form, which a packed table's ``json.loads`` read).
Not at the delta: a row whose history is short (at 1,000 tasks, every row) goes whole at every
change, and parsing its history there too would about double a member's scan of it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["STATE_PART", "finite_float", "finite_items", "finite_list", "finite_row", "marked",
           "no_constant", "not_finite_in", "not_finite_of", "not_finite_paths"]

_MAX = sys.float_info.max
#: A task row's state part (clerk._record): its keys go together, or not at all.
STATE_PART = ("state", "has_state", "origin", "version", "history")


def no_constant(name: str) -> Any:
    """``parse_constant``: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON."""
    raise ValueError(f"{name} is not a finite number")


def finite_float(text: str, _float: type[float] = float) -> float:
    """``parse_float``: a number with a fraction or an exponent, unless it overflows (called
    once per such number)."""
    value = _float(text)
    if -_MAX <= value <= _MAX:
        return value
    raise ValueError(f"{text[:40]} is not a finite number (over the largest float)")


class _Bad:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _mark_float(text: str) -> Any:
    value = float(text)
    return value if -_MAX <= value <= _MAX else _Bad(text[:40])


_MARKING = json.JSONDecoder(parse_constant=_Bad, parse_float=_mark_float)


def not_finite_in(text: str) -> list[tuple[str, str]] | None:
    """Where JSON ``text`` holds numbers that are not finite: for a JSON object, per key
    ``(key, "<path>: <number>")`` of its first one (the path of keys and list indexes inside
    that key's value, dotted; empty for the value itself); for any other value, one pair
    with the key ``""``. None if ``text`` is not JSON for another reason."""
    try:
        value = _MARKING.decode(text)
    except (ValueError, RecursionError):
        return None
    tops = list(value.items()) if isinstance(value, dict) else [("", value)]
    out = []
    for key, top in tops:
        where = _first_bad(top)
        if where is not None:
            out.append((str(key), where))
    return out


def not_finite_paths(text: str) -> list[str] | None:
    """Every number of JSON ``text`` that is not finite, in the order of the text, as
    ``"<path>: <number>"`` (its path of keys and list indexes, dotted; the number as written);
    None if ``text`` is not JSON for another reason."""
    try:
        value = _MARKING.decode(text)
    except (ValueError, RecursionError):
        return None
    return list(_bad_paths(value))


def marked(text: str) -> Any:
    """JSON ``text`` decoded, each number that is not finite as a marker that keeps it as
    written (:func:`not_finite_of` and :func:`finite_list` name it); raises ValueError or
    RecursionError as ``json.loads`` does."""
    return _MARKING.decode(text)


def not_finite_of(value: Any) -> list[str]:
    """:func:`not_finite_paths` of a value decoded already (by :func:`marked` or
    ``json.loads``)."""
    return list(_bad_paths(value))


def _first_bad(value: Any) -> str | None:
    return next(_bad_paths(value), None)


def _bad_paths(value: Any) -> Iterator[str]:
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _Bad):
            yield f"{path or '(the value)'}: {item.text}"
        elif type(item) is float and not -_MAX <= item <= _MAX:  # (a value decoded already)
            yield f"{path or '(the value)'}: {item!r}"
        elif isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v)
                         for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))



def finite_items(text: str) -> tuple[list[Any], list[str]] | None:
    """The items of the JSON list ``text`` holding no number that is not finite, and where
    each dropped one held its first (``"[<index>]<path>: <number>"``); None if ``text`` is not
    a JSON list. For a text the strict decoders refused: parses again."""
    try:
        value = _MARKING.decode(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    return finite_list(value)


def finite_list(value: list[Any]) -> tuple[list[Any], list[str]]:
    """:func:`finite_items` for a list decoded already (by ``json.loads``, which reads
    ``NaN``, ``Infinity`` and ``1e400`` as floats that are not finite): the items holding
    none, and where each dropped one held its first."""
    kept: list[Any] = []
    dropped: list[str] = []
    for i, item in enumerate(value):
        where = _first_bad(item)
        if where is None:
            kept.append(item)
        else:
            path, number = where.split(": ", 1)
            path = "" if path.startswith("(") else path
            dropped.append(f"[{i}]{'.' if path and path[0] != '[' else ''}{path}: {number}")
    return kept, dropped


def finite_row(key: str, value: Any) -> tuple[bool, Any, list[str]]:
    """A row (``key`` as in :mod:`clerk._rowtexts`: ``t:<task>``, ``k:<key>``) decoded by
    ``json.loads`` with what is not finite in it dropped: ``(kept, row, notes)``, each note
    ``"<field path>: <number> (<what was dropped>)"``. A task row drops its state part
    (:data:`STATE_PART`: the state without its lineage, or a lineage without its state, is
    no copy; a member's copy, or the task's init, replaces it) if one of those fields holds
    such a number, a run history entry (list form) on its own, any other field on its own.
    A table's other keys (a dict: ``node_runs``) drop the item holding it. Anything else
    holding one is dropped whole (``kept`` False). Builds a new row: ``value`` is left as
    it was."""
    if not isinstance(value, dict):
        bad = not_finite_of(value)
        return (not bad, value,
                [b.replace("(the value)", "the row itself", 1) for b in bad[:1]])
    notes: list[str] = []
    out = dict(value)
    task = key.startswith("t:")
    state_dropped = False
    for field, item in value.items():
        bad = not_finite_of(item)
        if not bad:
            continue
        first = bad[0].replace("(the value)", "", 1)
        path = f"{field}{'' if first.startswith(('[', ':')) else '.'}{first}"
        if task and field == "run_history" and isinstance(item, list):
            kept, dropped = finite_list(item)
            out[field] = kept
            notes.extend(f"run_history{d} (that entry)" for d in dropped[:3])
        elif task and field in STATE_PART:
            if not state_dropped:
                notes.append(f"{path} (the state, its lineage and version)")
            state_dropped = True
            for k in STATE_PART:
                out.pop(k, None)
        else:
            out.pop(field, None)
            notes.append(f"{path} (that {'field' if task else 'item'})")
    return True, out, notes
