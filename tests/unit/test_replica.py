"""The table log and replicas (clerk._replica): deltas by change, chunks, resuming, logs."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest

from clerk._codec import MAX_MESSAGE_BYTES, MAX_STRING, decode, encode
from clerk._core import LeaveRequested, Received, Role, Send
from clerk._messages import Ack, Handover, Heartbeat, Join, Peer, TableDelta
from clerk._replica import (
    COMPACT_SLICE,
    TABLE_CHUNK_CHARS,
    TABLE_RESEND,
    TABLE_WINDOW_CHARS,
    Replica,
    ReplicaLog,
    RowEncoder,
    row_key,
)
from clerk._schedule import Scheduler
from clerk._tasks import task
from tests.unit.corenet import Net, T, cluster


def table(n: int, value: object = 0) -> dict:
    return {"tasks": {f"t{i:05d}": {"slot": i, "state": value} for i in range(n)},
            "node_runs": {"a": n}}


def delta_of(log: ReplicaLog, base: int) -> TableDelta:
    """``log.delta(base)``, which the test knows is one (narrowed, for mypy)."""
    d = log.delta(base)
    assert d is not None
    return d


def sync(log: ReplicaLog, rep: Replica, chunk: int = TABLE_CHUNK_CHARS) -> int:
    """Apply deltas until the replica holds the log; the number of deltas."""
    n = 0
    while (d := log.delta(rep.seq if rep.log == log.log else -1, chunk)) is not None:
        assert rep.apply(d) or d.upto <= rep.seq
        n += 1
        assert n < 10_000
    return n


def test_a_delta_carries_only_the_rows_changed_after_the_base() -> None:
    log = ReplicaLog("L")
    log.put_table(table(100))
    base = log.seq
    log.put(row_key("t00007"), json.dumps({"slot": 8}))
    log.put(row_key("t00003"), json.dumps({"slot": 9}))
    assert log.put(row_key("t00003"), json.dumps({"slot": 9})) is False  # same text
    d = log.delta(base)
    assert d is not None and (d.base, d.upto, d.done) == (base, log.seq, True)
    assert json.loads("".join(d.rows)) == {"t:t00007": {"slot": 8}, "t:t00003": {"slot": 9}}
    assert log.delta(log.seq) is None


def test_a_joiner_gets_the_table_in_bounded_resumable_chunks() -> None:
    log = ReplicaLog("L")
    log.put_table(table(2000, "x" * 200))
    rep = Replica()
    first = log.delta(-1, 20_000)
    assert first is not None and not first.done
    assert sum(map(len, first.rows)) <= 20_000 + 300
    assert rep.apply(first)
    # Changes meanwhile move to the end; the transfer resumes from where it stopped.
    log.put(row_key("t00000"), json.dumps({"slot": -5}))
    log.put(row_key("new"), json.dumps({"slot": 1}))
    n = sync(log, rep, 20_000)
    assert n > 20
    assert rep.table() == log.table()
    assert rep.table()["tasks"]["t00000"] == {"slot": -5}


def test_deltas_fit_the_codec_whatever_the_row_size() -> None:
    log = ReplicaLog("L")
    log.put_table({"tasks": {"big": {"state": "y" * 200_000}, "small": {"state": 1}}})
    rep = Replica()
    while (d := log.delta(rep.seq)) is not None:
        assert all(len(p) <= MAX_STRING for p in d.rows)
        frames = encode(Heartbeat(Peer("a", "a:1", "i", 0), 1, 1, 1, None, d))
        assert sum(map(len, frames)) < MAX_MESSAGE_BYTES
        beat = decode(frames)
        assert isinstance(beat, Heartbeat) and isinstance(beat.table, TableDelta)
        assert rep.apply(beat.table)
    assert rep.table() == log.table()


def test_a_gap_or_another_log_is_refused_until_it_starts_from_nothing() -> None:
    log = ReplicaLog("L1")
    log.put_table(table(3))
    rep = Replica()
    sync(log, rep)
    seq = rep.seq
    log.put(row_key("t00001"), "1")
    mid = log.seq
    log.put(row_key("t00002"), "2")
    assert not rep.apply(delta_of(log, mid))  # starts after what we hold: a gap
    assert rep.seq == seq and rep.refused == 1
    other = ReplicaLog("L2")
    other.put_table({"tasks": {"z": 1}})
    assert not rep.apply(TableDelta("L2", 0, other.seq))
    assert rep.apply(delta_of(other, -1))
    assert rep.log == "L2" and rep.table() == {"tasks": {"z": 1}}  # done: the old rows go


def test_rows_of_an_old_log_stay_until_the_new_log_is_complete() -> None:
    rep = Replica()
    old = ReplicaLog("L1")
    old.put_table(table(3))
    sync(old, rep)
    new = ReplicaLog("L2")
    new.put(row_key("t00000"), json.dumps({"slot": 99}))  # filling: not complete yet
    assert rep.apply(delta_of(new, -1))
    assert set(rep.table()["tasks"]) == {"t00000", "t00001", "t00002"}
    new.put(row_key("t00001"), "1")
    new.mark_complete()
    sync(new, rep)
    assert rep.table() == {"tasks": {"t00000": {"slot": 99}, "t00001": 1}}


def test_a_finished_transfer_drops_old_rows_even_when_as_many_keys_came_and_went() -> None:
    """The end of a transfer drops the rows the new log never sent; it counts the keys sent
    (no look at every row) unless one of them was a removal, as here: one row sent, one gone,
    and exactly one old row held, which must still go."""
    rep = Replica()
    old = ReplicaLog("L1")
    old.put_table({"tasks": {"t00001": 1}})
    sync(old, rep)
    new = ReplicaLog("L2")
    new.put(row_key("t00000"), "0")
    new.put(row_key("t00009"), "9")
    new.remove(row_key("t00009"))
    new.mark_complete()
    d = new.delta(-1)
    assert d is not None and d.done and d.gone == ("t:t00009",)
    assert rep.apply(d)
    assert rep.table() == {"tasks": {"t00000": 0}}


def test_removed_rows_travel_as_gone() -> None:
    log = ReplicaLog("L")
    log.put_table(table(3))
    rep = Replica()
    sync(log, rep)
    base = log.seq
    log.put_table({"tasks": {"t00000": {"slot": 0, "state": 0}}})
    d = log.delta(base)
    assert d is not None and set(d.gone) == {"t:t00001", "t:t00002", "k:node_runs"}
    rep.apply(d)
    assert rep.table() == {"tasks": {"t00000": {"slot": 0, "state": 0}}}


def test_the_encoder_encodes_only_what_the_scheduler_changed_within_its_budget() -> None:
    defs = [task("clerk.examples:Tally", name=f"t{i}", interval=1000) for i in range(300)]
    s = Scheduler(defs, random.Random(1))
    s.activate(1000.0, graceful=False)
    log = ReplicaLog("L")
    enc = RowEncoder()
    reads = [0]

    def clock() -> float:  # one unit per read: a deadline of 3 stops a step after 8 rows
        reads[0] += 1
        return float(reads[0])

    steps = 0
    while not enc.step(s, log, 3.0, clock=clock):
        steps += 1
        reads[0] = 0
        assert not log.complete
    assert steps == 37 and log.complete  # 300 rows, 8 per step (a clock read every 2)
    assert log.table() == json.loads(json.dumps(s.table()))
    seq = log.seq
    d, _ = s.trigger("t7", 1001.0, {"n": ["t7"]})
    assert d is not None
    assert enc.step(s, log, float("inf"))
    assert log.seq == seq + 1  # the row of t7 alone (node_runs moves with results)
    assert json.loads("".join(delta_of(log, seq).rows)).keys() == {"t:t7"}


# --- through the core -------------------------------------------------------------------------


def synced(net: Net, a: Any, b: Any) -> None:
    """Advance until ``b`` holds ``a``'s table (a window per round: bounded)."""
    for _ in range(60):
        if b.replicated == a.replicated:
            return
        net.advance(T.heartbeat_interval)
    raise AssertionError("the replica did not catch up in 60 rounds")


