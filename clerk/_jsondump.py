"""JSON text without the standard library's set-up per call: one encoder made once.

``json.JSONEncoder.encode`` makes its C encoder anew at every call, with a dict of the objects
under way (the circular-reference check), and goes through two Python frames: for the small
objects of a run's path (a message, a row's head, a history entry, a state) that set-up was
about a third of the call (tools/bench_hotpath.py). :func:`encoder` makes the C encoder once,
without the check: every object these encoders see is acyclic (built by the node, or decoded
from JSON), and one that is not fails with RecursionError instead of ValueError. The text is
the standard encoder's, character for character (checked at import; where the C encoder is
missing or differs, the standard one is used).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any

__all__ = ["encoder"]

_SAMPLE: Any = {"a": [1, 2.5, -0.0, 1e300, True, False, None, "é\n\"\\"], "b": {"c": {}},
                "d": [], "z": 12345678901234567890, "y": 0.1}


def encoder(*, separators: tuple[str, str] = (",", ":"), ensure_ascii: bool = True,
            allow_nan: bool = True, sort_keys: bool = False) -> Callable[[Any], str]:
    """``json.JSONEncoder(separators=..., ensure_ascii=..., allow_nan=..., sort_keys=...)
    .encode``, without the per-call set-up (see the module docstring)."""
    std = json.JSONEncoder(separators=separators, ensure_ascii=ensure_ascii,
                           allow_nan=allow_nan, sort_keys=sort_keys)
    if c_make_encoder is None:
        return std.encode
    quote = encode_basestring_ascii if ensure_ascii else encode_basestring
    try:
        make = c_make_encoder(None, std.default, quote, None, separators[1], separators[0],
                              sort_keys, False, allow_nan)
    except TypeError:  # another signature: the standard encoder
        return std.encode
    join = "".join

    def encode(o: Any) -> str:
        return join(make(o, 0))

    try:
        same = encode(_SAMPLE) == std.encode(_SAMPLE) and encode("x") == std.encode("x")
    except (TypeError, ValueError):
        same = False
    if same and not allow_nan:
        try:
            encode(math.nan)
            same = False
        except ValueError:
            pass
    return encode if same else std.encode
