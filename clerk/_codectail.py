"""A HEARTBEAT's table rows after its body, unescaped (:mod:`clerk._codec`, "Rows after the
body").

A table delta's rows are one JSON object's text (``{"t:a":{...},...}``, made by the manager's
log, :mod:`clerk._replicalog`). In a body they are a JSON string (``TableDelta.rows``): the
manager's encoder escapes every quote of every row, and each member un-escapes it again before
it scans the rows (``clerk._rowtexts.row_texts``), about a third of a member's work per row
and most of the manager's encode of a heartbeat (``tools/bench_rowpath.py``). To a node that
announced it reads them (``clerk._messages.RAW_ROWS_MARK``), the rows go as they are instead:

    frame 2   {"sender":...,"table":{...,"rows":[],...,"tail":N}}{"t:a":{...},...}

the body's JSON object with ``rows`` empty and ``tail`` the count of characters that follow
it, then the rows' text itself. The receiver checks the count, that ``rows`` is empty, and
that the text is an object (``{`` ... ``}``), and gets the same ``TableDelta`` the manager
built (``rows``: that one text, ``tail``: its length); every row in it is parsed by the
replica that applies it, as before (``Replica.apply``: a delta whose rows are not JSON is
refused whole, none of it reaches the replica or the journal). A body whose ``tail`` does
not match what follows, any other kind followed by text, or a ``tail`` without text after
the body, is a :class:`clerk._codecvalid.DecodeError` naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from clerk._codecvalid import DecodeError
from clerk._messages import Heartbeat, Message, TableDelta

__all__ = ["check_untailed", "read_tail", "tail_writer"]

_HEARTBEAT = b"heartbeat"


def tail_writer(dump: Callable[[Any, str], Any], encode_json: Callable[[Any], str],
                error: Callable[[str], Exception]) -> Callable[[Any], str | None]:
    """The writer of a HEARTBEAT whose delta's rows go after the body (``dump``: the
    HEARTBEAT's dumper, ``encode_json``: the codec's JSON encoder, ``error``: the codec's
    EncodeError); None (the codec's generic path) for any other HEARTBEAT."""

    def write(msg: Any) -> str | None:
        table = msg.table
        if table is None or table.tail is None:
            return None
        rows = "".join(table.rows)
        if type(table.tail) is not int or table.tail != len(rows):
            raise error(f"heartbeat message cannot be sent: heartbeat.table.tail is "
                        f"{table.tail!r}, its rows are {len(rows)} characters")
        if len(rows) < 2 or rows[0] != "{" or rows[-1] != "}":
            raise error("heartbeat message cannot be sent: heartbeat.table.rows is not the "
                        "text of a JSON object")
        if not rows.isascii():
            try:
                rows.encode()
            except UnicodeEncodeError as exc:
                raise error(f"heartbeat message cannot be sent: heartbeat.table.rows is not "
                            f"valid Unicode: {exc}") from None
        head = dataclasses.replace(msg, table=dataclasses.replace(table, rows=()))
        try:
            data = dump(head, "heartbeat")
        except DecodeError as exc:
            raise error(f"heartbeat message cannot be sent: {exc.detail}") from None
        try:
            return encode_json(data) + rows
        except (TypeError, ValueError, RecursionError) as exc:
            raise error(f"heartbeat message cannot be encoded as JSON: {exc}") from None

    return write


def read_tail(kind: bytes, text: str, end: int, data: Any,
              validate: Callable[[Any, str], Any], name: str) -> Message | None:
    """The HEARTBEAT in ``text`` whose first ``end`` characters are its body's object
    (``data``, parsed) and the rest its delta's rows; None if ``data`` announces no rows
    after it (``table.tail``): the caller refuses the extra text as before."""
    table = data.get("table") if kind == _HEARTBEAT and type(data) is dict else None
    if type(table) is not dict or table.get("tail") is None:
        return None
    tail = table["tail"]
    rows = text[end:]
    if type(tail) is not int or tail != len(rows):
        raise DecodeError("field", f"heartbeat.table.tail: {str(tail)[:40]} characters of "
                                   f"rows announced, {len(rows)} follow the body")
    if table.get("rows") != []:
        raise DecodeError("field", "heartbeat.table.rows: must be empty when the rows "
                                   "follow the body (tail)")
    if len(rows) < 2 or rows[0] != "{" or rows[-1] != "}":
        raise DecodeError("field", "heartbeat.table: the rows after the body are not a "
                                   "JSON object")
    msg = validate(data, name)
    delta = msg.table
    return dataclasses.replace(msg, table=dataclasses.replace(delta, rows=(rows,)))


def check_untailed(msg: Message) -> Message:
    """``msg`` decoded from a body with nothing after it: a HEARTBEAT whose delta announces
    rows after the body (``tail``) lacks them."""
    if type(msg) is Heartbeat:
        table: TableDelta | None = msg.table
        if table is not None and table.tail is not None:
            raise DecodeError("field", f"heartbeat.table.tail: {table.tail} characters of "
                                       f"rows announced, none follow the body")
    return msg