def test_a_joiner_gets_a_big_table_in_windows_without_waiting_for_a_change() -> None:
    net, (a, b) = cluster(("a", 1), ("b", 0))
    a.set_replicated(table(3000, "z" * 300))  # ~1 MB of rows
    synced(net, a, b)
    since = net.mark()
    d = net.node("d", 0, seeds=["a"])
    first = net.sends(a, Heartbeat, to=d, after=since)
    assert first and sum(len("".join(h.table.rows)) for h in first) <= (
        TABLE_WINDOW_CHARS + TABLE_CHUNK_CHARS)
    total = len(json.dumps(a.replicated))
    rounds = 0
    while d.replicated != a.replicated:
        net.advance(T.heartbeat_interval)
        rounds += 1
        assert rounds <= total // TABLE_WINDOW_CHARS + 3  # a window every round
    assert rounds >= 2  # more than one window: several rounds, each bounded
    for h in net.sends(a, Heartbeat, to=d, after=since):
        assert sum(map(len, encode(h))) < MAX_MESSAGE_BYTES


def test_a_joiner_that_never_acknowledges_is_not_sent_the_table_every_round() -> None:
    net = Net()
    a = net.node("a", 1)
    a.set_replicated(table(2000, "z" * 300))
    ghost = Peer("ghost", "ghost:7400", "g-1", 0)
    joined = net.mark()
    net.do(a, Received(Join(ghost, a.term, ())))  # admitted; never answers

    def to_ghost(after: int) -> list[Heartbeat]:
        return [e.msg for e in net.effects(a, Send, after) if e.to == ghost.address
                and isinstance(e.msg, Heartbeat) and e.msg.table is not None]

    assert to_ghost(joined)  # the first window, with the WELCOME
    since = net.mark()
    net.advance(TABLE_RESEND * 0.9)
    assert to_ghost(since) == []
    net.advance(TABLE_RESEND * 0.2)
    again = to_ghost(since)
    assert again and again[0].table is not None
    assert again[0].table.base == -1  # resent once, from what it acknowledged


