"""A HEARTBEAT's table rows after its body (clerk._codectail): the same replica as rows inside
it, malformed bodies refused naming the field, and only a node that announced it gets it."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._codec import DecodeError, EncodeError, decode, encode
from clerk._core import Received
from clerk._messages import (
    RAW_ROWS_MARK,
    Ack,
    Heartbeat,
    Message,
    Peer,
    TableDelta,
    reads_raw_rows,
)
from clerk._replica import Replica, ReplicaLog, RowEncoder, row_key
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef
from tests.unit.corenet import Net, T

ME = Peer("m", "m:1", "0123456789ab" + RAW_ROWS_MARK, 0)


def _wire(delta: TableDelta) -> TableDelta:
    """``delta`` in a HEARTBEAT through the codec and back."""
    msg = decode(encode(Heartbeat(ME, 1, 2, 3, None, delta)))
    assert isinstance(msg, Heartbeat) and msg.table is not None
    return msg.table


def _body(delta: TableDelta) -> list[bytes]:
    return encode(Heartbeat(ME, 1, 2, 3, None, delta))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=4),
    max_leaves=12)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=6)  # (no surrogates)
changes = st.lists(st.tuples(names, st.none() | json_values), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(start=st.dictionaries(names, json_values, max_size=20), steps=st.lists(changes,
       max_size=5), chunk=st.integers(1, 400), seed=st.integers(0, 2**32))
def test_rows_after_the_body_apply_to_the_same_replica_as_rows_inside_it(
        start: dict, steps: list, chunk: int, seed: int) -> None:
    log = ReplicaLog("L")
    log.put_table({"tasks": start, "node_runs": {"a": 1}})
    old, new = Replica(), Replica()
    rng = random.Random(seed)
    for step in [[], *steps]:
        for name, value in step:
            if value is None:
                log.remove(row_key(name))
            else:
                log.put(row_key(name), json.dumps(value, separators=(",", ":")))
        # Each replica at its own pace: deltas cut at random sizes, the same for both forms.
        while True:
            size = rng.randint(1, chunk)
            a = log.delta(old.seq if old.log == log.log else -1, size)
            b = log.delta(new.seq if new.log == log.log else -1, size, raw=True)
            assert (a is None) == (b is None)
            if a is None or b is None:
                break
            assert (a.base, a.upto, a.gone, a.done) == (b.base, b.upto, b.gone, b.done)
            assert b.tail == len(b.rows[0]) and "".join(a.rows) == b.rows[0]
            wa, wb = _wire(a), _wire(b)
            assert wa.tail is None and wb == b  # the manager's delta, field for field
            assert old.apply(wa) == new.apply(wb)
        assert old.items() == new.items()
        assert dict(new.items()) == {k: t for k, t in log.items() if t is not None}
        assert (old.seq, old.caught_up, old.refused) == (new.seq, new.caught_up, new.refused)


def _scheduler_rows(tasks: int) -> tuple[Scheduler, list[str], dict[str, int]]:
    defs = [TaskDef(name=f"t{i:03d}", target="x:Y", interval=100, timeout=5000)
            for i in range(tasks)]
    s = Scheduler(defs, random.Random(1))
    s.activate(1764770000.0, False, (3, "n0"))
    names = list(s.records)
    return s, names, {n: s._slot_at(s.defs[n], 1764770000.0 * 1000) for n in names}


def test_task_rows_with_history_patches_apply_alike_in_both_forms() -> None:
    """The scheduler's rows (their histories as patches from exact positions, as a member of
    this build gets them) through the codec in both forms: the same replica, row for row."""
    s, names, slots = _scheduler_rows(40)
    members = {f"n{i}": frozenset(names) for i in range(3)}
    log, enc = ReplicaLog("L"), RowEncoder()
    old, new = Replica(), Replica()
    exact: set[int] = set()
    patched = 0
    for r in range(120):
        batch = names[(r * 10) % 40:(r * 10) % 40 + 10]
        for n in batch:
            slots[n] += 1
            wall_ms = s.due_ms(n, slots[n]) + 0.4
            (out,) = s._dispatch(s.defs[n], s.records[n], slots[n], wall_ms, members, [])
            s.on_result(n, out.run_id, out.node, "ok", {"n": r, "q": 'é"\\'}, 0.12, "",
                        (wall_ms + 2.0) / 1000)
        enc.step(s, log, float("inf"))
        assert old.seq == new.seq
        while (a := log.delta(old.seq, 8 * 1024, 2 if old.seq in exact else 1)) is not None:
            b = log.delta(new.seq, 8 * 1024, 2 if new.seq in exact else 1, raw=True)
            assert b is not None and a.hist == b.hist
            patched += a.hist is not None and '",' in "".join(a.hist)
            assert old.apply(_wire(a)) and new.apply(_wire(b))
            if a.upto == log.seq:
                exact.add(a.upto)
        assert old.items() == new.items() == [(k, t) for k, t in log.items() if t is not None]
    assert patched and old.refused == new.refused == 0


def _delta() -> TableDelta:
    log = ReplicaLog("L")
    log.put_table({"tasks": {"a": {"x": 1}, "b": {"y": "é\"z"}}})
    d = log.delta(-1, raw=True)
    assert d is not None
    return d


def _with_body(frames: list[bytes], body: bytes) -> list[bytes]:
    return [frames[0], frames[1], body]


def test_the_rows_follow_the_body_unescaped() -> None:
    d = _delta()
    head, _, body = _body(d)[2].partition(b"}}{")
    assert b'"rows":[],' in head and f'"tail":{d.tail}'.encode() in head
    assert body.decode() == d.rows[0][1:]  # the row text as the log holds it, no escaping


@pytest.mark.parametrize("mutate, says", [
    (lambda b: b + b" ", "heartbeat.table.tail"),  # more than announced
    (lambda b: b[:-1], "heartbeat.table.tail"),  # less
    (lambda b: b.replace(b'"tail":', b'"tail":1'), "heartbeat.table.tail"),
    (lambda b: b.replace(b'"tail":', b'"tail":-'), "heartbeat.table.tail"),
    (lambda b: b.replace(b'"rows":[]', b'"rows":["{}"]'), "heartbeat.table.rows"),
    (lambda b: b.rpartition(b"}}{")[0] + b"}}", "heartbeat.table.tail"),  # none follow
    (lambda b: b.replace(b'}}{"t:a"', b'}}["t:a"', 1).replace(b'}}}', b'}]}'),
     "not a JSON object"),
])
def test_a_malformed_body_with_rows_after_it_is_refused_naming_the_field(mutate, says) -> None:
    frames = _body(_delta())
    with pytest.raises(DecodeError) as err:
        decode(_with_body(frames, mutate(frames[2])))
    assert says in str(err.value)


def test_text_after_any_other_body_is_refused_as_before() -> None:
    frames = encode(Ack(ME, 1, 2, 3))
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode(_with_body(frames, frames[2] + b'{"t:a":1}'))
    old = encode(Heartbeat(ME, 1, 2, 3, None, TableDelta("L", -1, 1, ('{"t:a":1}',))))
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode(_with_body(old, old[2] + b'{"t:a":1}'))  # no tail announced


@pytest.mark.parametrize("rows", ['{"t:a":{"x":}}', '{"t:a":NaN}', '{"t:a":1,}', '{"t:a"}',
                                  '{"t:a":1}{"t:b":2}'])
def test_rows_after_the_body_that_are_not_json_never_reach_the_replica(rows: str) -> None:
    rep = Replica()
    assert rep.apply(_wire(_delta()))
    held = rep.items()
    rep.track()
    d = TableDelta("L", rep.seq, rep.seq + 5, (rows,), (), True, None, len(rows))
    got = _wire(d)
    assert got.rows == (rows,)  # the body is well formed: the rows are the replica's to check
    assert not rep.apply(got)
    assert rep.items() == held and rep.take_changes() == {}  # nothing for the journal either
    assert rep.refused == 1 and "not a JSON object of rows" in rep.refusal


def test_a_tail_that_does_not_match_its_rows_is_not_sent() -> None:
    d = _delta()
    assert d.tail is not None
    lone = '{"t:a":"\ud800"}'  # (a lone surrogate: not valid Unicode on the wire)
    for bad, says in ((TableDelta("L", -1, 1, d.rows, (), True, None, d.tail + 1), "tail"),
                      (TableDelta("L", -1, 1, ("[1]",), (), True, None, 3), "JSON object"),
                      (TableDelta("L", -1, 1, (lone,), (), True, None, len(lone)), "Unicode")):
        with pytest.raises(EncodeError, match=says):
            encode(Heartbeat(ME, 1, 2, 3, None, bad))


def _table_net(a_inc: str, b_inc: str, c_inc: str) -> tuple[Net, list]:
    net = Net()
    a = net.node("a", 9, incarnation=a_inc)
    b = net.node("b", 5, seeds=["a"], incarnation=b_inc)
    c = net.node("c", 1, seeds=["a"], incarnation=c_inc)
    net.advance(T.heartbeat_interval * 3)
    return net, [a, b, c]


def test_only_a_member_that_announced_it_is_sent_rows_after_the_body() -> None:
    """A manager of this build, a member of this build (the mark) and one of an older build
    (none): each gets its form, and both end with the manager's table."""
    net, (a, b, c) = _table_net("a-1" + RAW_ROWS_MARK, "b-1" + RAW_ROWS_MARK, "c-1")
    assert reads_raw_rows(b.me) and not reads_raw_rows(c.me)
    since = net.mark()
    a.set_replicated({"tasks": {f"t{i}": {"slot": i, "s": 'é"\\'} for i in range(30)}})
    net.advance(T.heartbeat_interval * 3)
    to_b = [h.table for h in net.sends(a, Heartbeat, to=b, after=since) if h.table]
    to_c = [h.table for h in net.sends(a, Heartbeat, to=c, after=since) if h.table]
    assert to_b and all(t.tail == len(t.rows[0]) and len(t.rows) == 1 for t in to_b)
    assert to_c and all(t.tail is None for t in to_c)
    assert b.replicated == c.replicated == a.replicated


