"""A RESULT, a RESULT_ACK and an EXECUTE written in one step (clerk._codec ``_WRITERS``,
clerk._codecwrite) are the generic path's frames byte for byte, and anything outside their
common case gets the generic path's frames or its error."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk import _codec
from clerk._codec import EncodeError, decode, encode
from clerk._messages import Execute, Message, Peer, Result, ResultAck

P = Peer("n2@127.0.0.1", "127.0.0.1:7402", "0f1e2d3c4b5a6978+b", 0)


def generic(msg: Message, max_bytes: int = _codec.MAX_MESSAGE_BYTES) -> list[bytes]:
    """``encode`` without its writers: the dumper and the encoder, as before."""
    writers, _codec._WRITERS = _codec._WRITERS, {}
    try:
        return encode(msg, max_bytes)
    finally:
        _codec._WRITERS = writers


def same(msg: Message, max_bytes: int = _codec.MAX_MESSAGE_BYTES) -> None:
    """``encode`` gives what the generic path gives: the frames, or the error."""
    try:
        want: Any = generic(msg, max_bytes)
    except EncodeError as exc:
        with pytest.raises(EncodeError) as info:
            encode(msg, max_bytes)
        assert str(info.value) == str(exc)
        return
    assert encode(msg, max_bytes) == want
    decode(want)  # (what encodes decodes)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)
texts = st.text(max_size=12) | st.sampled_from(["ok", "error", "r-1", "", "é", "\ud800"])
ints = st.integers(-(2**64), 2**64) | st.sampled_from([0, 3, 2**63 - 1, -(2**63), 2**63])
peers = st.builds(Peer, texts, texts, texts, ints) | st.just(P)


@settings(max_examples=400, deadline=None)
@given(peers, ints, texts, texts, ints, texts, json_values,
       st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 5), texts)
def test_a_result_is_the_generic_paths_frames_or_its_error(
        sender: Peer, term: int, task: str, run_id: str, slot: int, outcome: str,
        state: Any, duration: float, error: str) -> None:
    same(Result(sender, term, task, run_id, slot, outcome, state, duration, error))


@settings(max_examples=200, deadline=None)
@given(peers, ints, texts, texts)
def test_a_result_ack_is_the_generic_paths_frames_or_its_error(
        sender: Peer, term: int, task: str, run_id: str) -> None:
    same(ResultAck(sender, term, task, run_id))


@settings(max_examples=400, deadline=None)
@given(peers, ints, texts, texts, ints, json_values, ints, st.booleans() | st.integers(0, 1),
       ints, ints)
def test_an_execute_is_the_generic_paths_frames_or_its_error(
        sender: Peer, term: int, task: str, run_id: str, slot: int, state: Any, timeout: int,
        init: bool, due: int, deadline: int) -> None:
    same(Execute(sender, term, task, run_id, slot, state, timeout, init, due, deadline))


@pytest.mark.parametrize("msg", [
    Execute(P, 3, "stamp-17", "3c4ccee2-17/3/n1@127.0.0.1~1234.0badf00d", 17647700059,
            {"dir": "/tmp/clerk-bench/stamps", "n": [1, 2.5, None, True]}, 5000, False,
            1764770005933, 1764770011933),
    Execute(P, 3, "t", "r", 0, None, 5000, True, 0, 0),
    Execute(P, 3, "t", "r", 0, ("a", 1), 5000, False, 0, 0),  # a tuple goes out as an array
    Execute(P, 3, "t", "r", 0, {1: "x"}, 5000, False, 0, 0),  # not a JSON object: the error
    Execute(P, 3, "t", "r", 0, {"x": math.nan}, 5000, False, 0, 0),
    Execute(P, 3, "t", "r", 0, {"x": "\ud800"}, 5000, False, 0, 0),
    Execute(P, 3, "t", "r", 0, {"x": "é"}, 5000, False, 0, 0),
    Execute(P, 3, "té", "r", 0, None, 5000, False, 0, 0),
    Execute(P, 3, "t", "r", 0, None, 5000, 1, 0, 0),  # type: ignore[arg-type]
    Execute(P, 3, "t", "r", 0, None, 5000, False, 2**63, 0),
    Execute(P, 3, "t", "r", 0, None, 5000, False, 0, 1.5),  # type: ignore[arg-type]
    Execute(P, 3, "t", "r", 0, "x" * 5000, 5000, False, 0, 0),
    Execute(P, 3, "t" * 100_000, "r", 0, None, 5000, False, 0, 0),
    Result(P, 3, "stamp-17", "3c4ccee2/17/n1~1234.0", 12345, "ok",
           {"dir": "/tmp/clerk-bench/stamps", "n": [1, 2.5, None, True]}, 0.123456, ""),
    Result(P, 3, "t", "r", 0, "error", None, 12.0, "Traceback ...\nKeyError: 'x'"),
    Result(P, 3, "t", "r", 0, "ok", ("a", 1), 0.5, ""),  # a tuple goes out as an array
    Result(P, 3, "t", "r", 0, "ok", {1: "x"}, 0.5, ""),  # not a JSON object: the error
    Result(P, 3, "t", "r", 0, "ok", {"x": math.nan}, 0.5, ""),
    Result(P, 3, "t", "r", 0, "ok", {"x": {1}}, 0.5, ""),
    Result(P, 3, "t", "r", 0, "ok", "x" * 5000, 0.5, ""),
    Result(P, True, "t", "r", 0, "ok", None, 0.5, ""),  # type: ignore[arg-type]
    Result(P, 3, "t", "r", 0, "ok", None, 1, ""),
    Result(P, 3, "t", "r", 0, "ok", None, math.inf, ""),
    Result(P, 3, "t" * 100_000, "r", 0, "ok", None, 0.5, ""),
    ResultAck(P, 3, "stamp-17", "3c4ccee2/17/n1~1234.0"),
    ResultAck(P, 3, "t", 5),  # type: ignore[arg-type]
])
def test_common_and_odd_cases(msg: Message) -> None:
    same(msg)
    same(msg, max_bytes=300)  # over the size limit: the same error


def test_a_new_sender_object_is_written_anew() -> None:
    """The sender's text is remembered by identity: another Peer (another node, or this one
    after its incarnation changed) is written as itself."""
    a = encode(ResultAck(P, 1, "t", "r"))
    other = Peer("n3@127.0.0.1", "127.0.0.1:7403", "99+b", 2)
    b = encode(ResultAck(other, 1, "t", "r"))
    assert decode(a).sender == P and decode(b).sender == other
    assert encode(ResultAck(P, 1, "t", "r")) == a
