"""The wire codec: every message kind round-trips; anything malformed is a DecodeError.

Decoding is the node's first line of defence (DESIGN.md principle 4): whatever arrives on a
socket must either become a well-typed message or raise :class:`DecodeError` with a ``reason``
counter key, never any other exception. Encoding refuses what JSON cannot carry faithfully.
"""

import dataclasses
import json
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._codec import (
    MAGIC,
    MAX_ITEMS,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_BYTES,
    MAX_STRING,
    PROTOCOL_VERSION,
    DecodeError,
    EncodeError,
    decode,
    encode,
    json_depth,
)
from clerk._messages import (
    MESSAGE_KINDS,
    Accept,
    Accepted,
    Ack,
    Claim,
    Control,
    ControlReply,
    Coordinator,
    Election,
    Execute,
    Handover,
    Heartbeat,
    Join,
    Json,
    Leave,
    MemberInfo,
    Merged,
    Message,
    Offer,
    Ok,
    Peer,
    Prepare,
    Promise,
    Refuse,
    Reject,
    Result,
    ResultAck,
    RunQuery,
    Status,
    StatusReply,
    TableDelta,
    TasksQuery,
    TasksReply,
    Welcome,
)

P = Peer("a@h1", "h1:7400", "inc-1", 3)
P0 = Peer("b@h2", "h2:7400", "inc-2")
CLAIM = Claim(7, 3, "a@h1", "h1:7400")
M1 = MemberInfo("a@h1", "h1:7400", "inc-1", 3, True, ("t1", "t2"))
M2 = MemberInfo("b@h2", "h2:7400", "inc-2", 0, False)
STATE = {"count": 3, "ratio": 0.5, "items": [1, "two", None, True, {"x": []}], "ü": "ß€𝄞"}

#: Samples of every kind: optional fields set and unset, nested tuples, states of many shapes.
SAMPLES: list[Message] = [
    Join(P, 0),
    Join(P, 4, ("t1", "t2", "")),
    Welcome(P, 7, CLAIM, (M1, M2), 12),
    Welcome(P0, 0, None, ()),
    Refuse(P, 7, "the name 'b' is already used"),
    Heartbeat(P, 7, 1, 2),
    Heartbeat(P, 7, 2**63 - 1, -(2**63), (M1, M2),
              TableDelta("i.1.1", -1, 3, ('{"t:a":', '{"x":1}}'), ("t:b",), True)),
    Heartbeat(P, 7, 3, 4, (), TableDelta("i.1.1", 3, 4)),
    Ack(P0, 7, 12, -1),
    Ack(P0, 7, 12, 3, 41, "i.1.1"),
    Election(P0, 3),
    Election(P0, 3, "a@h1"),
    Ok(P, 7),
    Ok(P, 7, CLAIM),
    Coordinator(P, 7, CLAIM),
    Leave(P0, 7),
    Handover(P, 7, (M2,)),
    Offer(P, 7, {"packed": 1, "chunks": ["{}"]}),
    Handover(P, 7, (M1, M2), {"tasks": {"t1": {"slot": 9, "state": [None]}}}),
    Execute(P, 7, "t1", "run-1", 42, None, 5000),
    Execute(P, 7, "t1", "run-2", 43, "a string state", 1),
    Execute(P, 7, "t1", "run-3", 44, 1.25, 0),
    Execute(P, 7, "t1", "run-4", 45, {"n": 1}, 1000, True, 1_764_640_000_000, 1_764_640_001_000),
    Result(P0, 7, "t1", "run-1", 42, "ok"),
    Result(P0, 7, "t1", "run-1", 42, "error", {"n": 1}, 12.5, "Traceback...\nValueError"),
    Result(P0, 7, "t1", "run-1", 42, "timeout", False, 3, ""),
    ResultAck(P, 7, "t1", "run-1"),
    RunQuery(P, 7, "t1", "run-1"),
    Status(P0, 0),
    StatusReply(P, 7, {"node": "a", "members": [{"name": "a", "alive": True}]}),
    StatusReply(P, 7, 0),
    Control(P0, 0, "pause", "myapp.tasks:Poll"),
    Control(P0, 0, "trigger", "t", via="b@127.0.0.1"),
    ControlReply(P, 7, True, result={"task": "t", "paused": True, "node": "a", "at": 1.5}),
    ControlReply(P, 7, False, "not the manager", "127.0.0.1:7401"),
    Prepare(P, 7, CLAIM),
    Promise(P0, 7, CLAIM, 0, 1, {"packed": 1, "chunks": ["{}"]}),
    Promise(P0, 7, CLAIM, 2, 3),
    Accept(P, 7, CLAIM, 12, {"packed": 1, "chunks": ['{"t1":{"reserved":4,"record":null}}']}),
    Accepted(P0, 7, CLAIM, 12),
    Reject(P0, 9, CLAIM, Claim(9, 0, "z@h", "h:7400")),
    TasksQuery(P, 7, "0f" * 16),
    TasksReply(P, 7, "0f" * 16, 1, 2, ("a", "b\x1f{}")),
    Merged(P, 7, "0123456789abcdef"),
    Welcome(P, 7, CLAIM, (MemberInfo("d@h", "h:1", "i+d", 0, True, (), "ab" * 16, 12.5),
                          MemberInfo("e@h", "h:2", "i+d", 0, False, (), "cd" * 16)), 3),
]


