"""Operator control on the pure Scheduler: pause, resume, trigger, history, merges."""

from __future__ import annotations

import json
import random

import pytest

from clerk._codec import DecodeError, decode, encode
from clerk._control import (
    HISTORY_BUDGET_BYTES,
    HISTORY_MAX_RUNS,
    RunHistory,
    append_history,
    make_entry,
    newer_pause,
    parse_run_history,
)
from clerk._messages import Control, ControlReply, Peer
from clerk._schedule import Scheduler, TaskRecord, pack_table
from clerk._tasks import TaskDef
from tests.unit.test_schedule import IV, NODES, K, due, run_ok, sched, started, tdef


def test_a_paused_task_is_not_dispatched_and_its_slots_are_not_skipped() -> None:
    s = started(sched(), due("t", K) - 0.1)
    run_ok(s, K)
    s.set_paused("t", True, "b", due("t", K) + 0.5)
    for k in range(K + 1, K + 6):
        ds, _ = s.tick(due("t", k), NODES)
        assert ds == []
    assert s.records["t"].counts["skipped"] == 0
    row = s.status(due("t", K + 6))[0]
    assert row["paused"] is True and row["paused_by"] == "b"
    assert row["paused_at"] == pytest.approx(due("t", K) + 0.5)


def test_resume_continues_on_the_grid_with_the_next_slot() -> None:
    s = started(sched(), due("t", K) - 0.1)
    run_ok(s, K)
    s.set_paused("t", True, "a", due("t", K) + 0.1)
    s.tick(due("t", K + 3), NODES)
    s.set_paused("t", False, "c", due("t", K + 5) + 0.2)
    assert s.tick(due("t", K + 5) + 0.3, NODES)[0] == []  # nothing due before K+6
    assert s.next_deadline(due("t", K + 5) + 0.3) == pytest.approx(due("t", K + 6))
    run_ok(s, K + 6)
    assert s.status(due("t", K + 6))[0]["paused"] is False


def test_pause_lets_the_run_in_flight_finish() -> None:
    s = started(sched(), due("t", K) - 0.1)
    ds, _ = s.tick(due("t", K), NODES)
    s.set_paused("t", True, "a", due("t", K) + 0.01)
    fin = s.on_result("t", ds[0].run_id, ds[0].node, "ok", {"n": 1}, 1.0, "", due("t", K) + 0.1)
    assert fin is not None and s.records["t"].state == {"n": 1}


def test_a_takeover_keeps_the_task_paused_and_counts_no_failover_skips() -> None:
    s = started(sched(), due("t", K) - 0.1)
    run_ok(s, K)
    s.set_paused("t", True, "a", due("t", K) + 0.1)
    new = sched(seed=2)
    new.load(pack_table(s.table()))
    new.activate(due("t", K + 4) + 0.1, graceful=False)
    assert new.records["t"].paused
    assert new.records["t"].counts["skipped"] == 0
    assert new.tick(due("t", K + 8), NODES)[0] == []


def test_merge_keeps_the_most_recent_command_whichever_state_wins() -> None:
    a = started(sched(), due("t", K) - 0.1)
    b = started(sched(seed=2), due("t", K) - 0.1)
    for k in range(K, K + 3):
        run_ok(a, k)  # a has more history: its record wins the merge
    run_ok(b, K)  # b ran slot K on its side of the partition too
    a.set_paused("t", True, "a", 100.0)
    b.set_paused("t", True, "b", 90.0)
    b.set_paused("t", False, "b", 200.0)  # the most recent command: resume
    assert b.merge(pack_table(a.table())) is True
    assert b.records["t"].slot == K + 2
    assert not b.records["t"].paused and b.records["t"].pause == {
        "paused": False, "node": "b", "at": 200.0}
    assert a.merge(pack_table(b.table())) is True
    assert not a.records["t"].paused
    # Each side's runs are in the merged history, once each, in the order they started.
    slots = [e[0] for e in b.records["t"].run_history]
    assert slots == [e[0] for e in a.records["t"].run_history] == [K, K, K + 1, K + 2]
    tie = newer_pause({"paused": True, "node": "b", "at": 1.0},
                      {"paused": False, "node": "a", "at": 1.0})
    assert tie is not None and tie["node"] == "b"  # tie: node


def test_trigger_runs_now_with_the_current_state_and_never_overlaps() -> None:
    s = started(sched(), due("t", K) - 0.1)
    run_ok(s, K, state={"n": 1})
    s.set_paused("t", True, "a", due("t", K) + 0.1)
    d, err = s.trigger("t", due("t", K) + 0.2, NODES)
    assert err == "" and d is not None and d.state == {"n": 1} and not d.init
    assert d.slot == K and d.node in NODES
    again, err = s.trigger("t", due("t", K) + 0.3, NODES)
    assert again is None and "in flight" in err and d.run_id in err
    fin = s.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 2.0, "", due("t", K) + 0.4)
    assert fin is not None and fin.lateness_ms is None
    hist = s.detail("t", due("t", K) + 0.5)["history"]
    assert [(h["slot"], h["trigger"], h["version"]) for h in hist] == [(K, False, 1),
                                                                         (K, True, 2)]
    assert hist[1]["due"] is None and hist[0]["due"] == pytest.approx(due("t", K))
    assert s.records["t"].paused  # a trigger does not resume
    assert s.trigger("t", due("t", K) + 0.6, {})[1].endswith("nodes() returned none)")


