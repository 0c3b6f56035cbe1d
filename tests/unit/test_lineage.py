"""Lineage and version: which state wins a merge, takeover or load, and what is counted."""

from __future__ import annotations

import random
from typing import Any

from clerk._lineage import better, dropped_updates
from clerk._record import TaskRecord, merge_rows
from clerk._schedule import OFFER_WAIT_MS, Scheduler, phase_ms
from clerk._tasks import TaskDef

IV = 1000
K = 1_700_000
NODES = {"a": ("t",), "b": ("t",), "c": ("t",)}


def tdef(instant: bool = False) -> TaskDef:
    return TaskDef(name="t", target="x:Y", interval=IV, timeout=500, instant=instant,
                   enabled=True, args=None)


def due(slot: int) -> float:
    return (phase_ms("t", IV) + slot * IV) / 1000


def manager(term: int, name: str, at_slot: int = K, seed: int = 1, instant: bool = False,
            await_offers: bool = False) -> Scheduler:
    s = Scheduler([tdef(instant)], random.Random(seed), await_offers=await_offers)
    s.activate(due(at_slot) + 0.1, graceful=False, claim=(term, name))
    return s


def run(s: Scheduler, slot: int, members: Any = NODES) -> None:
    """Run ``slot``: the state is a counter (init gives 1, each run adds 1)."""
    ds, _ = s.tick(due(slot), members)
    assert [d.slot for d in ds] == [slot]
    new = 1 if ds[0].init else ds[0].state + 1
    assert s.on_result("t", ds[0].run_id, ds[0].node, "ok", new, 1.0, "", due(slot) + 0.01)


def counter(s: Scheduler) -> int:
    return int(s.records["t"].state)


def test_version_counts_ok_runs_and_origin_names_the_init() -> None:
    s = manager(3, "a")
    for slot in range(K + 1, K + 5):
        run(s, slot)
    rec = s.records["t"]
    assert rec.version == 4 == counter(s)
    assert rec.origin == {"term": 3, "node": "a", "time": int(due(K + 1) * 1000 + 10)}
    assert rec.history == [[3, "a", 0]]
    # An error keeps the state and its version.
    ds, _ = s.tick(due(K + 5), NODES)
    s.on_result("t", ds[0].run_id, ds[0].node, "error", None, 1.0, "boom", due(K + 5) + 0.01)
    assert rec.version == 4


def test_behind_never_replaces_ahead_and_is_no_conflict() -> None:
    a = manager(1, "a")
    for slot in range(K + 1, K + 4):
        run(a, slot)
    behind = TaskRecord.from_json(a.table()["tasks"]["t"])
    assert behind is not None
    for slot in range(K + 4, K + 7):
        run(a, slot)
    assert not better(behind, a.records["t"])
    assert dropped_updates(behind, a.records["t"]) == 0
    a.merge({"tasks": {"t": behind.to_json()}})
    assert counter(a) == 6 and a.records["t"].conflicts == 0
    # A successor (new term) that continues the lineage is ahead of the old manager's row.
    b = manager(2, "b", at_slot=K + 6)
    b.load(a.table())
    run(b, K + 7)
    assert better(b.records["t"], a.records["t"])
    assert dropped_updates(a.records["t"], b.records["t"]) == 0


def test_a_fresh_init_never_replaces_an_older_lineage() -> None:
    old = manager(1, "a")
    for slot in range(K + 1, K + 4):
        run(old, slot)  # counter 3
    # A node cut off later (a restarted seed that found nobody) inits and runs more.
    fresh = manager(1, "c", at_slot=K + 4, seed=2)
    for slot in range(K + 5, K + 25):
        run(fresh, slot)  # counter 20
    assert counter(fresh) == 20
    for into, other in ((old, fresh), (fresh, old)):  # either direction: the same answer
        into.merge(other.table(), source="x")
        assert counter(into) == 3
    assert fresh.records["t"].conflicts == 20
    assert old.records["t"].conflicts == 20
    assert (fresh.records["t"].last_conflict or {}).get("dropped") == 20