def test_a_member_acks_the_sequence_it_holds_and_the_manager_resumes_from_it() -> None:
    net, (a, b) = cluster(("a", 1), ("b", 0))
    a.set_replicated(table(10))
    net.advance(T.heartbeat_interval * 2)
    since = net.mark()
    a.set_replicated(table(10, 1))
    net.advance(T.heartbeat_interval)
    (ack, *_) = [k for k in net.sends(b, Ack, after=since) if k.table >= 0]
    assert (ack.table, ack.log) == (a.table_log.seq, a.table_log.log)
    assert a.members.get("b").acked_table == a.table_log.seq
    assert b.replicated == a.replicated


def test_a_big_table_is_handed_over_as_the_rows_the_successor_lacks() -> None:
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    big = table(3000, "z" * 300)  # ~1 MB of rows: over what one HANDOVER may carry whole
    a.set_replicated(big)
    synced(net, a, b)
    # Changes the successor has not acknowledged yet: the hand-over carries exactly those.
    big["tasks"]["t00001"] = {"slot": 1, "state": "new"}
    big["tasks"]["extra"] = {"slot": 0}
    del big["tasks"]["t00002"]
    a.set_replicated(big)
    since = net.mark()
    net.do(a, LeaveRequested())
    (hand,) = net.sends(a, Handover, after=since)
    assert hand.state["delta"] == 1
    assert sum(map(len, hand.state["rows"])) < 10_000
    assert sum(map(len, encode(hand))) < MAX_MESSAGE_BYTES
    net.run()
    assert b.role is Role.MANAGER
    assert b.replicated == big