def frames_of(kind: str, body: object) -> list[bytes]:
    return [MAGIC, kind.encode(), json.dumps(body).encode()]


def body_of(msg) -> dict:
    return json.loads(encode(msg)[2])


def kind_of(msg) -> str:
    return next(k for k, c in MESSAGE_KINDS.items() if c is type(msg))


def reject(frames, reason: str) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(frames)
    assert info.value.reason == reason, info.value
    assert str(info.value).startswith(reason + ":")
    return info.value


# --- round trips --------------------------------------------------------------------------------


def test_samples_cover_every_kind():
    assert {type(m) for m in SAMPLES} == set(MESSAGE_KINDS.values())


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    frames = encode(msg)
    assert len(frames) == 3 and all(type(f) is bytes for f in frames)
    assert frames[0] == MAGIC == b"CLERK" + bytes([PROTOCOL_VERSION])
    assert frames[1] == kind_of(msg).encode()
    back = decode(frames)
    assert back == msg and type(back) is type(msg)
    assert encode(decode(encode(back))) == encode(back)  # stable after one trip (int -> float)


def test_decoded_containers_are_tuples_and_nested_dataclasses():
    back = decode(encode(Welcome(P, 7, CLAIM, (M1, M2), 1)))
    assert isinstance(back.members, tuple) and isinstance(back.members[0], MemberInfo)
    assert isinstance(back.members[0].tasks, tuple)
    assert isinstance(back.manager, Claim) and isinstance(back.sender, Peer)


def test_defaults_may_be_omitted_on_the_wire():
    body = {"sender": {"name": "a", "address": "h:1", "incarnation": "i"}, "term": 2}
    assert decode(frames_of("join", body)) == Join(Peer("a", "h:1", "i", 0), 2, ())


def test_an_int_is_accepted_as_a_float_but_not_the_reverse():
    body = body_of(Result(P0, 7, "t", "r", 1, "ok"))
    body["duration_ms"] = 3
    msg = decode(frames_of("result", body))
    assert msg.duration_ms == 3.0 and type(msg.duration_ms) is float
    body["slot"] = 1.0
    reject(frames_of("result", body), "field")


def test_bytearray_and_memoryview_frames_are_accepted():
    frames = encode(SAMPLES[2])
    assert decode([bytearray(f) for f in frames]) == SAMPLES[2]
    assert decode([memoryview(f) for f in frames]) == SAMPLES[2]


# --- hypothesis: generated messages round-trip ---------------------------------------------------

ints64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
texts = st.text(max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | ints64 | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)


def strategy_for(tp):
    if tp is Json or tp is typing.Any:
        return json_values
    if tp is int:
        return ints64
    if tp is float:  # an int is accepted as a float; exactly only up to 2**53
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
    if tp is str:
        return texts
    if tp is bool:
        return st.booleans()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
    if args and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy_for(inner)
    assert dataclasses.is_dataclass(tp), tp
    return dataclass_strategy(tp)


def dataclass_strategy(cls):
    hints = typing.get_type_hints(cls, localns={"Json": Json})
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)}
    if cls is TableDelta:
        # Rows after the body (clerk._codectail): one JSON object's text, ``tail`` its length.
        objects = st.dictionaries(texts, json_values, max_size=4).map(
            lambda rows: json.dumps(rows, separators=(",", ":"), ensure_ascii=False))
        return st.builds(cls, **{**fields, "tail": st.none()}) | objects.flatmap(
            lambda text: st.builds(cls, **{**fields, "rows": st.just((text,)),
                                           "tail": st.just(len(text))}))
    return st.builds(cls, **fields)