def test_divergent_branches_more_runs_wins_and_the_loser_is_counted() -> None:
    a = manager(1, "a")
    for slot in range(K + 1, K + 6):
        run(a, slot)  # 5
    # Split: b takes over one side at term 2 with a's table; a keeps running on the other.
    b = manager(2, "b", at_slot=K + 5, seed=2)
    b.load(a.table())
    for slot in range(K + 6, K + 9):
        run(a, slot)  # a: 8 (3 updates during the split)
    for slot in range(K + 6, K + 13):
        run(b, slot)  # b: 12 (7 updates during the split)
    a_row = TaskRecord.from_json(a.table()["tasks"]["t"])
    b_row = TaskRecord.from_json(b.table()["tasks"]["t"])
    assert a_row is not None and b_row is not None
    assert dropped_updates(a_row, b_row) == 3 and dropped_updates(b_row, a_row) == 7
    # Heal: a (the lower claim) merges into b, and b's row wins: more completed runs.
    b.merge(a.table(), source="a")
    assert counter(b) == 12 and b.records["t"].conflicts == 3
    assert "version 8" in (b.records["t"].last_conflict or {}).get("lost", "")
    # The same lost branch offered again (another node of a's side) is not counted twice.
    b.merge(a.table(), source="a2")
    assert b.records["t"].conflicts == 3
    # And merging the other way gives the same state: merges commute.
    a.merge(b_row.to_json() and {"tasks": {"t": b_row.to_json()}})
    assert counter(a) == 12 and a.records["t"].conflicts == 3


def test_equal_runs_tie_by_claim() -> None:
    a = manager(1, "a")
    run(a, K + 1)
    b = manager(2, "b", at_slot=K + 1, seed=2)
    c = manager(2, "c", at_slot=K + 1, seed=3)
    b.load(a.table())
    c.load(a.table())
    run(b, K + 2)
    run(c, K + 2)
    rb, rc = b.records["t"], c.records["t"]
    assert better(rc, rb) and not better(rb, rc)  # (2, "c") > (2, "b")
    mine = TaskRecord.from_json(rb.to_json())
    assert mine is not None
    changed, conflict = merge_rows("t", mine, rc, 0.0, "c")
    assert changed and conflict is not None and conflict.dropped == 1
    assert mine.history[-1][:2] == [2, "c"]


def test_a_run_whose_state_was_replaced_meanwhile_is_dropped_and_counted() -> None:
    old = manager(1, "a")
    for slot in range(K + 1, K + 4):
        run(old, slot)  # 3
    fresh = manager(1, "c", at_slot=K + 4, seed=2)
    run(fresh, K + 5)
    ds, _ = fresh.tick(due(K + 6), NODES)  # in flight from the fresh state (1)
    fresh.merge(old.table(), source="a")  # the older lineage arrives meanwhile
    assert counter(fresh) == 3
    fresh.on_result("t", ds[0].run_id, ds[0].node, "ok", 2, 1.0, "", due(K + 6) + 0.01)
    assert counter(fresh) == 3, "a result computed from the lost state must not win"
    assert fresh.records["t"].conflicts == 1 + 1  # the fresh lineage's 1 update + this run


def test_load_keeps_a_better_own_state() -> None:
    disk = manager(1, "a")
    for slot in range(K + 1, K + 4):
        run(disk, slot)
    follower = Scheduler([tdef()], random.Random(5))
    follower.load(disk.table())  # read from the data directory at start
    young = manager(4, "z", at_slot=K + 4, seed=3)
    run(young, K + 5)  # a younger cluster's table arrives in heartbeats
    follower.load(young.table())
    assert follower.records["t"].state == 3
    assert follower.records["t"].slot == K + 5  # the schedule part is the manager's


def test_rows_are_forward_compatible() -> None:
    rec = TaskRecord.from_json({"state": 1, "has_state": True, "slot": 5, "paused": True,
                                "some_future_key": {"x": 1}})
    assert rec is not None and rec.version == 0 and rec.origin is None and rec.history == []
    assert TaskRecord.from_json({}) == TaskRecord()
    bad = TaskRecord.from_json({"has_state": True, "state": 1, "origin": {"term": "x"},
                                "version": -3, "history": [[1, "a"], "junk", [1, "a", 0]],
                                "conflicts": "many", "conflict_seen": {"k": "v"}})
    assert bad is not None
    assert (bad.origin, bad.version, bad.history, bad.conflicts, bad.conflict_seen) == (
        None, 0, [[1, "a", 0]], 0, {})
    # A legacy state (no origin) counts as the oldest lineage: a fresh init never beats it.
    fresh = TaskRecord(state=9, has_state=True, origin={"term": 1, "node": "a", "time": 5},
                       version=9)
    assert better(rec, fresh)