def test_a_hand_over_that_does_not_follow_the_replica_is_refused_not_applied() -> None:
    net, (a, b) = cluster(("a", 9), ("b", 5))
    a.set_replicated(table(5))
    net.advance(T.heartbeat_interval * 3)
    held = b.replicated
    b.replicated = {"delta": 1, "log": "elsewhere", "base": 7, "upto": 9,
                    "rows": ['{"t:x":1}'], "gone": []}
    assert b.replicated == held
    assert b.dropped["handover_gap"] == 1


def test_the_log_stays_compact_and_exact_under_many_changes() -> None:
    log = ReplicaLog("L")
    log.put_table(table(50))
    rep = Replica()
    sync(log, rep)
    rng = random.Random(3)
    sweeps = 0
    for n in range(20_000):
        before = len(log._changes)
        log.put(row_key(f"t{rng.randrange(50):05d}"), str(n))
        # Compacted in slices: never more than COMPACT_SLICE entries dropped by one change.
        assert before + 1 - len(log._changes) <= COMPACT_SLICE
        sweeps += log._sweep is not None
        if n % 997 == 0:
            sync(log, rep, 200)
    sync(log, rep, 200)
    assert rep.table() == log.table()
    assert sweeps > 20  # spread over changes
    # compacted: stale entries do not pile up (the threshold, and what a sweep's changes add)
    assert len(log._changes) <= 50 + 4096 + 16


def test_a_row_text_is_the_rows_json_whatever_changed_since_the_last_one() -> None:
    """``TaskRecord.to_text`` reuses the history's quoted text: after appends, drops by count
    and by bytes, and a history read from the wire, it is still exactly the row's JSON."""
    from clerk._control import RunHistory, make_entry, parse_run_history
    from clerk._record import TaskRecord

    rng = random.Random(5)
    rec = TaskRecord(state={"n": 0, "s": "é\"\\"}, has_state=True)
    for i in range(140):
        rec.run_history.append(make_entry(
            slot=i, due_ms=i * 1000.0, node=f"n{rng.randrange(3)}", start_ms=i * 1000.5,
            duration_ms=rng.random(), outcome="error" if i % 7 else "ok",
            error="boom \"quoted\"\n" * rng.randrange(3), version=i, trigger=i % 5 == 0),
            cap_bytes=rng.choice([300, 1200, 8192]))
        rec.slot, rec.dispatched, rec.state = i, i + 1, {"n": i, "s": "é\"\\"}
        assert rec.to_text() == json.dumps(rec.to_json(), separators=(",", ":"))
        assert json.loads(rec.run_history.text()) == rec.run_history.entries
    again = TaskRecord.from_json(json.loads(rec.to_text()))
    assert again is not None and again.run_history == rec.run_history
    assert again.to_text() == rec.to_text()
    again.run_history.append(make_entry(slot=999, due_ms=None, node="\u00e9", start_ms=1.0,
                                        duration_ms=0.5, outcome="ok", error="", version=9,
                                        trigger=False), cap_bytes=8192)
    assert again.to_text() == json.dumps(again.to_json(), separators=(",", ":"))
    assert parse_run_history(" [ ] ").text() == " [ ] " and RunHistory().text() == "[]"
    assert parse_run_history('[[1],[2]]') == []  # malformed entries dropped, text rebuilt
    assert parse_run_history('[[1],[2]]').text() == "[]"