messages = st.one_of(*(dataclass_strategy(cls) for cls in MESSAGE_KINDS.values()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_property_generated_messages_round_trip(msg):
    back = decode(encode(msg))
    assert back == msg
    assert decode(encode(back)) == back


# --- rejections: each a DecodeError with the right reason ----------------------------------------

GOOD = encode(SAMPLES[2])


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_wrong_frame_count(count):
    frames = (GOOD + [b"extra"])[:count]
    reject(frames, "frames")


@pytest.mark.parametrize(
    "frames",
    [
        [1, 2, 3],
        [None, None, None],
        ["CLERK\x01", "join", "{}"],
        [MAGIC, "welcome", GOOD[2]],
        [MAGIC, GOOD[1], {"a": 1}],
        [[67, 76, 69], GOOD[1], GOOD[2]],
        None,
        42,
        b"abc",
    ],
    ids=["ints", "nones", "strs", "str-kind", "dict-body", "int-list-head", "None", "int",
         "bytes-not-a-list"],
)
def test_non_bytes_frames(frames):
    reject(frames, "frames")


def test_oversized_total():
    big = [MAGIC, b"status", b" " * MAX_MESSAGE_BYTES]
    reject(big, "size")
    reject([MAGIC, b"x" * (MAX_MESSAGE_BYTES // 2), b"y" * (MAX_MESSAGE_BYTES // 2)], "size")
    with pytest.raises(DecodeError) as info:
        decode(GOOD, max_bytes=sum(map(len, GOOD)) - 1)
    assert info.value.reason == "size"
    assert decode(GOOD, max_bytes=sum(map(len, GOOD))) == SAMPLES[2]


@pytest.mark.parametrize("head", [b"", b"ZMTP\x01\x00", b"clerk\x01", b"CLER", b"\x00" * 6])
def test_foreign_magic(head):
    reject([head, GOOD[1], GOOD[2]], "magic")


@pytest.mark.parametrize("head", [b"CLERK", b"CLERK\x00", b"CLERK\x01", b"CLERK\x03", b"CLERK\xff",
                                  MAGIC + b"x"])
def test_wrong_version(head):
    reject([head, GOOD[1], GOOD[2]], "version")


@pytest.mark.parametrize("kind", [b"", b"bogus", b"JOIN", b"join ", b"\xff\xfe", b"join\x00"])
def test_unknown_kind(kind):
    reject([MAGIC, kind, GOOD[2]], "kind")


@pytest.mark.parametrize(
    "body",
    [b"\xff", b'{"sender": "\xc3\x28"}', b"\xed\xa0\x80"],  # bad byte, bad sequence, surrogate
    ids=["ff", "bad-seq", "utf8-surrogate"],
)
def test_invalid_utf8(body):
    reject([MAGIC, b"status", body], "json")


@pytest.mark.parametrize("body", [b"", b"{", b"{'a': 1}", b'{"a": 1,}', b"{} {}", b"nul", b"01"])
def test_invalid_json(body):
    reject([MAGIC, b"status", body], "json")


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_constants_are_refused(const):
    body = json.dumps(body_of(StatusReply(P, 1, 0)))[:-2] + const + "}"
    assert const in body
    reject([MAGIC, b"status_reply", body.encode()], "json")
    res = json.dumps(body_of(Result(P0, 7, "t", "r", 1, "ok")))
    res = res.replace('"duration_ms": 0.0', f'"duration_ms": {const}')
    assert const in res
    reject([MAGIC, b"result", res.encode()], "json")


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1e309"])
def test_float_overflow_to_infinity_is_refused(literal):
    # json.loads turns 1e400 into inf without calling parse_constant; a decoded message
    # holding inf could never be encoded again (allow_nan=False), poisoning whoever relays it.
    body = json.dumps(body_of(StatusReply(P, 1, 0)))[:-2] + literal + "}"
    with pytest.raises(DecodeError):
        decode([MAGIC, b"status_reply", body.encode()])
    res = json.dumps(body_of(Result(P0, 7, "t", "r", 1, "ok")))
    res = res.replace('"duration_ms": 0.0', f'"duration_ms": {literal}')
    with pytest.raises(DecodeError):
        decode([MAGIC, b"result", res.encode()])


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")], ids=["list", "object"])
def test_json_nested_ten_thousand_deep(opener, closer):
    deep = opener * 10_000 + "1" + closer * 10_000
    body = json.dumps(body_of(StatusReply(P, 1, 0)))[:-2] + deep + "}"
    err = reject([MAGIC, b"status_reply", body.encode()], "json")
    assert len(str(err)) < 2000  # the detail stays short


@pytest.mark.parametrize("body", [[], "x", 1, None, True, [{"sender": 1}]], ids=repr)
def test_body_not_an_object(body):
    for kind in MESSAGE_KINDS:
        reject(frames_of(kind, body), "field")


def required_fields(cls):
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_missing_field(msg):
    kind = kind_of(msg)
    for name in required_fields(type(msg)):
        body = body_of(msg)
        del body[name]
        err = reject(frames_of(kind, body), "field")
        assert name in str(err)
    body = body_of(msg)
    del body["sender"]["incarnation"]
    err = reject(frames_of(kind, body), "field")
    assert "incarnation" in str(err)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_extra_field(msg):
    kind = kind_of(msg)
    body = body_of(msg)
    body["surplus"] = 1
    err = reject(frames_of(kind, body), "field")
    assert "surplus" in str(err)
    body = body_of(msg)
    body["sender"]["surplus"] = 1
    reject(frames_of(kind, body), "field")


# Systematic wrong types, derived from the dataclass annotations.

WRONG: dict[object, list] = {
    int: [True, False, "1", 1.0, 1.5, None, [], {}],
    float: [True, "1.0", None, [], {}],
    str: [1, 1.5, True, None, [], {}, ["a"]],
    bool: [1, 0, "true", None, [], {}],
}


def wrong_values(tp, sample):
    """(path, bad value) pairs for a field of annotation ``tp`` whose good JSON is ``sample``."""
    if tp is Json or tp is typing.Any:
        return  # any JSON value is a valid state
    if tp in WRONG:
        for bad in WRONG[tp]:
            yield (), bad
        return
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if args and type(None) in args and origin is not tuple:
        (inner,) = [a for a in args if a is not type(None)]
        for path, bad in wrong_values(inner, sample):
            if not (path == () and bad is None):
                yield path, bad
        return
    if origin is tuple:
        for bad in ["x", 1, True, None, {}, {"0": sample}]:
            yield (), bad
        if sample:
            for path, bad in wrong_values(args[0], sample[0]):
                yield (0, *path), bad
        else:
            for _, bad in wrong_values(args[0], None):
                yield (), [bad]
        return
    assert dataclasses.is_dataclass(tp)
    for bad in [[], "x", 1, True, None, [sample]]:
        yield (), bad
    if sample is None:
        return
    hints = typing.get_type_hints(tp, localns={"Json": Json})
    for f in dataclasses.fields(tp):
        for path, bad in wrong_values(hints[f.name], sample.get(f.name)):
            yield (f.name, *path), bad


def set_path(body, path, value):
    for key in path[:-1]:
        body = body[key]
    body[path[-1]] = value


def wrong_type_cases():
    for msg in SAMPLES:
        body = body_of(msg)
        for path, bad in wrong_values(type(msg), body):
            if path:
                yield msg, path, bad


WRONG_CASES = list(wrong_type_cases())


def test_wrong_type_cases_cover_every_field_of_every_kind():
    covered = {(type(m), p[0]) for m, p, _ in WRONG_CASES}
    for cls in MESSAGE_KINDS.values():
        hints = typing.get_type_hints(cls, localns={"Json": Json})
        for f in dataclasses.fields(cls):
            if hints[f.name] is not Json:
                assert (cls, f.name) in covered, (cls, f.name)
    # nested fields too: Peer in every sender, Claim and MemberInfo inside their containers
    nested = {p for _, p, _ in WRONG_CASES if len(p) > 1}
    assert ("sender", "priority") in nested
    assert ("manager", "term") in nested
    assert ("members", 0, "alive") in nested
    assert ("members", 0, "tasks") in nested
    assert len(WRONG_CASES) > 1000


def test_wrong_type_in_every_field_of_every_kind():
    failures = []
    for msg, path, bad in WRONG_CASES:
        body = body_of(msg)
        set_path(body, path, bad)
        try:
            got = decode(frames_of(kind_of(msg), body))
        except DecodeError as exc:
            if exc.reason != "field":
                failures.append((type(msg).__name__, path, bad, exc.reason))
        else:
            failures.append((type(msg).__name__, path, bad, got))
    assert not failures, failures[:10]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64, 10**30, -(10**40)])
def test_ints_beyond_64_bits(value):
    for field in ("term", "seq", "epoch"):
        body = body_of(Heartbeat(P, 1, 1, 1))
        body[field] = value
        reject(frames_of("heartbeat", body), "field")
    body = body_of(Heartbeat(P, 1, 1, 1))
    body["sender"]["priority"] = value
    reject(frames_of("heartbeat", body), "field")


def test_ints_at_the_64_bit_limits_are_fine():
    for value in (2**63 - 1, -(2**63)):
        msg = Heartbeat(Peer("a", "h:1", "i", value), value, value, value)
        assert decode(encode(msg)) == msg


def test_a_huge_integer_literal_is_refused_without_other_exceptions():
    body = json.dumps(body_of(Heartbeat(P, 1, 1, 1))).replace('"seq": 1', '"seq": ' + "9" * 5000)
    with pytest.raises(DecodeError):
        decode([MAGIC, b"heartbeat", body.encode()])


def test_over_long_strings():
    ok = Refuse(P, 1, "r" * MAX_STRING)
    assert decode(encode(ok)) == ok
    body = body_of(ok)
    body["reason"] += "r"
    reject(frames_of("refuse", body), "field")
    body = body_of(Join(P, 1))
    body["sender"]["name"] = "n" * (MAX_STRING + 1)
    reject(frames_of("join", body), "field")


def test_over_long_lists():
    ok = Join(P, 1, ("",) * MAX_ITEMS)
    assert decode(encode(ok)) == ok
    body = body_of(ok)
    body["tasks"].append("")
    reject(frames_of("join", body), "field")


def nested(depth: int):
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_state_nested_deeper_than_the_limit():
    assert json_depth(nested(MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    ok = StatusReply(P, 1, nested(MAX_JSON_DEPTH))
    assert decode(encode(ok)) == ok
    body = body_of(StatusReply(P, 1, 0))
    body["status"] = nested(MAX_JSON_DEPTH + 1)
    reject(frames_of("status_reply", body), "field")
    body = body_of(Handover(P, 1, ()))
    body["state"] = nested(MAX_JSON_DEPTH + 5)
    reject(frames_of("handover", body), "field")


def test_json_depth():
    assert json_depth(1) == 0
    assert json_depth([]) == 1
    assert json_depth({"a": [1, {"b": []}]}) == 4
    assert json_depth(nested(1000), limit=10) == 11


def test_lone_surrogates_are_refused():
    # "\ud800" is valid JSON text but not encodable UTF-8: a node name like that would decode,
    # enter the member list, and then make every heartbeat of the manager fail to encode.
    raw = json.dumps(body_of(Join(P, 1)))
    assert '"a@h1"' in raw
    with pytest.raises(DecodeError) as info:
        decode([MAGIC, b"join", raw.replace('"a@h1"', '"a\\ud800"').encode()])
    assert info.value.reason == "field"
    raw = json.dumps(body_of(StatusReply(P, 1, {"k": "v"})))
    for bad in ('"\\udfff"', '{"\\ud800": 1}'):
        with pytest.raises(DecodeError):
            decode([MAGIC, b"status_reply", raw.replace('{"k": "v"}', bad).encode()])
    # a proper surrogate pair is one valid character
    pair = raw.replace('"v"', '"\\ud834\\udd1e"')
    assert decode([MAGIC, b"status_reply", pair.encode()]).status == {"k": "𝄞"}


# --- hypothesis fuzz: nothing but DecodeError ---------------------------------------------


def only_decode_error(frames):
    try:
        msg = decode(frames)
    except DecodeError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return None
    # whatever decodes must be a message that encodes again
    assert type(msg) in MESSAGE_KINDS.values()
    assert decode(encode(msg)) == msg
    return msg


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_fuzz_arbitrary_frames(frames):
    only_decode_error(frames)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(MESSAGE_KINDS)), st.binary(max_size=200))
def test_fuzz_arbitrary_bodies(kind, body):
    only_decode_error([MAGIC, kind.encode(), body])


json_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(MESSAGE_KINDS)), json_any)
def test_fuzz_arbitrary_json_bodies(kind, value):
    only_decode_error([MAGIC, kind.encode(), json.dumps(value).encode()])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_fuzz_mutated_valid_frames(msg, flips):
    frames = encode(msg)
    body = bytearray(frames[2])
    for pos, byte in flips:
        body[pos % len(body)] = byte
    only_decode_error([frames[0], frames[1], bytes(body)])


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_field_replaced_by_arbitrary_json(msg, data):
    body = body_of(msg)
    paths = [(k,) for k in body] + [("sender", k) for k in body["sender"]]
    path = data.draw(st.sampled_from(paths))
    set_path(body, path, data.draw(json_any))
    only_decode_error(frames_of(kind_of(msg), body))


# --- encode errors ---------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    "state",
    [{1, 2}, Opaque(), math.nan, math.inf, -math.inf, {"nested": [frozenset()]}, b"bytes",
     {"f": len}, {"x": [1, float("nan")]}, complex(1, 2)],
    ids=["set", "object", "nan", "inf", "-inf", "nested-set", "bytes", "function", "nested-nan",
         "complex"],
)
def test_state_json_cannot_carry_is_an_encode_error(state):
    for msg in (
        Execute(P, 1, "t", "r", 1, state, 10),
        Result(P0, 1, "t", "r", 1, "ok", state),
        Handover(P, 1, (), state),
    ):
        with pytest.raises(EncodeError) as info:
            encode(msg)
        assert kind_of(msg) in str(info.value)


