"""The decoder's shortcuts (clerk._codec's docstring) check exactly what the full path checks.

A sender decoded before is handed out again only for the very same JSON values and types; a
body without a ``\\u`` escape skips the surrogate check because it cannot hold a surrogate;
both caches stay bounded whatever a peer sends.
"""

import json

import pytest

from clerk import _codec
from clerk._codec import MAGIC, PATHS_CACHE, PEER_CACHE, DecodeError, decode, encode
from clerk._messages import Join, Peer, ResultAck

P = Peer("a@h1", "h1:1", "inc1", 0)


def frames_with_sender(sender: dict[str, object]) -> list[bytes]:
    body = json.loads(encode(ResultAck(P, 1, "t", "r-1"))[2])
    body["sender"] = sender
    return [MAGIC, b"result_ack", json.dumps(body).encode()]


def test_a_sender_seen_before_is_the_same_object_and_equal():
    sender = {"name": "b@h2", "address": "h2:2", "incarnation": "i2", "priority": 3}
    first = decode(frames_with_sender(sender)).sender
    again = decode(frames_with_sender(dict(sender))).sender
    assert again is first
    assert again == Peer("b@h2", "h2:2", "i2", 3)


@pytest.mark.parametrize("priority", [True, 1.0, "1", None, [1]])
def test_a_cached_sender_does_not_admit_a_value_of_another_type(priority: object):
    good = {"name": "c@h3", "address": "h3:3", "incarnation": "i3", "priority": 1}
    assert decode(frames_with_sender(good)).sender.priority == 1  # now cached
    with pytest.raises(DecodeError) as info:
        decode(frames_with_sender({**good, "priority": priority}))
    assert info.value.reason == "field"


def test_a_cached_sender_with_a_field_missing_or_extra_is_refused():
    good = {"name": "d@h4", "address": "h4:4", "incarnation": "i4", "priority": 0}
    decode(frames_with_sender(good))
    for bad in ({k: v for k, v in good.items() if k != "address"}, {**good, "x": 1}):
        with pytest.raises(DecodeError):
            decode(frames_with_sender(bad))


def test_the_sender_cache_is_bounded():
    for i in range(PEER_CACHE + 10):
        decode(frames_with_sender({"name": f"n{i}@h", "address": "h:1", "incarnation": "i",
                                   "priority": 0}))
    assert all(len(c) <= PEER_CACHE for c in _codec._SCALAR_CACHES.values())


def test_a_lone_surrogate_is_refused_even_after_the_same_sender_was_cached():
    sender = {"name": "e@h5", "address": "h5:5", "incarnation": "i5", "priority": 0}
    decode(frames_with_sender(sender))
    raw = json.dumps(json.loads(frames_with_sender(sender)[2]))
    bad = raw.replace('"e@h5"', '"e\\ud800"')
    with pytest.raises(DecodeError):
        decode([MAGIC, b"result_ack", bad.encode()])
    # an escaped character that is fine still decodes (the strict path)
    ok = raw.replace('"e@h5"', '"e\\u00e9"')
    assert decode([MAGIC, b"result_ack", ok.encode()]).sender.name == "eé"


def test_plain_utf8_without_escapes_decodes_and_encoded_surrogates_are_refused():
    join = json.dumps(json.loads(encode(Join(P, 1))[2]), ensure_ascii=False)
    assert "\\u" not in join
    msg = decode([MAGIC, b"join", join.replace("a@h1", "aé@h1").encode()])
    assert msg.sender.name == "aé@h1"
    # a surrogate written as UTF-8 bytes (no escape) is not UTF-8: the body is refused
    raw = join.encode().replace(b"a@h1", b"a\xed\xa0\x80")
    with pytest.raises(DecodeError) as info:
        decode([MAGIC, b"join", raw])
    assert info.value.reason == "json"


def test_field_paths_in_errors_and_their_cache_is_bounded():
    with pytest.raises(DecodeError) as info:
        decode(frames_with_sender({"name": 5, "address": "h:1", "incarnation": "i",
                                   "priority": 0}))
    assert "result_ack.sender.name" in info.value.detail
    assert PATHS_CACHE >= 64


def join_frames(tasks: object, escaped: bool = True) -> list[bytes]:
    body = json.loads(encode(Join(P, 1, ("x",)))[2])
    body["tasks"] = tasks
    return [MAGIC, b"join", json.dumps(body, ensure_ascii=escaped).encode()]


def test_a_list_of_strings_checked_at_once_refuses_what_the_item_checks_refuse():
    many = [f"task{i:05d}" for i in range(5000)]
    assert decode(join_frames(many)).tasks == tuple(many)
    assert decode(join_frames(["é", *many])).tasks[0] == "é"  # not ASCII: item by item
    assert decode(join_frames(["é", *many], escaped=False)).tasks[0] == "é"
    for bad, where in (([*many, 5], "[5000]"), ([*many, "\ud800"], "[5000]"),
                       ([*many, "x" * (_codec.MAX_STRING + 1)], "[5000]"),
                       ([None, *many], "[0]")):
        with pytest.raises(DecodeError) as info:
            decode(join_frames(bad))
        assert info.value.reason == "field" and where in info.value.detail, info.value.detail


def test_a_tuple_of_strings_encoded_at_once_refuses_what_the_item_checks_refuse():
    many = tuple(f"task{i:05d}" for i in range(5000))
    assert decode(encode(Join(P, 1, many))).tasks == many
    assert decode(encode(Join(P, 1, ("é", *many)))).tasks[0] == "é"
    for bad in ((*many, 5), (*many, "\ud800"), (*many, "x" * (_codec.MAX_STRING + 1))):
        with pytest.raises(_codec.EncodeError) as info:
            encode(Join(P, 1, bad))  # type: ignore[arg-type]
        assert "tasks[]" in str(info.value), info.value
