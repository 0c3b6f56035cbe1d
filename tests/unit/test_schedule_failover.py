"""The manager's pure Scheduler at fail-over (graceful hand-over, crash takeover, merges), its
table and its status; split from ``test_schedule`` (its helpers live there)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from clerk._schedule import TaskRecord
from tests.unit.test_schedule import IV, NODES, K, due, run_ok, sched, started, tdef

# --- fail-over ------------------------------------------------------------------------------------


def test_graceful_hand_over_continues_with_the_very_next_slot() -> None:
    old = started(sched(seed=1), due("t", K) + 0.1)
    for slot in range(K + 1, K + 4):
        run_ok(old, slot, state={"n": slot})
    table = old.table()
    old.deactivate()
    new = sched(seed=2)
    new.load(table)
    # The hand-over lands a little after slot K+4 fell due: K+4 still runs, late, not lost.
    new.activate(due("t", K + 4) + 0.05, graceful=True)
    ds, _ = new.tick(due("t", K + 4) + 0.05, NODES)
    assert [d.slot for d in ds] == [K + 4] and ds[0].state == {"n": K + 3}
    assert new.records["t"].counts["skipped"] == 0


def test_graceful_hand_over_adopts_the_run_in_flight() -> None:
    old = started(sched(seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state=1)
    ds, _ = old.tick(due("t", K + 2), NODES)
    new = sched(seed=2)
    new.load(old.table())
    new.activate(due("t", K + 2) + 0.1, graceful=True)
    fin = new.on_result("t", ds[0].run_id, ds[0].node, "ok", 2, 100.0, "",
                        due("t", K + 2) + 0.2)
    assert fin is not None and new.records["t"].state == 2
    assert [d.slot for d in new.tick(due("t", K + 3), NODES)[0]] == [K + 3]


def test_crash_takeover_skips_the_failover_window_and_never_reruns_a_slot() -> None:
    old = started(sched(seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    old.tick(due("t", K + 2), NODES)  # dispatched; the manager dies before the result
    table = old.table()
    new = sched(seed=2)
    new.load(table)
    # Takeover during slot K+4: K+3 and K+4 fell due while no manager was known.
    at = due("t", K + 4) + 0.3
    new.activate(at, graceful=False)
    assert new.tick(at, NODES)[0] == []
    ds, _ = new.tick(due("t", K + 5), NODES)
    assert [d.slot for d in ds] == [K + 5] and ds[0].state == {"n": 1}
    # The in-flight run of the dead manager is not adopted; its deadline still ends it.
    assert new.records["t"].running is not None and new.records["t"].running["slot"] == K + 5


def test_crash_takeover_with_a_lagging_clock_still_does_not_rerun() -> None:
    old = started(sched(seed=1), due("t", K) + 0.1)
    for slot in range(K + 1, K + 6):
        run_ok(old, slot)
    new = sched(seed=2)
    new.load(old.table())
    new.activate(due("t", K + 2), graceful=False)  # its wall clock is 3 intervals behind
    slots = []
    for slot in range(K + 2, K + 8):
        for d in new.tick(due("t", slot), NODES)[0]:
            slots.append(d.slot)
            new.on_result("t", d.run_id, d.node, "ok", 0, 1.0, "", due("t", slot))
    assert slots == [K + 6, K + 7]


def test_crash_takeover_counts_the_window_as_skipped() -> None:
    old = started(sched(seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1)
    new = sched(seed=2)
    new.load(old.table())
    new.activate(due("t", K + 4) + 0.3, graceful=False)
    # K+2, K+3 and K+4 fell due between the last run and the takeover.
    assert new.records["t"].counts["skipped"] == 3


def test_merge_keeps_the_record_further_along() -> None:
    a = started(sched(seed=1), due("t", K) + 0.1)
    b = started(sched(seed=2), due("t", K) + 0.1)
    for slot in range(K + 1, K + 4):
        run_ok(a, slot, state={"from": "a", "slot": slot})
    run_ok(b, K + 1, state={"from": "b"})
    a.merge(b.table())  # behind: nothing of its state or schedule to take (only b's run
    # joins a's run history, see test_control)
    assert a.records["t"].state == {"from": "a", "slot": K + 3} and a.records["t"].slot == K + 3
    assert b.merge(a.table())
    assert b.records["t"].state == {"from": "a", "slot": K + 3}
    assert b.records["t"].running is None
    assert [d.slot for d in b.tick(due("t", K + 4), NODES)[0]] == [K + 4]
    assert not b.merge({"tasks": "garbage"}) and not b.merge(None)


def test_merge_refuses_a_record_from_the_future() -> None:
    # A forged merge table (insecure mode) must not push the next slot out of reach.
    a = started(sched(seed=1), due("t", K) + 0.1)
    b = started(sched(seed=2), due("t", K) + 0.1)
    run_ok(b, K + 1, state={"from": "b"})
    forged = b.table()
    forged["tasks"]["t"]["slot"] = K + 10**9
    forged["tasks"]["t"]["dispatched"] = K + 10**9
    assert not a.merge(forged, wall=due("t", K + 1) + 0.1)
    assert [d.slot for d in a.tick(due("t", K + 1) + 0.1, NODES)[0]] == [K + 1]
    # The same progress is taken when it is not in the future.
    c = started(sched(seed=3), due("t", K) + 0.1)
    assert c.merge(b.table(), wall=due("t", K + 1) + 0.1)


def test_table_and_load_round_trip() -> None:
    a = started(sched(tdef("t"), tdef("u", args=[1])), due("t", K) + 0.1)
    run_ok(a, K + 1, state={"x": [1, 2]})
    a.tick(due("u", K + 1), {"a": ("u",)})
    table = a.table()
    b = sched(tdef("t"), tdef("u", args=[1]))
    b.load(table)
    assert b.table() == table
    assert b.node_runs == a.node_runs
    # Junk in a replicated table is dropped, not trusted.
    c = sched(tdef("t"), tdef("u"))
    c.load({"tasks": {"t": "junk", "u": {"slot": "NaN?"}, "zz": {}}, "node_runs": {"a": "x"}})
    assert c.records["t"] == TaskRecord() and c.records["u"] == TaskRecord()
    assert c.node_runs == {}
    c.load("not a table")


def test_random_choice_is_fair_and_seeded() -> None:
    s = started(sched(seed=7), due("t", K) + 0.1)
    nodes = [run_ok(s, slot) for slot in range(K + 1, K + 3001)]
    share = Counter(nodes)
    assert set(share) == {"a", "b", "c"}
    assert all(900 <= n <= 1100 for n in share.values()), share
    s2 = started(sched(seed=7), due("t", K) + 0.1)
    assert [run_ok(s2, slot) for slot in range(K + 1, K + 101)] == nodes[:100]


def test_status_shows_counters_last_run_and_next_due() -> None:
    s = started(sched(), due("t", K) + 0.1)
    run_ok(s, K + 1, state=3)
    (row,) = s.status(due("t", K + 1) + 0.1)
    assert row["name"] == "t" and row["runs"]["ok"] == 1
    assert row["last_run"]["slot"] == K + 1 and row["last_run"]["outcome"] == "ok"
    next_due = datetime.fromisoformat(row["next_due"])
    assert next_due.utcoffset() == timedelta(0)  # interval tasks: UTC, offset written out
    assert next_due.timestamp() == pytest.approx(due("t", K + 2))
    assert row["has_state"] and row["last_slot"] == K + 1


def test_slots_skipped_for_lack_of_nodes_are_not_counted_again_after_a_hand_over() -> None:
    allow: list[str] = []
    old = started(sched(nodes_filter=lambda d, m: list(allow)), due("t", K) + 0.1)
    allow.append("a")
    run_ok(old, K + 1)
    allow.clear()
    for slot in range(K + 2, K + 5):
        assert old.tick(due("t", slot), NODES)[0] == []
    assert old.records["t"].counts["skipped"] == 3
    new = sched(seed=2, nodes_filter=lambda d, m: m)
    new.load(old.table())
    new.activate(due("t", K + 4) + 0.1, graceful=True)
    assert [d.slot for d in new.tick(due("t", K + 5), NODES)[0]] == [K + 5]
    assert new.records["t"].counts["skipped"] == 3


def test_many_tasks_each_slot_once_in_due_order() -> None:
    defs = [tdef(f"t{i}", interval=100 * (1 + i % 3)) for i in range(200)]
    s = started(sched(*defs), 1_800_000_000.0)
    members = {"a": tuple(d.name for d in defs)}
    seen: dict[str, list[int]] = {d.name: [] for d in defs}
    wall = 1_800_000_000.0
    while wall < 1_800_000_003.0:
        nxt = s.next_deadline(wall)
        assert nxt > wall or nxt == pytest.approx(wall)
        wall = max(wall, nxt)
        for d in s.tick(wall, members)[0]:
            assert s.due_ms(d.task, d.slot) <= wall * 1000 + 1e-3, "never before its slot"
            seen[d.task].append(d.slot)
            s.on_result(d.task, d.run_id, d.node, "ok", None, 1.0, "", wall)
    for td in defs:
        slots = seen[td.name]
        assert slots == list(range(slots[0], slots[0] + len(slots))), td.name
        assert len(slots) >= 3000 // (td.interval or 1) - 2
    assert sum(r.counts["skipped"] for r in s.records.values()) == 0


def test_packed_tables_round_trip_and_bad_packs_are_ignored() -> None:
    from clerk._codec import MAX_STRING
    from clerk._schedule import PACK_CHUNK, pack_table, unpack_table

    assert PACK_CHUNK <= MAX_STRING
    defs = [tdef(f"t{i}") for i in range(300)]
    a = started(sched(*defs), due("t0", K) + 0.1)
    members = {"a": tuple(d.name for d in defs)}
    for d in a.tick(due("t0", K + 1) + 0.999, members)[0]:
        a.on_result(d.task, d.run_id, d.node, "ok", {"é": "ü" * 100, "n": d.slot}, 1.0, "",
                    due("t0", K + 2))
    packed = pack_table(a.table())
    assert len(packed["chunks"]) > 1 and all(c.isascii() for c in packed["chunks"])
    assert unpack_table(packed) == a.table()
    b = sched(*defs)
    b.load(packed)
    assert b.table() == a.table()
    c = started(sched(*defs), due("t0", K) + 0.1)
    assert c.merge(packed) and c.table()["tasks"] == a.table()["tasks"] | {
        n: {**r, "running": None} for n, r in a.table()["tasks"].items() if r["running"]}
    for bad in ({"packed": 1, "chunks": ["{nope"]}, {"packed": 1, "chunks": [1]},
                {"packed": 1, "chunks": ["[" * 100_000]}):
        assert unpack_table(bad) is None
        b.load(bad)
        assert not b.merge(bad)


def test_states_over_the_replication_budget_are_errors_naming_the_task() -> None:
    from clerk._schedule import STATES_BUDGET_BYTES

    defs = [tdef(f"t{i}") for i in range(5)]
    s = started(sched(*defs), due("t0", K) + 0.1)
    members = {"a": tuple(d.name for d in defs)}
    big = "x" * (STATES_BUDGET_BYTES // 4)
    at = (K + 2) * IV / 1000  # every task's slot K+1 is due by then
    runs = {d.task: d for d in s.tick(at, members)[0]}
    outcomes = {}
    for name in sorted(runs):
        d = runs[name]
        fin = s.on_result(name, d.run_id, d.node, "ok", big, 1.0, "", at)
        assert fin is not None
        outcomes[name] = (fin.outcome, fin.error)
    assert [o for o, _ in outcomes.values()] == ["ok", "ok", "ok", "error", "error"]
    assert "task 't3'" in outcomes["t3"][1] and "budget" in outcomes["t3"][1]
    assert not s.records["t3"].has_state and s.records["t3"].counts["error"] == 1
    # A task whose state shrinks frees room for another's.
    at += IV / 1000
    runs = {d.task: d for d in s.tick(at, members)[0]}
    s.on_result("t0", runs["t0"].run_id, "a", "ok", "small", 1.0, "", at)
    fin = s.on_result("t3", runs["t3"].run_id, "a", "ok", big, 1.0, "", at)
    assert fin is not None and fin.outcome == "ok"


def test_long_error_texts_keep_their_tail_in_the_table() -> None:
    from clerk._schedule import ERROR_KEEP_CHARS

    s = started(sched(), due("t", K) + 0.1)
    (d,) = s.tick(due("t", K + 1), NODES)[0]
    tb = "Traceback\n" + "  frame\n" * 1000 + "ValueError: the cause"
    fin = s.on_result("t", d.run_id, d.node, "error", None, 1.0, tb, due("t", K + 1))
    assert fin is not None and fin.error == tb  # the log gets all of it
    last = s.records["t"].last
    assert last is not None
    kept = last["error"]
    assert len(kept) <= ERROR_KEEP_CHARS + 3 and kept.endswith("ValueError: the cause")