def test_tuples_in_state_travel_as_arrays():
    msg = Result(P0, 1, "t", "r", 1, "ok", {"last": (1, 2), "nested": [("a", (None,))]})
    back = decode(encode(msg))
    assert back.state == {"last": [1, 2], "nested": [["a", [None]]]}


def test_cyclic_state_is_an_encode_error():
    cyclic: list = [1]
    cyclic.append(cyclic)
    looped: dict = {}
    looped["self"] = looped
    for state in (cyclic, looped):
        with pytest.raises(EncodeError):
            encode(Handover(P, 1, (), state))


def test_oversize_is_an_encode_error():
    msg = Execute(P, 1, "t", "r", 1, "x" * MAX_MESSAGE_BYTES, 10)
    with pytest.raises(EncodeError, match="limit"):
        encode(msg)
    small = Execute(P, 1, "t", "r", 1, "x" * 100, 10)
    size = sum(map(len, encode(small)))
    assert encode(small, max_bytes=size)
    with pytest.raises(EncodeError, match="limit"):
        encode(small, max_bytes=size - 1)


def test_not_a_message_is_an_encode_error():
    for obj in (P, CLAIM, M1, {"sender": 1}, None):
        with pytest.raises(EncodeError):
            encode(obj)


def test_encode_errors_are_value_errors_not_decode_errors():
    assert issubclass(EncodeError, ValueError) and issubclass(DecodeError, ValueError)
    assert not issubclass(EncodeError, DecodeError)


@pytest.mark.parametrize(
    "msg",
    [
        StatusReply(P, 1, nested(MAX_JSON_DEPTH + 1)),  # would be refused by every receiver
        Handover(P, 1, (), {1: "int key"}),  # json.dumps would silently turn the key into "1"
        Handover(P, 1, (), {None: 1}),
        Heartbeat(P, 2**63, 1, 1),  # beyond 64 bits: the receiver would refuse it
        Refuse(P, 1, "r" * (MAX_STRING + 1)),
        Join(P, 1, ("t",) * (MAX_ITEMS + 1)),
        Refuse(P, 1, "lone \ud800 surrogate"),
        Ack(P, True, 1, 1),  # a bool is not an int on the wire
        Ack(P, "1", 1, 1),  # type: ignore[arg-type]
    ],
    ids=["too-deep", "int-key", "none-key", "int64", "long-string", "long-list", "surrogate",
         "bool-term", "str-term"],
)
def test_encode_refuses_what_decode_would_refuse(msg):
    # A message that encodes must decode: otherwise a sender ships something every receiver
    # drops as malformed, and nobody learns why.
    with pytest.raises(EncodeError):
        encode(msg)
