"""A table's rows as JSON texts: what the manager's table log and a member's replica
(:mod:`clerk._replica`) hold and answer from.

A row is kept as its compact JSON text (``DUMP``), made once when the row changes; a table's
text is put together from its rows' texts (:func:`table_text`) and a delta's text split into
its rows' texts (:func:`row_texts`) without encoding a row again. Split out of
:mod:`clerk._replica`, which re-exports these names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from clerk._finitejson import finite_float, no_constant, not_finite_in
from clerk._jsondump import encoder

__all__ = ["DUMP", "RowTexts", "RowsView", "row_key", "row_texts", "rows_problem", "split_table",
           "table_text"]

#: One row's JSON text (compact, like every table text).
DUMP = encoder(allow_nan=False)  # (one C encoder for every call: clerk._jsondump)
_DUMP = DUMP


def row_key(task: str) -> str:
    return "t:" + task


def split_table(table: Any) -> dict[str, Any]:
    """A whole table (``{"tasks": {...}, ...}``) as rows by key (see the module docstring)."""
    rows: dict[str, Any] = {}
    if not isinstance(table, Mapping):
        return rows
    for key, value in table.items():
        if key == "tasks" and isinstance(value, Mapping):
            for name, row in value.items():
                rows[row_key(str(name))] = row
        else:
            rows["k:" + str(key)] = value
    return rows


def table_text(items: list[tuple[str, str | None]], yield_gil: bool = False) -> str:
    """The JSON text of the table made of ``items`` (key, row text), without parsing a row.
    ``yield_gil``: in a thread beside the node's loop, let the loop run between slices (else
    it could wait for the interpreter up to the switch interval, 5 ms, per write)."""
    tasks: list[str] = []
    other: list[str] = []
    step = 512  # joined in slices: no single call holds the interpreter for a whole 5 MB table
    for i in range(0, len(items), step):
        if yield_gil and i:
            time.sleep(0)
        t_part, k_part = [], []
        for key, text in items[i:i + step]:
            if text is None:
                continue
            if key.startswith("t:"):
                t_part.append(f"{_DUMP(key[2:])}:{text}")
            else:
                k_part.append(f"{_DUMP(key[2:])}:{text}")
        if t_part:
            tasks.append(",".join(t_part))
        if k_part:
            other.append(",".join(k_part))
    head = '{"tasks":{' + ",".join(tasks) + "}" if tasks else "{"
    if not other:
        return head + "}" if tasks else "{}"
    return head + ("," if tasks else "") + ",".join(other) + "}"


#: Parses one JSON value at an index: (value, end). NaN, Infinity and a number too large for
#: a float (``1e400``, read as inf) are refused, as the manager's encoder never writes them
#: (clerk._finitejson).
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(  # type: ignore[attr-defined]
    parse_constant=no_constant, parse_float=finite_float).scan_once
#: The same as a whole-text decoder (``json.loads`` with a hook builds one per call).
_DECODE: Callable[[str], Any] = json.JSONDecoder(parse_constant=no_constant,
                                                 parse_float=finite_float).decode


def row_texts(text: str) -> dict[str, str] | None:
    """The rows of a delta's JSON object text (``{"<key>":<row>,...}``), each as its own
    text, as the manager wrote it; None if ``text`` is not such an object.

    Each row is parsed (that checks it is JSON) but not encoded again: a member keeps row
    texts, and parses a row into objects only when it needs the table (a takeover, a status,
    a write). The manager writes the object compactly (:meth:`ReplicaLog.delta`); any other
    spacing is parsed the slow way, then each row encoded."""
    scan = _SCAN
    out: dict[str, str] = {}
    n = len(text)
    try:
        if n < 2 or text[0] != "{":
            return None
        i = 1
        if text[i] == "}":
            return out if n == 2 else None
        while True:
            key, i = scan(text, i)
            if type(key) is not str or text[i] != ":":
                return _row_texts_slow(text)
            start = i + 1
            _, i = scan(text, start)
            out[key] = text[start:i]
            if text[i] == ",":
                i += 1
                continue
            if text[i] == "}" and i == n - 1:
                return out
            return _row_texts_slow(text)
    except (StopIteration, IndexError):
        return _row_texts_slow(text)
    except (ValueError, RecursionError):
        return None


def rows_problem(text: str) -> str:
    """Why :func:`row_texts` refused ``text``, for the refusal's error: the rows holding a
    number that is not finite, each with the field (``row 't:a', field state.n[1]: 1e400 is
    not a finite number``), else the parse error. Parses ``text`` again: only on a refusal."""
    found = not_finite_in(text)
    if found:
        said = []
        for key, where in found[:3]:
            path, number = where.split(": ", 1)
            field = "" if path.startswith("(") else f", field {path}"
            said.append(f"row {key!r}{field}: {number} is not a finite number")
        more = f" (and {len(found) - 3} more rows)" if len(found) > 3 else ""
        return "; ".join(said) + more
    try:
        rows = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return f"not JSON: {exc}"
    return f"not an object of rows: {type(rows).__name__}"


def _row_texts_slow(text: str) -> dict[str, str] | None:
    try:
        rows = _DECODE(text)
        if not isinstance(rows, dict):
            return None
        return {key: _DUMP(value) for key, value in rows.items()}
    except (ValueError, RecursionError):
        return None


def _materialize(items: list[tuple[str, str | None]]) -> Any:
    return json.loads(table_text(items))


class RowsView(Sequence[tuple[str, str | None]]):
    """The rows of a copy by key (``texts``) as an indexed sequence of (key, text), for a
    load in slices (``Scheduler.load_rows``): a list of the keys (strings, which the
    collector does not track) where a list of (key, text) pairs makes a tuple per row for it
    to track (~1 ms at 10,000 rows, against ~0.3 ms)."""

    __slots__ = ("_keys", "texts")

    def __init__(self, texts: dict[str, str | None]) -> None:
        self.texts = texts
        self._keys = list(texts)

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, i: int) -> tuple[str, str | None]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, str | None]]: ...

    def __getitem__(self, i: int | slice) -> Any:
        texts = self.texts
        if isinstance(i, slice):
            return [(k, texts[k]) for k in self._keys[i]]
        key = self._keys[i]
        return key, texts[key]


class RowTexts:
    """What the manager's log and a member's replica both answer from their row texts."""

    _text: Mapping[str, str | None]

    def items(self) -> list[tuple[str, str | None]]:
        return list(self._text.items())

    def texts(self) -> dict[str, str | None]:
        """A copy of the rows by key (~0.2 ms at 10,000 rows, where :meth:`items`, a tuple
        per row for the collector to track, is ~1 ms)."""
        return dict(self._text)

    def rows(self) -> RowsView:
        """The rows as they are now, indexed (a copy: see :class:`RowsView`)."""
        return RowsView(dict(self._text))

    def table(self) -> Any:
        """The whole table (parsed: O(rows); a takeover, a hand-over, a status); None if it
        holds no row yet."""
        return _materialize(self.items()) if self._text else None

    #: Keys changed since the data directory last took them (``take_changes``); None: not
    #: tracked (until ``track``), or no longer (the rows were replaced wholesale).
    _changed: set[str] | None = None

    def track(self) -> dict[str, str | None]:
        """Every row (a copy by key, for a snapshot), and from now on note which rows
        change."""
        self._changed = set()
        return self.texts()

    def tracking(self) -> bool:
        return self._changed is not None

    def take_changes(self) -> dict[str, str | None]:
        """The rows changed since ``track`` or the last call (key -> text; None: gone):
        O(changes)."""
        changed, text = self._changed, self._text
        if not changed:
            return {}
        self._changed = set()
        return {k: text.get(k) for k in changed}
