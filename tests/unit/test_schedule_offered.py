"""Runs in flight that a member's OFFER carries, adopted by a new manager (clerk._offerruns,
``Running.adopt_run``)."""

from __future__ import annotations

from clerk._dispatch import Dispatch
from clerk._messages import Execute, Peer
from clerk._offerruns import MAX_OFFERED_RUNS, RUNS_KEY, offered_runs, run_of, with_runs
from clerk._record import pack_table, unpack_table
from clerk._running import TRANSIT_GRACE_MS
from clerk._schedule import Scheduler
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef

TIMEOUT = 5000


def lost_dispatch_loaded(timeout: int = TIMEOUT) -> tuple[Scheduler, Scheduler, Dispatch]:
    """The old manager dispatched slot K+2 (a run of ``timeout`` ms) from state n=1 and died
    before any member's replica showed it: the new manager loaded the table from before, not
    activated yet (``_lost_dispatch``; test_skew2_offered_ahead activates it ahead)."""
    old = started(sched(tdef(timeout=timeout), seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    table = old.table()
    ds, _ = old.tick(due("t", K + 2), NODES)
    new = sched(tdef(timeout=timeout), seed=2)
    new.load(table)
    return old, new, ds[0]


def _lost_dispatch() -> tuple[Scheduler, Scheduler, Dispatch]:
    """``lost_dispatch_loaded`` (a long run this time), the new manager activated 50 ms
    after the dispatch."""
    old, new, d = lost_dispatch_loaded()
    new.activate(due("t", K + 2) + 0.05, graceful=False)
    return old, new, d


def _adopt(new: Scheduler, d: Dispatch, wall: float) -> bool:
    return new.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall)


def test_an_offered_run_is_adopted_not_overlapped_and_its_result_applies() -> None:
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    assert _adopt(new, d, due("t", K + 2) + 0.06)
    assert rec.running is not None and rec.running["run"] == d.run_id
    assert rec.dispatched == K + 2
    # The slots that come while it runs are skipped, never sent beside it.
    for slot in (K + 3, K + 4):
        assert new.tick(due("t", slot), NODES)[0] == []
    fin = new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 2500.0, "",
                        due("t", K + 4) + 0.5, slot=d.slot)
    assert fin is not None and fin.outcome == "ok"
    assert rec.state == {"n": 2} and rec.version == 2 and rec.conflicts == 0
    assert rec.slot == K + 2 and rec.running is None
    # Then the grid goes on.
    assert [x.slot for x in new.tick(due("t", K + 5), NODES)[0]] == [K + 5]


def test_its_update_is_recorded_under_the_claim_that_dispatched_it() -> None:
    old, new, d = _lost_dispatch()
    _adopt(new, d, due("t", K + 2) + 0.06)
    new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", due("t", K + 2) + 0.5)
    old.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", due("t", K + 2) + 0.5)
    a, b = new.records["t"], old.records["t"]
    assert (a.version, a.history, a.origin) == (b.version, b.history, b.origin)


def test_a_run_whose_slot_the_row_shows_finished_is_ignored() -> None:
    _, new, d = _lost_dispatch()
    new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", due("t", K + 2) + 0.01,
                  slot=d.slot)  # (its result came first)
    assert not _adopt(new, d, due("t", K + 2) + 0.06)
    assert new.records["t"].running is None and not new.offered_waiting


def test_a_run_of_a_slot_in_the_future_is_refused() -> None:
    _, new, d = _lost_dispatch()
    assert not new.adopt_run("t", d.run_id, K + 50, d.node, d.due_ms, d.deadline_ms,
                             due("t", K + 2) + 0.06)
    assert new.records["t"].running is None and not new.offered_waiting


def test_the_tables_own_run_is_kept() -> None:
    old = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    ds, _ = old.tick(due("t", K + 1), NODES)
    new = sched(tdef(timeout=TIMEOUT), seed=2)
    new.load(old.table())
    new.activate(due("t", K + 1) + 0.05, graceful=False)
    before = dict(new.records["t"].running or {})
    assert not _adopt(new, ds[0], due("t", K + 1) + 0.06)
    assert new.records["t"].running == before and not new.offered_waiting


