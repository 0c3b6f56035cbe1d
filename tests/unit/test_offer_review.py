"""Review of the runs in flight a member's OFFER carries (clerk._offerruns,
``Running.adopt_run``): forged or stale offers, a waiting run whose result comes first, a
scheduler that stops being the manager."""

from __future__ import annotations

from clerk._dispatch import Dispatch
from clerk._running import TRANSIT_GRACE_MS
from clerk._schedule import Scheduler
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef
from tests.unit.test_schedule_offered import _lost_dispatch as offered_lost_dispatch

TIMEOUT = 5000


def _lost_dispatch() -> tuple[Scheduler, Dispatch]:
    """The old manager dispatched slot K+2 from state n=1 and died before any replica
    showed it: the new manager loaded the table from before (test_schedule_offered's)."""
    _, new, d = offered_lost_dispatch()
    return new, d


def behind_the_tables_run_loaded(
        timeout: int = TIMEOUT) -> tuple[Scheduler, Scheduler, Dispatch, Dispatch]:
    """The table shows K+2 in flight (its result, kept by its node, not in yet); a member
    offers K+3, dispatched from K+2's result just before the old manager died. Returns the
    old manager, the new one (the table loaded, not activated yet), K+2's run and K+3's."""
    old = started(sched(tdef(timeout=timeout), seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    ds1, _ = old.tick(due("t", K + 2), NODES)
    table = old.table()
    assert old.on_result("t", ds1[0].run_id, ds1[0].node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 2) + 0.01) is not None
    ds2, _ = old.tick(due("t", K + 3), NODES)
    new = sched(tdef(timeout=timeout), seed=2)
    new.load(table)
    return old, new, ds1[0], ds2[0]


def _behind_the_tables_run() -> tuple[Scheduler, Dispatch, Dispatch]:
    """``behind_the_tables_run_loaded``, activated 50 ms after K+3's dispatch: the offered
    run waits."""
    _, new, d1, d2 = behind_the_tables_run_loaded()
    new.activate(due("t", K + 3) + 0.05, graceful=False)
    assert not new.adopt_run("t", d2.run_id, d2.slot, d2.node, d2.due_ms, d2.deadline_ms,
                             due("t", K + 3) + 0.06)
    assert d2.run_id in new.offered_waiting["t"]
    return new, d1, d2


def test_a_forged_far_deadline_times_out_with_the_tasks_timeout() -> None:
    """An OFFER's deadline is the member's word: one of 2**61 ms kept the task in flight
    (every slot skipped) for ~73 million years. The manager knows the task's timeout and
    the slot's due time: no honest run's deadline is later than either allows."""
    new, d = _lost_dispatch()
    wall = due("t", K + 2) + 0.06
    assert new.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, 2**61, wall)
    limit_ms = max(wall * 1000, d.due_ms) + TIMEOUT + TRANSIT_GRACE_MS
    _, finished = new.tick(limit_ms / 1000 + 0.01, NODES)
    assert [f.outcome for f in finished] == ["timeout"]
    run = new.records["t"].running  # (the grid goes on at once)
    assert run is not None and run["run"] != d.run_id


def test_an_honest_deadline_is_kept() -> None:
    new, d = _lost_dispatch()
    wall = due("t", K + 2) + 0.06
    assert new.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall)
    run = new.records["t"].running
    assert run is not None and run["deadline"] == d.deadline_ms + TRANSIT_GRACE_MS


def test_a_forged_far_deadline_does_not_keep_a_waiting_run_forever() -> None:
    """Behind the table's run, a waiting run with a forged deadline expires with the
    task's timeout too (memory, and a block once the table's run ends)."""
    new, _, d2 = _behind_the_tables_run()
    wall = due("t", K + 3) + 0.06
    new.adopt_run("t", d2.run_id + "x", d2.slot, d2.node, d2.due_ms, 2**61, wall)
    _, _, _, deadline = new.offered_waiting["t"][d2.run_id + "x"]
    assert deadline <= max(wall * 1000, d2.due_ms) + TIMEOUT


def test_a_waiting_runs_result_that_comes_first_does_not_block_the_task() -> None:
    """K+3 waits behind the table's K+2; K+3's result comes before K+2's (its node answered
    first). Before bbe333b, K+3 stayed waiting and was adopted once K+2's result came: a run
    that had ended, so the task sent nothing until K+3's deadline (+ grace): 6 slots skipped
    here. Then its result was dropped (counted); now it is kept and applied at the adoption
    (next test): either way the next slot goes at its time."""
    new, d1, d2 = _behind_the_tables_run()
    rec = new.records["t"]
    assert new.on_result("t", d2.run_id, d2.node, "ok", {"n": 3}, 1.0, "",
                         due("t", K + 3) + 0.07, slot=d2.slot) is None
    new.on_result("t", d1.run_id, d1.node, "ok", {"n": 2}, 1.0, "", due("t", K + 3) + 0.08)
    assert rec.running is None and rec.state == {"n": 2}
    assert [x.slot for x in new.tick(due("t", K + 4), NODES)[0]] == [K + 4]
    assert not new.offered_waiting


