"""Batches (clerk._batch): packing, strict unpacking, who gets them, order."""

from __future__ import annotations

import struct

import pytest

from clerk._batch import (
    BATCH_KIND,
    BATCH_MARK,
    BATCH_MAX,
    FLUSH_AFTER,
    Coalescer,
    decode_batch,
    decode_frames,
    pack,
    reads_batches,
)
from clerk._codec import MAGIC, DecodeError, decode, encode
from clerk._messages import Execute, Heartbeat, Peer, ResultAck, Status

pytestmark = pytest.mark.timeout(10)

ME = Peer("a", "127.0.0.1:7400", "0123456789ab" + BATCH_MARK, 0)
OTHER = Peer("b", "127.0.0.1:7401", "ba9876543210" + BATCH_MARK, 0)


def acks(n: int, sender: Peer = ME) -> list[list[bytes]]:
    return [encode(ResultAck(sender, 3, "t", f"run-{i}")) for i in range(n)]


def item(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">BI", len(kind), len(body)) + kind + body


def test_pack_round_trip_keeps_order_and_equality():
    msgs = [encode(Execute(ME, 3, f"t{i}", f"r{i}", i, {"n": i}, 1000, due_ms=5))
            for i in range(10)] + acks(3) + [encode(Heartbeat(ME, 3, 9, 1))]
    out = pack(msgs)
    assert len(out) == 1 and out[0][:2] == [MAGIC, BATCH_KIND]
    assert decode_frames(out[0]) == [decode(m) for m in msgs]


def test_a_single_message_goes_without_envelope():
    one = acks(1)
    assert pack(one) == one
    assert decode_frames(one[0]) == [decode(one[0])]


def test_pack_splits_at_the_count_and_size_limits_in_order():
    msgs = acks(BATCH_MAX * 2 + 1)
    out = pack(msgs)
    assert [len(decode_frames(f)) for f in out] == [BATCH_MAX, BATCH_MAX, 1]
    assert [m for f in out for m in decode_frames(f)] == [decode(m) for m in msgs]
    size = sum(len(x) for x in msgs[0]) * 5
    small = pack(msgs[:20], max_bytes=size)
    assert all(sum(len(x) for x in f) <= size for f in small)
    assert [m for f in small for m in decode_frames(f, max_bytes=size)] == [
        decode(m) for m in msgs[:20]]


@pytest.mark.parametrize("name,body,reason", [
    ("empty", b"", "batch"),
    ("truncated header", b"\x03\x00", "batch"),
    ("overrun", struct.pack(">BI", 3, 1000) + b"ack{}", "batch"),
    ("nested", item(b"batch", b"x"), "batch"),
    ("unknown kind", item(b"takeover", b"{}"), "kind"),
    ("bad json inside", item(b"result_ack", b"{not json"), "json"),
])
def test_a_malformed_batch_is_rejected_whole(name, body, reason):
    good = item(b"result_ack", acks(1)[0][2])
    for blob in (body, good + body) if body else (body,):  # good + b"": a batch of one
        with pytest.raises(DecodeError) as err:
            decode_batch([MAGIC, BATCH_KIND, blob])
        assert err.value.reason == reason, name


def test_a_batch_with_two_senders_is_rejected():
    blob = item(b"result_ack", acks(1)[0][2]) + item(b"result_ack", acks(1, OTHER)[0][2])
    with pytest.raises(DecodeError) as err:
        decode_batch([MAGIC, BATCH_KIND, blob])
    assert err.value.reason == "batch_sender"


def test_too_many_messages_or_bytes_or_a_foreign_version_are_rejected():
    one = item(b"result_ack", acks(1)[0][2])
    with pytest.raises(DecodeError) as err:
        decode_batch([MAGIC, BATCH_KIND, one * (BATCH_MAX + 1)])
    assert err.value.reason == "batch"
    with pytest.raises(DecodeError) as err:
        decode_batch([MAGIC, BATCH_KIND, one * 4], max_bytes=len(one) * 3)
    assert err.value.reason == "size"
    with pytest.raises(DecodeError) as err:
        decode_frames([MAGIC[:5] + b"\x09", BATCH_KIND, one * 2])
    assert err.value.reason == "version"


