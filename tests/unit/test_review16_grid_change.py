"""Found in review16 (not the leftoffer change; there before it): a run in flight when a
deploy moves the task's grid (a new interval) finished at its old grid's slot number. With
the interval doubled, that number is about twice the new grid's current one: the row's
``slot`` jumped there, and the next manager (a takeover, which starts from ``rec.slot + 1``)
waited for that slot of the new grid, decades away. The manager of the change kept running
it (its ``next_slot`` is in memory), so nothing showed until a failover. A result for a lost
dispatch of the old grid (clerk._unseen, ``slot > rec.slot``) did the same. Now a run in
flight at the change ends at the new grid's current slot (``clerk._newdefs``), and a result
for a run the table never showed whose slot is beyond the grid's present is dropped and
counted (as ``adopt_run`` refuses such an offered run)."""

from __future__ import annotations

from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef
from tests.unit.test_schedule_unseen import _lost_dispatch


def _successor_runs(table: object, at: float) -> int:
    succ = sched(tdef("t", 2000), seed=5)
    succ.load(table)
    succ.activate(at, graceful=False)
    n = 0
    for k in range(1, 30):
        ds, _ = succ.tick(at + 2.0 * k, NODES)
        n += len(ds)
        for d in ds:
            succ.on_result("t", d.run_id, d.node, "ok", {"n": 9}, 1.0, "", at + 2.0 * k + 0.1)
    return n


def test_a_run_in_flight_across_an_interval_change_does_not_stall_the_next_manager() -> None:
    s = started(sched(seed=1), due("t", K) + 0.1)
    run_ok(s, K + 1, state={"n": 1})
    ds, _ = s.tick(due("t", K + 2), NODES)
    at = due("t", K + 2) + 0.1
    s.update_defs({"t": tdef("t", 2000)}, at)
    s.on_result("t", ds[0].run_id, ds[0].node, "ok", {"n": 2}, 1.0, "", at + 0.1)
    rec = s.records["t"]
    assert rec.state == {"n": 2} and rec.slot < K  # (the new grid's numbers: ~K / 2)
    assert _successor_runs(s.table(), at + 1.0) >= 25  # (before: 0, next slot 1700003)


def test_a_lost_dispatch_of_the_old_grid_does_not_stall_the_next_manager() -> None:
    _, new, d = _lost_dispatch()
    at = due("t", K + 3) + 0.1
    new.update_defs({"t": tdef("t", 2000)}, at)
    new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", at + 0.1, slot=d.slot)
    assert new.records["t"].conflicts == 1 and new.records["t"].state == {"n": 1}
    assert _successor_runs(new.table(), at + 1.0) >= 25