def test_a_member_of_this_build_reads_an_older_managers_rows_inside_the_body() -> None:
    """An older manager sends every member rows as strings inside the body (it never sets
    ``tail``): a member that announced the mark applies them as before."""
    net, (a, b, c) = _table_net("a-1", "b-1" + RAW_ROWS_MARK, "c-1")
    a.set_replicated({"tasks": {f"t{i}": {"slot": i, "s": 'é"\\'} for i in range(30)}})
    old = a.table_log.window(b.replica.seq if b.replica.log == a.table_log.log else -1,
                             10**6, 0)  # (what an older build's log makes: no ``raw``)
    assert old and all(d.tail is None for d in old)
    for d in old:
        net.do(b, Received(decode(encode(Heartbeat(a.me, a.term, a._seq, a.members.epoch,
                                                   None, d)))))
    assert b.replicated == a.replicated and b.replica.refused == 0


def test_a_batch_carries_heartbeats_with_rows_after_their_bodies() -> None:
    """Each message of a batch is its body with its length (clerk._batch): the rows after a
    HEARTBEAT's body stay its own, whatever comes after it in the batch."""
    from clerk._batch import decode_frames, pack

    d = _delta()
    beats: list[Message] = [Heartbeat(ME, 1, 2, 3, None, d), Ack(ME, 1, 2, 3),
             Heartbeat(ME, 1, 3, 3, None, TableDelta("L", d.upto, d.upto + 1, ('{"t:c":2}',),
                                                     (), True, None, 9))]
    (batch,) = pack([encode(m) for m in beats])
    assert batch[1] == b"batch"
    assert decode_frames(batch) == beats
