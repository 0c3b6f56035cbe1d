"""Does a value survive JSON unchanged? If not, say where inside it and why.

Rules (task state travels as JSON, and must come back *equal*, not merely encodable):

* ``None``, ``bool``, ``str``, ``int`` and finite ``float`` are carried as they are;
  ``list`` and ``dict`` with ``str`` keys are carried if everything inside them is.
* Refused, naming the path inside the value (``state["t"][0]``) and the type: a ``tuple``
  (comes back as a list), a non-``str`` dict key (comes back as a string: ``{1: "one"}``
  becomes ``{"1": "one"}``), NaN and infinities (not JSON), and any other type (sets, bytes,
  datetimes, objects).
* Nesting deeper than :data:`MAX_DEPTH` is refused too (it could not be decoded safely).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["MAX_DEPTH", "json_problem"]

#: Deepest nesting accepted: well under the JSON decoder's recursion limit (~1000 frames).
MAX_DEPTH = 200

_HINTS = {"tuple": " (JSON would bring it back as a list)",
          "set": " (JSON has no sets: use a sorted list)",
          "frozenset": " (JSON has no sets: use a sorted list)",
          "bytes": " (encode it, e.g. base64, as a str)"}


def _at(path: str, key: object) -> str:
    shown = json.dumps(key) if isinstance(key, str) else repr(key)
    return f"{path}[{shown}]"


def _plain(value: Any, depth: int) -> bool:
    """True if ``value`` is made of the exact built-in JSON types only, finite floats, ``str``
    keys and at most ``MAX_DEPTH`` levels: then it comes back unchanged. False for anything
    else, which :func:`json_problem`'s walk judges (a subclass may still be fine). No paths
    are built: a worker checks every state it returns, and naming each element's path (a
    ``json.dumps`` per key) cost more than the check)."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return True
    if t is float:
        return math.isfinite(value)
    if depth >= MAX_DEPTH:
        return False
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or not _plain(v, depth + 1):
                return False
        return True
    if t is list:
        for v in value:
            if not _plain(v, depth + 1):
                return False
        return True
    return False


def json_problem(value: Any, path: str = "state") -> str | None:
    """None if ``value`` comes back from JSON unchanged, else ``'<path>: <why>'``."""
    try:
        if _plain(value, 0):
            return None
    except RecursionError:  # (the walk has no recursion)
        pass
    return _walk(value, path)


def _walk(value: Any, path: str) -> str | None:
    """:func:`json_problem` element by element, each with its path (the first problem)."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if item is None or isinstance(item, bool | str):
            continue
        if isinstance(item, int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{where}: float {item!r} (not JSON)"
            continue
        if depth >= MAX_DEPTH:
            return f"{where}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in reversed(
                list(enumerate(item))))
            continue
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    return (f"{_at(where, key)}: {type(key).__name__} key (JSON keys are "
                            "strings: it would come back as a str)")
            stack.extend((v, _at(where, k), depth + 1) for k, v in reversed(item.items()))
            continue
        name = type(item).__name__
        return f"{where}: {name}{_HINTS.get(name, '')}"
    return None