def test_init_waits_for_every_member_to_offer_its_rows() -> None:
    s = manager(1, "a", instant=True, await_offers=True)
    at = due(K) + 0.2
    ds, _ = s.tick(at, NODES)
    assert ds == [], "b and c may hold a state: no init yet"
    # The held init wakes the scheduler when the wait ends; a grid slot due earlier still
    # wakes it at its time (the hold delays nothing else).
    assert abs(s.next_deadline(at) - min(due(K + 1), at + OFFER_WAIT_MS / 1000)) < 1e-6
    s.records["t"].running = {"run": "x", "slot": K, "node": "a", "started": 0,
                              "deadline": (at + 0.1) * 1000}
    s._inflight["t"] = (at + 0.1) * 1000
    assert abs(s.next_deadline(at) - (at + 0.1)) < 1e-6
    s.records["t"].running = None
    s._inflight.clear()
    older = manager(1, "b", at_slot=K - 6, seed=4)
    for slot in range(K - 5, K - 2):
        run(older, slot)
    s.merge(older.table(), source="b")
    s.offer_from("b")
    s.offer_from("c")
    ds, _ = s.tick(at + 0.01, NODES)
    assert len(ds) == 1 and not ds[0].init and ds[0].state == 3
    # A member that never offers (an older node) holds init back at most OFFER_WAIT_MS.
    t = manager(1, "a", await_offers=True, seed=6)
    ds, _ = t.tick(due(K + 1), NODES)
    assert ds == [] and t.records["t"].counts["skipped"] == 1
    ds, _ = t.tick(due(K + 2), NODES)
    assert len(ds) == 1 and ds[0].init


def test_status_shows_lineage_version_and_conflicts() -> None:
    from clerk.__main__ import render_status

    old = manager(1, "a")
    for slot in range(K + 1, K + 4):
        run(old, slot)
    fresh = manager(1, "c", at_slot=K + 4, seed=2)
    run(fresh, K + 5)
    old.merge(fresh.table(), wall=due(K + 6), source="c")
    (row,) = old.status(due(K + 6))
    assert row["version"] == 3 and row["lineage"]["node"] == "a"
    assert row["conflicts"] == 1 and row["last_conflict"]["from"] == "c"
    text = render_status({"node": "a", "role": "manager", "manager": "a", "tasks": [
        {**row, "name": "t"}]})
    assert "conflicts: 1 update(s) dropped" in text


def test_a_run_in_flight_of_an_older_loaded_row_is_rebased_onto_the_kept_state() -> None:
    """A manager re-claiming (quorum mode: manager, candidate, manager at a higher ballot)
    loads a stale table (the previous manager's, with that manager's run in flight) and keeps
    its own better state: that run started from the stale state, so its late result (resent
    from its node's outbox, or answered to the RUN_QUERY) must not replace the kept state.
    Seen as a Counter going from 12 back to 7 under load (test_sigstop_and_sigcont_...)."""
    old = manager(1, "a")
    for slot in range(K + 1, K + 4):
        run(old, slot)  # counter 3
    ds, _ = old.tick(due(K + 4), NODES)  # run R in flight from the state 3
    stale = old.table()
    me = manager(2, "b", at_slot=K + 4, seed=2)
    me.load(stale)
    me.on_result("t", ds[0].run_id, ds[0].node, "refused", None, 0.0, "", due(K + 4))
    for slot in range(K + 5, K + 10):
        run(me, slot)  # counter 8, committed under our claim
    me.deactivate()
    me.load(stale)  # the re-claim: the replica still holds the old manager's table
    me.activate(due(K + 10) + 0.1, graceful=False, claim=(3, "b"))
    assert counter(me) == 8
    me.on_result("t", ds[0].run_id, ds[0].node, "ok", 4, 1.0, "", due(K + 10) + 0.2)
    assert counter(me) == 8, "a result computed from the stale state replaced a better one"
    assert me.records["t"].conflicts >= 1
