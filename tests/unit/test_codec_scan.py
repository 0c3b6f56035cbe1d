"""The decoder's fast path (clerk._codec.decode_body: the JSON scanner straight away, and a
batch's messages decoded without their frames checked again) accepts and refuses exactly
what the full path did: ``JSONDecoder.decode`` of the body, then the message's validator,
and each message of a batch through :func:`clerk._codec.decode` as if sent alone."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk import _codec
from clerk._batch import BATCH_KIND, decode_batch
from clerk._codec import MAGIC, DecodeError, decode, encode
from clerk._messages import Execute, Heartbeat, Peer, Result, ResultAck

pytestmark = pytest.mark.timeout(60)

ME = Peer("a", "127.0.0.1:7400", "0123456789ab+b", 0)

BODIES = [
    encode(Execute(ME, 3, "t", "r1", 7, {"n": [1, 2.5, "x"]}, 1000, due_ms=5)),
    encode(Result(ME, 3, "t", "r1", 7, "ok", {"s": "\u00e9"}, 0.25)),
    encode(ResultAck(ME, 3, "t", "r1")),
    encode(Heartbeat(ME, 3, 9, 1)),
]


def reference(frames: list[bytes]) -> object:
    """What decode did before the fast path: the whole body through ``JSONDecoder.decode``."""
    head, kind, body = frames
    validate = (_codec._VALIDATORS if b"\\u" in body else _codec._VALIDATORS_PLAIN).get(kind)
    if validate is None:
        raise DecodeError("kind", f"unknown message kind {kind[:40]!r}")
    try:
        data = _codec._DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError("json", f"{kind.decode()} body is not valid JSON: {exc}") from None
    return validate(data, kind.decode())


def outcome(fn: object, frames: list[bytes]) -> tuple[str, object]:
    try:
        return "ok", fn(frames)  # type: ignore[operator]
    except DecodeError as exc:
        return "error", (exc.reason, exc.detail)


EDGE = [b"", b" ", b"{", b"[", b'{"a":[', b'{"a":', b"null", b"1", b'"x"', b"{}",
        b"NaN", b"[Infinity]", b"1e400", b'{"a":1}x', b'{"a":1} ', b' {"a":1}',
        b"\n{}\n", b"[" * 5000 + b"]" * 5000, b"\xff", b'{"a":"\\ud800"}']


@pytest.mark.parametrize("body", EDGE)
def test_edge_bodies_decode_or_fail_as_before(body: bytes) -> None:
    for kind in (b"execute", b"result_ack", b"nope"):
        frames = [MAGIC, kind, body]
        assert outcome(decode, frames) == outcome(reference, frames)


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(BODIES) - 1), cut=st.integers(0, 400),
       insert=st.sampled_from([b"", b" ", b"\t", b"x", b",", b"]", b"}", b"\"", b"\\u0041",
                                b"1e999", b"null", b"\n"]),
       where=st.sampled_from(["cut", "before", "after", "at"]))
def test_mutated_bodies_decode_or_fail_as_before(which: int, cut: int, insert: bytes,
                                                 where: str) -> None:
    _, kind, body = BODIES[which]
    cut %= len(body) + 1
    if where == "cut":
        body = body[:cut]
    elif where == "before":
        body = insert + body
    elif where == "after":
        body = body + insert
    else:
        body = body[:cut] + insert + body[cut:]
    frames = [MAGIC, kind, body]
    assert outcome(decode, frames) == outcome(reference, frames)


def batch(items: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [MAGIC, BATCH_KIND,
            b"".join(struct.pack(">BI", len(k), len(b)) + k + b for k, b in items)]


def reference_batch(frames: list[bytes]) -> list[object]:
    """decode_batch before the fast path: framing, then each message through decode."""
    head, body = frames[0], frames[2]
    if head != MAGIC:
        decode([head, b"", b""])
    view = memoryview(body)
    items: list[tuple[bytes, bytes]] = []
    at, end = 0, len(body)
    while at < end:
        if at + 5 > end:
            raise DecodeError("batch", f"truncated item header at byte {at}")
        klen, blen = struct.unpack_from(">BI", body, at)
        at += 5
        if at + klen + blen > end:
            raise DecodeError("batch", f"item of {klen} + {blen} bytes overruns the batch")
        kind = bytes(view[at:at + klen])
        if kind == BATCH_KIND:
            raise DecodeError("batch", "a batch inside a batch")
        items.append((kind, bytes(view[at + klen:at + klen + blen])))
        at += klen + blen
    out: list[object] = []
    for kind, item in items:
        msg = decode([head, kind, item])
        if out and msg.sender != out[0].sender:  # type: ignore[attr-defined]
            raise DecodeError("batch_sender", f"a batch from {out[0].sender.name!r} "  # type: ignore[attr-defined]
                              f"holds a message from {msg.sender.name!r}")
        out.append(msg)
    if not out:
        raise DecodeError("batch", "an empty batch")
    return out


@settings(max_examples=300, deadline=None)
@given(picks=st.lists(st.integers(0, len(BODIES) - 1), max_size=6),
       spoil=st.integers(-1, 5), at=st.integers(0, 300),
       insert=st.sampled_from([b" ", b"x", b"]", b"\xff", b"", b"\x00\x00\x00\x00\x09"]),
       raw=st.booleans())
def test_a_batch_decodes_or_fails_as_before(picks: list[int], spoil: int, at: int,
                                            insert: bytes, raw: bool) -> None:
    items = [(BODIES[i][1], BODIES[i][2]) for i in picks]
    if 0 <= spoil < len(items):
        kind, body = items[spoil]
        at %= len(body) + 1
        items[spoil] = (kind, body[:at] + insert + body[at:])
    frames = batch(items)
    if raw:  # damage the framing itself
        cut = at % (len(frames[2]) + 1)
        frames[2] = frames[2][:cut] + insert + frames[2][cut:]
    assert outcome(decode_batch, frames) == outcome(reference_batch, frames)


def test_a_batch_of_memoryview_or_bytearray_frames_decodes_like_bytes() -> None:
    frames = batch([(BODIES[0][1], BODIES[0][2]), (BODIES[2][1], BODIES[2][2])])
    want = decode_batch(frames)
    # (decode_batch is typed for bytes; ZeroMQ may hand over either: what this test is about)
    assert decode_batch([frames[0], frames[1], bytearray(frames[2])]) == want  # type: ignore[list-item]
    assert decode_batch([frames[0], frames[1], memoryview(frames[2])]) == want  # type: ignore[list-item]