def test_behind_the_tables_run_it_waits_then_is_adopted() -> None:
    """The table shows slot K+2 in flight (its result, kept by its node, comes later); a
    member offers K+3, which started from K+2's state: adopted once K+2's result is in."""
    old = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    ds1, _ = old.tick(due("t", K + 2), NODES)
    table = old.table()  # the last round: K+2 in flight
    fin = old.on_result("t", ds1[0].run_id, ds1[0].node, "ok", {"n": 2}, 1.0, "",
                        due("t", K + 2) + 0.01)
    assert fin is not None
    ds2, _ = old.tick(due("t", K + 3), NODES)  # died before a round showed it
    new = sched(tdef(timeout=TIMEOUT), seed=2)
    new.load(table)
    new.activate(due("t", K + 3) + 0.05, graceful=False)
    rec = new.records["t"]
    assert not _adopt(new, ds2[0], due("t", K + 3) + 0.06)
    assert ds2[0].run_id in new.offered_waiting["t"]
    assert new.tick(due("t", K + 3) + 0.07, NODES)[0] == []  # K+2 still in flight
    new.on_result("t", ds1[0].run_id, ds1[0].node, "ok", {"n": 2}, 1.0, "",
                  due("t", K + 3) + 0.08)  # its kept result, resent
    assert rec.running is None
    # The next tick adopts K+3 before it decides anything: no slot goes beside it.
    assert new.tick(due("t", K + 4), NODES)[0] == []
    assert rec.running is not None and rec.running["run"] == ds2[0].run_id
    assert not new.offered_waiting
    fin = new.on_result("t", ds2[0].run_id, ds2[0].node, "ok", {"n": 3}, 1.0, "",
                        due("t", K + 4) + 0.1)
    assert fin is not None and rec.state == {"n": 3} and rec.conflicts == 0


def test_from_a_state_the_row_does_not_hold_it_is_waited_for_but_its_result_dropped() -> None:
    _, new, d = _lost_dispatch()
    forged = d.run_id.rsplit("~", 1)[0] + "~9.00000000"
    assert new.adopt_run("t", forged, d.slot, d.node, d.due_ms, d.deadline_ms,
                         due("t", K + 2) + 0.06)
    assert new.tick(due("t", K + 3), NODES)[0] == []  # not overlapped
    fin = new.on_result("t", forged, d.node, "ok", {"n": 10}, 1.0, "", due("t", K + 3) + 0.1)
    rec = new.records["t"]
    assert fin is not None and rec.state == {"n": 1} and rec.conflicts == 1


def test_a_node_that_never_answers_times_out_at_the_runs_deadline() -> None:
    _, new, d = _lost_dispatch()
    _adopt(new, d, due("t", K + 2) + 0.06)
    limit = (d.deadline_ms + TRANSIT_GRACE_MS) / 1000
    assert new.tick(limit - 0.01, NODES)[1] == []
    _, finished = new.tick(limit + 0.001, NODES)
    assert [f.outcome for f in finished] == ["timeout"]


def test_the_offer_part_carries_runs_and_an_older_manager_reads_the_table_alone() -> None:
    me = Peer("a", "127.0.0.1:7400", "i1")
    msg = Execute(me, 3, "t", "p-1/3/m~2.abc", 7, {"n": 1}, 1000, False, 123, 456)
    part = {**pack_table({"tasks": {}}), "part": 0, "of": 1, "id": 1}
    sent = with_runs(part, [run_of(msg)])
    assert RUNS_KEY not in part  # (a copy)
    assert offered_runs(sent) == [run_of(msg)]
    assert unpack_table(sent) == unpack_table(part) == {"tasks": {}}
    assert offered_runs(part) == [] and offered_runs(None) == []
    many = with_runs(part, [run_of(msg)] * (MAX_OFFERED_RUNS + 3))
    assert len(many[RUNS_KEY]) == MAX_OFFERED_RUNS


def test_malformed_runs_are_skipped() -> None:
    good = ["t", 1, "r~1.x", 2, 3, 4]
    bad: list[object] = [["t", -1, "r", 2, 3, 4], ["t", 1, "", 2, 3, 4], ["t", True, "r", 2, 3, 4],
                         [1, 1, "r", 2, 3, 4], ["t", 1, "r", 2, 3], "x", None, ["t", 1, "r", 2,
                                                                                 3, 2**70]]
    got = offered_runs({RUNS_KEY: [*bad, good]})
    assert [r.to_json() for r in got] == [good]
    assert len(offered_runs({RUNS_KEY: [good] * (MAX_OFFERED_RUNS + 5)})) == MAX_OFFERED_RUNS
    assert offered_runs({RUNS_KEY: "x"}) == []