def test_a_waiting_runs_early_result_is_applied_after_the_tables_run() -> None:
    """Before, K+3's result (its node answered before K+2's) was dropped (counted) and
    acknowledged: K+3's update was lost. Now it is kept, not acknowledged, and applied once
    K+3 is adopted (K+2's result came)."""
    new, d1, d2 = _behind_the_tables_run()
    assert new.on_result("t", d2.run_id, d2.node, "ok", {"n": 3}, 1.0, "",
                         due("t", K + 3) + 0.07, slot=d2.slot) is None
    assert new.keeps_result(d2.run_id)  # (the shell holds its ACK back)
    new.on_result("t", d1.run_id, d1.node, "ok", {"n": 2}, 1.0, "", due("t", K + 3) + 0.08)
    ds, finished = new.tick(due("t", K + 4), NODES)
    rec = new.records["t"]
    assert [f.slot for f in finished] == [K + 3] and not new.keeps_result(d2.run_id)
    assert rec.version == 3 and rec.conflicts == 0 and not new.offered_waiting
    assert [(x.slot, x.state) for x in ds] == [(K + 4, {"n": 3})]


def test_a_kept_early_result_is_let_go_when_its_run_is_not_adopted() -> None:
    """A kept result whose offered run is dropped (its node died) is no longer kept: its
    node's next send is judged as any result (and acknowledged)."""
    new, _, d2 = _behind_the_tables_run()
    new.on_result("t", d2.run_id, d2.node, "ok", {"n": 3}, 1.0, "", due("t", K + 3) + 0.07,
                  slot=d2.slot)
    assert new.keeps_result(d2.run_id)
    new.fail_node(d2.node, due("t", K + 3) + 0.08)
    assert not new.keeps_result(d2.run_id)
    new, _, d2 = _behind_the_tables_run()
    new.on_result("t", d2.run_id, d2.node, "ok", {"n": 3}, 1.0, "", due("t", K + 3) + 0.07,
                  slot=d2.slot)
    new.deactivate()
    assert not new.keeps_result(d2.run_id)


def test_waiting_runs_are_forgotten_when_the_scheduler_stops_managing() -> None:
    """``offered_waiting`` outlived ``deactivate``: memory, and a later activation of this
    scheduler (the node manager again, within the run's deadline) adopted a run offered
    to it under the earlier claim, from a node that may since have ended or lost it."""
    new, d1, _ = _behind_the_tables_run()
    new.deactivate()
    assert not new.offered_waiting


def test_two_members_offering_one_slot_run_it_once() -> None:
    """Two runs of one slot offered (two members, or a forgery): one is adopted, the other
    waits and is dropped once the slot is finished; the next slot goes after."""
    new, d = _lost_dispatch()
    wall = due("t", K + 2) + 0.06
    assert new.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall)
    other = d.run_id.replace("-", "-9", 1)
    assert not new.adopt_run("t", other, d.slot, "b", d.due_ms, d.deadline_ms, wall)
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 2) + 0.5) is not None
    assert [x.slot for x in new.tick(due("t", K + 3), NODES)[0]] == [K + 3]
    assert not new.offered_waiting
    rec = new.records["t"]
    assert rec.state == {"n": 2} and rec.conflicts == 0


def test_an_offered_run_of_a_removed_task_is_forgotten() -> None:
    new, _, _ = _behind_the_tables_run()
    new.update_defs({"u": tdef("u", timeout=TIMEOUT)}, due("t", K + 3) + 0.07)
    new.tick(due("t", K + 3) + 0.08, NODES)
    new.tick(due("t", K + 3) + TIMEOUT / 1000 + 2.5, NODES)
    assert "t" not in new.offered_waiting


def test_a_waiting_run_whose_node_died_is_forgotten() -> None:
    """``fail_node`` ended the runs in flight on a node that died, not its offered runs
    that wait: adopted once the table's run ended, such a run kept the task in flight
    (every slot skipped) until its deadline, though its node was known dead."""
    new, d1, d2 = _behind_the_tables_run()
    new.fail_node(d2.node, due("t", K + 3) + 0.07)
    assert d2.run_id not in new.offered_waiting.get("t", {})