def test_a_slot_coming_while_a_triggered_run_is_in_flight_is_skipped() -> None:
    s = started(sched(), due("t", K) + 0.5)
    d, _ = s.trigger("t", due("t", K) + 0.6, NODES)
    assert d is not None
    assert s.tick(due("t", K + 1), NODES)[0] == []
    assert s.records["t"].counts["skipped"] == 1


def test_unknown_task_lists_the_known_ones() -> None:
    s = sched(tdef("b"), tdef("a"))
    assert s.unknown("a") is None
    assert s.unknown("zz") == "unknown task 'zz' (known: a, b)"


def test_unknown_task_among_10000_names_the_closest_within_a_message() -> None:
    """Listing 10,000 names made an error text over the codec's longest string: the reply
    was never sent and the operator saw "no node answered"."""
    s = sched(*(tdef(f"myapp.tasks:Poll{i:05d}") for i in range(10_000)))
    err = s.unknown("myapp.tasks:Poll0012")
    assert err is not None and len(err) < 2_000
    assert "10000 tasks" in err and "closest: myapp.tasks:Poll" in err
    frames = encode(ControlReply(Peer("n", "h:1", "i", 0), 1, False, err))
    assert decode(frames) == ControlReply(Peer("n", "h:1", "i", 0), 1, False, err)


def test_history_keeps_the_last_50_runs_with_their_facts() -> None:
    s = started(sched(), due("t", K) - 0.1)
    for k in range(K, K + 60):
        ds, _ = s.tick(due("t", k), NODES)
        outcome = "error" if k % 7 == 0 else "ok"
        s.on_result("t", ds[0].run_id, ds[0].node, outcome, {"k": k}, 3.25,
                    "Traceback...\nValueError: boom" if outcome == "error" else "",
                    due("t", k) + 0.01)
    hist = s.detail("t", due("t", K + 60))["history"]
    assert len(hist) == HISTORY_MAX_RUNS
    assert [h["slot"] for h in hist] == list(range(K + 10, K + 60))
    err = next(h for h in hist if h["outcome"] == "error")
    assert err["error"] == "ValueError: boom" and err["duration_ms"] == 3.25
    assert all(h["node"] in NODES and h["start"] >= h["due"] for h in hist)
    assert hist[-1]["version"] == s.records["t"].counts["ok"]


def test_history_is_bounded_in_bytes_over_all_tasks() -> None:
    defs = [tdef(f"t{i}") for i in range(1000)]
    s = Scheduler(defs, random.Random(1))
    assert s.history_cap * 1000 <= HISTORY_BUDGET_BYTES
    hist = RunHistory()
    for k in range(20):
        append_history(hist, make_entry(slot=K + k, due_ms=1.7e12, node="n1@10.0.0.1",
                                        start_ms=1.7e12, duration_ms=1.0, outcome="error",
                                        error="x" * 500, version=k, trigger=False),
                       s.history_cap)
    assert 1 <= len(hist) < 20
    assert sum(len(json.dumps(e)) + 1 for e in hist) <= max(s.history_cap,
                                                            len(json.dumps(hist[-1])) + 1)
    assert hist[-1][0] == K + 19


def test_rows_are_forward_compatible() -> None:
    rec = TaskRecord.from_json({"slot": 3, "future_key": {"x": 1}})
    assert rec is not None and rec.pause is None and rec.run_history == [] and not rec.paused
    raw = TaskRecord(slot=4, pause={"paused": True, "node": "a", "at": 5.0},
                     run_history=RunHistory([[4, None, "a", 1.0, 2.0, "ok", "", 1, 0]])).to_json()
    back = TaskRecord.from_json(json.loads(json.dumps(raw)))
    assert back is not None and back.paused
    assert back.run_history == [[4, None, "a", 1.0, 2.0, "ok", "", 1, 0]]
    listed = TaskRecord.from_json({"run_history": [[4, None, "a", 1.0, 2.0, "ok", "", 1, 0]]})
    assert listed is not None and listed.run_history == back.run_history  # an array too
    junk = TaskRecord.from_json({"pause": {"paused": "yes"}, "run_history": [1, [2]]})
    assert junk is not None and junk.pause is None
    assert parse_run_history([[1, None, "a", 1.0, 2.0, "ok", "", 1, 0], ["bad"]]) == [
        [1, None, "a", 1.0, 2.0, "ok", "", 1, 0]]


def test_control_messages_round_trip_and_are_validated() -> None:
    me = Peer("ops@client", "", "abc", 0)
    for msg in (Control(me, 0, "pause", "t"), Control(me, 0, "trigger", "t", via="n1@h"),
                ControlReply(me, 3, True, result={"task": "t"}),
                ControlReply(me, 3, False, "not the manager", "127.0.0.1:7401")):
        assert decode(encode(msg)) == msg
    frames = encode(Control(me, 0, "pause", "t"))
    with pytest.raises(DecodeError):
        decode([frames[0], frames[1], b'{"sender": {"name": "x", "address": "", '
                                       b'"incarnation": "i", "priority": 0}, "term": 0, '
                                       b'"op": 1, "task": "t"}'])


def test_an_instant_task_paused_before_takeover_does_not_fire() -> None:
    d = TaskDef(name="i", target="x:Y", interval=IV, instant=True)
    s = Scheduler([d], random.Random(1))
    s.set_paused("i", True, "a", 1.0)
    s.activate(due("i", K), graceful=False)
    assert s.tick(due("i", K) + 0.001, NODES)[0] == []