def test_an_old_node_drops_a_batch_as_an_unknown_kind():
    """What a PROTOCOL_VERSION 2 node without batches does with one: a counted drop."""
    with pytest.raises(DecodeError) as err:
        decode(pack(acks(2))[0])
    assert err.value.reason == "kind"


def test_coalescer_batches_only_to_peers_that_read_them():
    c = Coalescer()
    old = Peer("old", "127.0.0.1:7402", "0123456789ab", 0)
    assert reads_batches(OTHER) and not reads_batches(old)
    c.learn(OTHER)
    c.learn(old)
    for frames in acks(3):
        c.add(OTHER.address, frames, 0.0)
        c.add(old.address, frames, 0.0)
    c.add("127.0.0.1:9", acks(1)[0], 0.0)  # nothing heard from it: messages go alone
    c.add("127.0.0.1:9", acks(1)[0], 0.0)
    sent: list[tuple[str, list[bytes]]] = []
    c.flush(lambda to, frames: sent.append((to, frames)))
    assert [(to, f[1]) for to, f in sent] == [
        (OTHER.address, BATCH_KIND), *[(old.address, b"result_ack")] * 3,
        *[("127.0.0.1:9", b"result_ack")] * 2]
    assert c.stats["messages_sent"] == 8 and c.stats["batches_sent"] == 1
    assert not c and not c.overdue(1.0)
    c.flush(lambda to, frames: sent.append((to, frames)))  # nothing queued: nothing sent
    assert len(sent) == 6


def test_coalescer_forgets_a_peer_restarted_without_batches():
    c = Coalescer()
    c.learn(OTHER)
    assert OTHER.address in c.readers
    c.learn(Peer("b", OTHER.address, "fedcba987654", 0))
    assert OTHER.address not in c.readers
    c.learn(Status(Peer("status@client", "", "x", 0), 0).sender)
    assert "" not in c.readers


def test_coalescer_is_overdue_once_its_oldest_message_waited_flush_after():
    c = Coalescer()
    c.add(OTHER.address, acks(1)[0], 10.0)
    c.add(OTHER.address, acks(1)[0], 10.0 + FLUSH_AFTER)  # the oldest one counts
    assert not c.overdue(10.0 + FLUSH_AFTER / 2)
    assert c.overdue(10.0 + FLUSH_AFTER)


def test_a_message_in_another_nodes_name_goes_alone_in_its_place():
    """A HANDOVER passed on (clerk._handover.forward) names its first sender: packed into a
    batch of this node's own messages, the receiver dropped the whole batch
    ("batch_sender"). It goes alone, between batches of the messages around it, in order."""
    c = Coalescer()
    c.learn(OTHER)
    third = Peer("c", "127.0.0.1:7403", "aaaaaaaaaaaa" + BATCH_MARK, 0)
    mine = acks(4)
    passed_on = acks(1, third)[0]
    for frames in mine[:2]:
        c.add(OTHER.address, frames, 0.0)
    c.add(OTHER.address, passed_on, 0.0, alone=True)
    for frames in mine[2:]:
        c.add(OTHER.address, frames, 0.0)
    sent: list[list[bytes]] = []
    c.flush(lambda to, frames: sent.append(frames))
    assert [f[1] for f in sent] == [BATCH_KIND, b"result_ack", BATCH_KIND]
    received = [m for f in sent
                for m in (decode_batch(f) if f[1] == BATCH_KIND else [decode(f)])]
    assert [(m.sender.name, m.run_id) for m in received] == [  # type: ignore[attr-defined]
        ("a", "run-0"), ("a", "run-1"), ("c", "run-0"), ("a", "run-2"), ("a", "run-3")]
    assert c.stats["messages_sent"] == 5 and c.stats["batches_sent"] == 2
    # The mark is for that flush only: the next turn batches as before.
    for frames in acks(2):
        c.add(OTHER.address, frames, 1.0)
    c.flush(lambda to, frames: sent.append(frames))
    assert sent[-1][1] == BATCH_KIND and len(sent) == 4
