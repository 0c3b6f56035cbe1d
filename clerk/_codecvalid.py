"""The codec's checks of single values (:mod:`clerk._codec`): the error every decode raises,
and the validators of scalar and JSON fields that its compiled message validators call.

Split out of :mod:`clerk._codec` (which re-exports these names) to keep it within bounds; the
rules they enforce are in its docstring.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "MAX_ITEMS",
    "MAX_JSON_DEPTH",
    "MAX_STRING",
    "DecodeError",
    "Validator",
    "json_depth",
]

MAX_STRING = 1 << 16
MAX_ITEMS = 100_000
MAX_JSON_DEPTH = 32
_INT_LIMIT = 1 << 63


class DecodeError(ValueError):
    """A frame that is not a valid message; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a JSON value; stops counting (and returns ``limit + 1``) past ``limit``."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            children: Sequence[Any] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            depth = max(depth, d - 1)
            continue
        depth = max(depth, d)
        if depth > limit:
            return limit + 1
        stack.extend((c, d + 1) for c in children)
    return depth


# --- field validators, compiled once per annotation -------------------------------------------

Validator = Callable[[Any, str], Any]


def _fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise DecodeError("field", f"{path}: expected {expected}, got {shown}")


def _v_int(value: Any, path: str) -> int:
    if type(value) is not int:
        _fail(path, "an integer", value)
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        _fail(path, "a 64-bit integer", value)
    return value


def _v_float(value: Any, path: str) -> float:
    if type(value) is int:
        return float(_v_int(value, path))
    if type(value) is not float or not math.isfinite(value):
        _fail(path, "a finite number", value)
    return value


def _unicode_ok(value: str) -> bool:
    """False for strings UTF-8 cannot carry (lone surrogates, e.g. from a ``\\ud800`` escape)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _v_str(value: Any, path: str) -> str:
    if type(value) is not str:
        _fail(path, "a string", value)
    if len(value) > MAX_STRING:
        _fail(path, f"a string of at most {MAX_STRING} characters", value)
    if not _unicode_ok(value):
        _fail(path, "valid Unicode (no lone surrogates)", value)
    return value


def _v_str_plain(value: Any, path: str) -> str:
    """:func:`_v_str` for text known to hold no lone surrogate (no ``\\u`` escape in it)."""
    if type(value) is not str:
        _fail(path, "a string", value)
    if len(value) > MAX_STRING:
        _fail(path, f"a string of at most {MAX_STRING} characters", value)
    return value


def _v_bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        _fail(path, "true or false", value)
    return value


def _v_json(value: Any, path: str, unicode: bool = True) -> Any:
    """A JSON value that survives a round trip: JSON types only (on encode the value comes from
    the caller, not from json.loads; a tuple is accepted and sent as an array, like
    ``json.dumps`` does), string keys, finite floats, valid Unicode, bounded depth. Iterative,
    so a deep (or cyclic) value cannot exhaust the stack. ``unicode=False``: the text it was
    parsed from held no ``\\u`` escape, so its strings cannot hold a lone surrogate."""
    ok = _unicode_ok if unicode else _always
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        t = type(item)
        if item is None or t is bool or t is int:
            continue
        if t is str:
            if not ok(item):
                _fail(path, "JSON with valid Unicode strings (no lone surrogates)", item)
        elif t is float:
            if not math.isfinite(item):
                _fail(path, "JSON with finite numbers", item)
        elif t is dict or t is list or t is tuple:  # a tuple goes out as a JSON array
            if depth > MAX_JSON_DEPTH:
                _fail(path, f"JSON nested at most {MAX_JSON_DEPTH} deep", "...")
            if t is dict:
                for key in item:
                    if type(key) is not str or not ok(key):
                        _fail(path, "JSON objects with string keys", key)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        else:
            _fail(path, "a JSON value (null, bool, number, string, list, object)", item)
    return value


def _always(value: str) -> bool:
    return True


def _v_json_plain(value: Any, path: str) -> Any:
    return _v_json(value, path, unicode=False)