def test_a_replica_keeps_the_row_texts_it_was_sent_and_refuses_what_is_not_json() -> None:
    from clerk._replica import row_texts

    rows = {"t:a": {"x": [1, {"y": "\"é"}], "z": None}, "k:node_runs": {"a": 3}, "t:b": 1.5}
    compact = json.dumps(rows, separators=(",", ":"))
    assert row_texts(compact) == {k: json.dumps(v, separators=(",", ":"))
                                  for k, v in rows.items()}
    assert row_texts(json.dumps(rows, indent=1)) == row_texts(compact)  # spaced: slow path
    assert row_texts("{}") == {}
    for bad in ("", "{", "[]", '{"a":1', '{"a":1,}', '{"a":1}x', '{"a":NaN}',
                '{"a":[Infinity]}', '{1:2}', '{"a" 1}', '"x"', '{"a":1e400}',
                '{"a":{"b":[-1E999]}}', '{"a":1, "b":2e308}'):
        assert row_texts(bad) is None, bad
    rep = Replica()
    assert not rep.apply(TableDelta("L", -1, 1, ('{"t:a":{"x":NaN}}',)))
    assert rep.refused == 1 and not rep
    assert rep.apply(TableDelta("L", -1, 1, ('{"t:a":', '{"x":1}}'), (), True))
    assert rep.items() == [("t:a", '{"x":1}')] and rep.table() == {"tasks": {"a": {"x": 1}}}


def test_a_row_with_a_number_too_large_for_a_float_is_refused_naming_row_and_field(
        caplog: pytest.LogCaptureFixture) -> None:
    """``1e400`` is read by Python's json as inf, past ``parse_constant``: on main the row was
    taken (its state held inf, which no EXECUTE or data directory write can carry)."""
    rep = Replica()
    rows = '{"t:ok":{"state":{"n":1.5}},"t:poll":{"state":{"seen":[1,2,1e400]}},"k:x":NaN}'
    with caplog.at_level(logging.WARNING, logger="clerk.replica"):
        assert not rep.apply(TableDelta("L", -1, 1, (rows,)))
    assert rep.refused == 1 and not rep
    assert rep.refusal == (
        "the rows of the delta -1..1 of log 'L' are not a JSON object of rows: row 't:poll', "
        "field state.seen[2]: 1e400 is not a finite number; row 'k:x': NaN is not a finite "
        "number")
    assert [r.getMessage() for r in caplog.records] == [
        f"refused a table delta: {rep.refusal}"]
    assert rep.apply(TableDelta("L", -1, 1, (rows.replace("1e400", "1e300")
                                             .replace("NaN", "0"),), (), True))
    assert rep.table()["tasks"]["poll"]["state"]["seen"] == [1, 2, 1e300]


def test_a_takeover_loads_the_table_in_slices_exactly_as_in_one_piece() -> None:
    """``Scheduler.load_rows`` over a replica's row texts, a few rows per call, leaves the
    scheduler as ``Scheduler.load`` of the parsed table does (a state of ours that is better
    by lineage is kept in both); a slice stops at its deadline."""
    defs = [task("clerk.examples:Tally", name=f"t{i:03d}", interval=1000) for i in range(60)]
    src = Scheduler(defs, random.Random(1))
    src.activate(1000.0, graceful=False)
    dispatches, _ = src.tick(1002.0, {"n2": [d.name for d in defs]})
    for d in dispatches:
        src.on_result(d.task, d.run_id, d.node, "ok", {"count": d.slot}, 1.0, "", 1002.1)
    log = ReplicaLog("a")
    RowEncoder().step(src, log, float("inf"))
    rep = Replica()
    sync(log, rep)

    def fresh() -> Scheduler:
        s = Scheduler(defs, random.Random(2))
        mine = s.records["t007"]  # ours: further along by lineage than the replicated row
        mine.state, mine.has_state, mine.version = {"count": 99}, True, 10**6
        mine.origin = dict(src.records["t007"].origin or {})
        mine.history = [list(h) for h in src.records["t007"].history]
        return s

    whole = fresh()
    whole.load(rep.table())
    sliced = fresh()
    items = rep.items()
    ticks = iter(range(1, 10**6))
    at, calls = 0, 0
    while at < len(items):
        # a clock past the deadline at its first look: one check's worth of rows per call
        at = sliced.load_rows(items, at, 0.5, clock=lambda: float(next(ticks)))
        calls += 1
    assert calls == len(items)  # a look at the clock after each row
    assert sliced.table() == whole.table()
    assert sliced.records["t007"].state == {"count": 99}
    assert sliced.node_runs == whole.node_runs == src.node_runs
