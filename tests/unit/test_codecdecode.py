"""The decoder of a body holding all its fields (clerk._codecdecode) against the generic
validator: random valid bodies of the hot messages as a node writes them, and the same bodies
mutated (a field replaced by any JSON value, dropped, joined by another, the sender's values
changed, its keys reordered), decode to an equal message or fail with the same DecodeError
(reason, field path and message), through the validators and through decode_body."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clerk import _codec
from clerk._codec import DecodeError, decode_body, encode
from clerk._messages import Execute, Heartbeat, Message, Peer, Result, ResultAck

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats() | st.text(max_size=5) | st.sampled_from(["é", "\ud800", "x" * 70_000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)
names = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(["n1@h", "t-1"])
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.sampled_from([0, 3, 5000])
states = st.none() | st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3),
                                     max_size=3)
# A few senders, so that most bodies meet one the cache holds (the path a cluster takes).
peers = st.builds(Peer, st.sampled_from(["n1@h", "n2@h", "é@h"]), st.just("h:1"),
                  st.sampled_from(["inc+b", "inc2"]), st.sampled_from([0, 1, -5]))
messages = st.one_of(
    st.builds(Execute, peers, ints, names, names, ints, states, ints, st.booleans(), ints, ints),
    st.builds(Result, peers, ints, names, names, ints, st.sampled_from(["ok", "error"]),
              states, st.floats(allow_nan=False, allow_infinity=False), names),
    st.builds(ResultAck, peers, ints, names, names),
    st.builds(Heartbeat, peers, ints, ints, ints),
)


@st.composite
def mutated(draw: st.DrawFn, data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    keys = list(out)
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["replace", "drop", "extra", "sender", "sender_key",
                                    "reorder"]))
        key = draw(st.sampled_from(keys))
        if how == "replace":
            out[key] = draw(json_values)
        elif how == "drop":
            out.pop(key, None)
        elif how == "extra":
            out[draw(st.sampled_from(["extra", "slot", "init", "state"]))] = draw(json_values)
        elif how == "reorder":
            out = dict(reversed(list(out.items())))
        elif type(out.get("sender")) is dict:
            sender = dict(out["sender"])
            field = draw(st.sampled_from(["name", "address", "incarnation", "priority"]))
            if how == "sender":
                sender[field] = draw(json_values | st.sampled_from([True, 0.0, 1.0, False]))
            else:
                sender.pop(field, None)
                if draw(st.booleans()):
                    sender["other"] = 1
            out["sender"] = sender
    return out


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        value = fn(*args)
    except DecodeError as exc:
        return "error", (exc.reason, exc.detail)
    return "ok", (type(value), value)


@settings(max_examples=600, deadline=None)
@given(msg=messages, data=st.data())
def test_validators_match_the_generic_one(msg: Any, data: st.DataObject) -> None:
    kind = _codec._KIND_OF[type(msg)]
    body = json.loads(encode(msg)[2])
    value = data.draw(mutated(body))
    for unicode, table in ((True, _codec._VALIDATORS), (False, _codec._VALIDATORS_PLAIN)):
        if not unicode and "\\ud800" in ascii(value):
            continue  # the plain set only sees bodies without a \u escape
        generic = _codec._compile_dataclass(type(msg), unicode=unicode)
        old = _outcome(generic, value, kind.decode())
        assert _outcome(table[kind], value, kind.decode()) == old, value
        # Again: a sender the first call cached is now a hit.
        assert _outcome(table[kind], value, kind.decode()) == old, value
    if ascii(value) == ascii(body):  # (not ==: 1 == 1.0 == True)
        assert _outcome(_codec._VALIDATORS[kind], value, kind.decode()) == ("ok", (type(msg), msg))


@settings(max_examples=300, deadline=None)
@given(msg=messages, data=st.data(), ensure_ascii=st.booleans())
def test_decode_body_matches_json_loads_and_the_generic_one(msg: Any, data: st.DataObject,
                                                             ensure_ascii: bool) -> None:
    kind = _codec._KIND_OF[type(msg)]
    value = data.draw(mutated(json.loads(encode(msg)[2])))
    try:
        body = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=False).encode()
    except (ValueError, UnicodeEncodeError):
        return  # not a body a peer can send (NaN; a lone surrogate without ensure_ascii)
    generic = _codec._compile_dataclass(type(msg))
    assert _outcome(decode_body, kind, body) == _outcome(generic, json.loads(body),
                                                         kind.decode())


def test_a_cached_sender_is_not_taken_for_one_of_other_types() -> None:
    msg = ResultAck(Peer("n1@h", "h:1", "inc", 1), 3, "t", "r")
    body = json.loads(encode(msg)[2])
    validate = _codec._VALIDATORS_PLAIN[b"result_ack"]
    assert validate(body, "result_ack") == msg
    assert validate(body, "result_ack").sender is validate(body, "result_ack").sender
    for odd in (True, 1.0):
        other = {**body, "sender": {**body["sender"], "priority": odd}}
        assert _outcome(validate, other, "result_ack") == _outcome(
            _codec._compile_dataclass(ResultAck), other, "result_ack")
        assert _outcome(validate, other, "result_ack")[0] == "error"
    listy = {**body, "sender": {**body["sender"], "name": ["n1@h"]}}
    assert _outcome(validate, listy, "result_ack") == ("error", (
        "field", "result_ack.sender.name: expected a string, got ['n1@h']"))
    assert dataclasses.asdict(validate(body, "result_ack")) == dataclasses.asdict(msg)


# Values valid for some fields and not others, or only through the generic path.
ODD = [None, True, False, 0, 1, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 1.0, 1.5,
       float("nan"), float("inf"), "", "x", "é", "\ud800", "x" * 70_000, [], ["t"], {}, {"a": 1}]
SAMPLES: list[Message] = [
    Execute(Peer("n1@h", "h:1", "inc+b", 0), 3, "noop", "r-1", 17, None, 5000, False,
            1764680000000, 1764680005000),
    Result(Peer("n1@h", "h:1", "inc+b", 0), 3, "noop", "r-1", 17, "ok", None, 0.02, ""),
    ResultAck(Peer("n1@h", "h:1", "inc+b", 0), 3, "noop", "r-1"),
    Heartbeat(Peer("n1@h", "h:1", "inc+b", 0), 3, 9, 2),
]


def test_every_field_and_sender_field_with_each_odd_value() -> None:
    for msg in SAMPLES:
        kind = _codec._KIND_OF[type(msg)]
        body = json.loads(encode(msg)[2])
        values = [{**body, key: odd} for key in body for odd in ODD]
        values += [{**body, "sender": {**body["sender"], key: odd}}
                   for key in body["sender"] for odd in ODD]
        values += [{**body, "sender": {k: v for k, v in body["sender"].items() if k != key}}
                   for key in body["sender"]]
        values.append({**body, "sender": {**body["sender"], "other": 1}})
        for unicode, table in ((True, _codec._VALIDATORS), (False, _codec._VALIDATORS_PLAIN)):
            generic = _codec._compile_dataclass(type(msg), unicode=unicode)
            for value in values:
                if not unicode and "\\ud800" in ascii(value):
                    continue
                old = _outcome(generic, value, kind.decode())
                assert _outcome(table[kind], value, kind.decode()) == old, value
                assert _outcome(table[kind], value, kind.decode()) == old, value


@dataclasses.dataclass(frozen=True, slots=True)
class _OwnInit:
    a: int

    def __init__(self, a: int) -> None:
        object.__setattr__(self, "a", a + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class _PostInit:
    a: int

    def __post_init__(self) -> None:
        pass


def test_only_a_plain_dataclass_init_is_bypassed() -> None:
    from clerk._codec import MESSAGE_KINDS
    from clerk._codecdecode import _plain_init

    assert all(_plain_init(cls) for cls in MESSAGE_KINDS.values())
    assert not _plain_init(_OwnInit)
    assert not _plain_init(_PostInit)


def _nested_variants(value: Any) -> list[Any]:
    """``value`` with each field of each object in it (at any depth) replaced by each odd
    value, dropped, or joined by another field."""
    out: list[Any] = []
    if type(value) is dict:
        out.append({**value, "extra": 1})
        for key, sub in value.items():
            out.append({k: v for k, v in value.items() if k != key})
            out += [{**value, key: odd} for odd in ODD]
            out += [{**value, key: v} for v in _nested_variants(sub)]
    elif type(value) is list:
        for i, sub in enumerate(value):
            out += [[*value[:i], v, *value[i + 1:]] for v in _nested_variants(sub)]
    return out


def test_nested_parts_decode_as_the_generic_path() -> None:
    from clerk._messages import Claim, Coordinator, MemberInfo, Ok, TableAt, TableDelta, Welcome

    p = Peer("n1@h", "h:1", "inc+b", 0)
    row = MemberInfo("n2@h", "h:2", "inc", 1, True, ("t1", "t2"))
    ref = MemberInfo("n3@h", "h:3", "inc", 0, False, (), "digest", 1764680000.5)
    claim = Claim(3, 0, "n1@h", "h:1")
    samples: list[Message] = [
        Heartbeat(p, 4, 9, 2, (row, ref), TableDelta("log-1", 3, 4, ("r1",), ("g",), True)),
        Heartbeat(p, 4, 9, 2, None, TableDelta("log-1", 3, 4, ("r1",), (), False, ("h", "i"))),
        Welcome(p, 4, claim, (row,), 2),
        Welcome(p, 4, None, ()),
        Coordinator(p, 4, claim, TableAt("log-1", 7)),
        Coordinator(p, 4, claim),
        Ok(p, 4, claim),
    ]
    for msg in samples:
        kind = _codec._KIND_OF[type(msg)]
        body = json.loads(encode(msg)[2])
        assert _codec._VALIDATORS_PLAIN[kind](body, kind.decode()) == msg
        for unicode, table in ((True, _codec._VALIDATORS), (False, _codec._VALIDATORS_PLAIN)):
            generic = _codec._compile_dataclass(type(msg), unicode=unicode)
            for value in [body, *_nested_variants(body)]:
                if not unicode and "\\ud800" in ascii(value):
                    continue
                old = _outcome(generic, value, kind.decode())
                assert _outcome(table[kind], value, kind.decode()) == old, value
