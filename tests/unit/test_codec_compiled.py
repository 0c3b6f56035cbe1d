"""The codec's compiled validators and dumpers (clerk._codec._fast) give exactly what the
generic per-field path gives: the same message, the same JSON value, or the same error with
the same field path, for valid and invalid values of every message kind alike."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk import _codec
from clerk._codec import DecodeError, encode
from clerk._messages import (
    MESSAGE_KINDS,
    Claim,
    Execute,
    Heartbeat,
    MemberInfo,
    Peer,
    Result,
    TableDelta,
)

P = Peer("a@h1", "h1:1", "inc1+b", 0)
SAMPLES = [
    Execute(P, 3, "noop", "r-1", 17, None, 5000, False, 1764680000000, 1764680005000),
    Execute(P, 3, "tâche", "r-2", 18, {"k": [1, 2.5, "é", None]}, 5000, True),
    Result(P, 3, "noop", "r-1", 17, "ok", {"n": 1}, 0.02, ""),
    Result(P, 3, "noop", "r-1", 17, "error", None, 3, "Traceback ... ☃"),
    Heartbeat(P, 4, 9, 2, (MemberInfo("a@h1", "h1:1", "inc1+b", 0, True, ("t1", "t2")),),
              TableDelta("log-1", 3, 4, ("row",), (), True)),
    Heartbeat(P, 4, 9, 2),
]

# Values that are valid for some fields and not for others, or only through the generic path
# (a non-ASCII string, an int where a float goes, a lone surrogate, 64-bit edges).
ODD = [None, True, False, 0, 1, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 1.5,
       float("nan"), float("inf"), "", "x", "é", "\ud800", "x" * 70_000, [], [1], {}, {"a": 1},
       {1: 2}, ("t",), ["t", "u"], object()]


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except DecodeError as exc:
        return "error", (exc.reason, exc.detail)


def _json_of(msg: Any) -> dict[str, Any]:
    return json.loads(encode(msg)[2])  # type: ignore[no-any-return]


def _variants(data: dict[str, Any]) -> list[dict[str, Any]]:
    """``data`` with each field replaced by each odd value, dropped, or joined by another."""
    out = [dict(data), {**data, "extra": 1}]
    for key in data:
        out.append({k: v for k, v in data.items() if k != key})
        out += [{**data, key: odd} for odd in ODD]
    return out


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_decoding_matches_the_generic_path(msg: Any) -> None:
    kind = _codec._KIND_OF[type(msg)]
    cls = type(msg)
    for unicode, table in ((True, _codec._VALIDATORS), (False, _codec._VALIDATORS_PLAIN)):
        generic = _codec._compile_dataclass(cls, unicode=unicode)
        for value in _variants(_json_of(msg)):
            if not unicode and "\ud800" in repr(value):
                continue  # the plain set only sees bodies without a \u escape
            assert _outcome(table[kind], value, kind.decode()) == _outcome(
                generic, value, kind.decode()), value


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_encoding_matches_the_generic_path(msg: Any) -> None:
    cls = type(msg)
    generic = _codec._dataclass_dumper(cls)
    fast = _codec._DUMPERS[cls]
    names = [f.name for f in dataclasses.fields(cls)]
    for name in names:
        for odd in ODD:
            try:
                other = dataclasses.replace(msg, **{name: odd})
            except TypeError:
                continue
            assert _outcome(fast, other, "m") == _outcome(generic, other, "m"), (name, odd)
    assert _outcome(fast, msg, "m") == _outcome(generic, msg, "m")
    assert _outcome(fast, P, "m") == _outcome(generic, P, "m")  # not the class: its error


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(MESSAGE_KINDS)),
       fields=st.dictionaries(st.sampled_from(["sender", "term", "task", "run_id", "slot",
                                               "state", "timeout_ms", "init", "due_ms",
                                               "outcome", "duration_ms", "error", "seq",
                                               "epoch", "members", "table", "manager",
                                               "claim", "ballot", "status", "op", "via",
                                               "ok", "result", "reason", "tasks", "log",
                                               "suspect", "rows", "part", "parts"]),
                              json_values, max_size=8))
def test_random_bodies_decode_alike(kind: str, fields: dict[str, Any]) -> None:
    cls = MESSAGE_KINDS[kind]
    value = {"sender": dataclasses.asdict(P), "term": 1, **fields}
    generic = _codec._compile_dataclass(cls)
    fast = _codec._VALIDATORS[kind.encode()]
    assert _outcome(fast, value, kind) == _outcome(generic, value, kind)


def test_claims_and_members_nest_alike() -> None:
    claim = Claim(3, 0, "a@h1", "h1:1")
    data: dict[str, Any] = {"sender": dataclasses.asdict(P), "term": 1,
                            "claim": dataclasses.asdict(claim)}
    for value in _variants(data["claim"]):
        body = {**data, "claim": value}
        assert _outcome(_codec._VALIDATORS[b"coordinator"], body, "c") == _outcome(
            _codec._compile_dataclass(MESSAGE_KINDS["coordinator"]), body, "c")
