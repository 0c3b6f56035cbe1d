"""skew2: a new manager ahead of the one it followed reads every run that manager sent in
its own time base, not only its table's (review13: tests/unit/test_review13_takeover_ahead.py).

* A run only a member's OFFER lists (the new manager's table lacks it: a crash takeover from
  a replica that missed the dispatch) carries the old manager's times (clerk._clockskew.
  AsSent): read on a clock 4 s ahead, the run timed out after the 1 s grace, 1.5 s before
  it ended, and the next slot went beside it.
* The row's ``running.deadline`` and ``started`` (the status shows them) are in the new
  manager's time base after the takeover, not the old one's.
"""

from __future__ import annotations

import pytest

from clerk._dispatch import Dispatch
from clerk._running import TRANSIT_GRACE_MS
from clerk._schedule import Scheduler
from tests.unit.test_offer_review import behind_the_tables_run_loaded
from tests.unit.test_schedule import NODES, K, due, sched, started, tdef
from tests.unit.test_schedule_offered import lost_dispatch_loaded

TIMEOUT = 3000
AHEAD_S = 4.0


def _crash_takeover(ahead_ms: float) -> tuple[Scheduler, Dispatch, float]:
    """The old manager sent slot K+2 (a 3 s run) and died before any replica showed it; a
    node ``ahead_ms`` ahead of it takes over 0.5 s later (by the old clock) from the table
    of before. Returns the new scheduler, the run, and the new manager's wall time then."""
    old, new, d = lost_dispatch_loaded(TIMEOUT)
    wall = due("t", K + 2) + 0.5 + ahead_ms / 1000
    new.begin_activation(wall, graceful=False, claim=(old.claim[0] + 1, "n9"),
                         ahead_ms=ahead_ms)
    new.activate_step(float("inf"))
    return new, d, wall


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ahead_ms", [0.0, AHEAD_S * 1000])
def test_an_offered_run_times_out_later_by_how_far_the_new_manager_is_ahead(
        ahead_ms: float) -> None:
    new, d, wall = _crash_takeover(ahead_ms)
    assert new.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall + 0.01,
                         as_sent=True)
    run = new.records["t"].running
    assert run is not None and run["run"] == d.run_id
    # Its deadline, in the new manager's time base: the old one's + the offset + the grace.
    assert run["deadline"] == pytest.approx(d.deadline_ms + ahead_ms + TRANSIT_GRACE_MS)
    assert run["started"] == pytest.approx(d.due_ms + ahead_ms)
    # The run ends (by the old clock) at d.deadline_ms: up to then, on the new clock, no
    # timeout and no slot beside it (before the fix: a timeout at +1.5 s, then a dispatch).
    end_new = d.deadline_ms / 1000 + ahead_ms / 1000
    t = wall + 0.1
    while t < end_new:
        ds, fins = new.tick(t, NODES)
        assert (ds, [f.outcome for f in fins]) == ([], []), t - wall
        t += 0.25
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 2900.0, "",
                         end_new) is not None
    assert new.records["t"].state == {"n": 2}


@pytest.mark.timeout(30)
def test_its_own_runs_and_runs_already_moved_are_not_moved_again() -> None:
    """This node's own runs (in its time base already: as_sent=False), and a run of its own
    claim (a claim again), keep their times."""
    new, d, wall = _crash_takeover(AHEAD_S * 1000)
    assert new.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall + 0.01)
    run = new.records["t"].running
    assert run is not None
    assert run["deadline"] == pytest.approx(max(d.deadline_ms, (wall + 0.01) * 1000)
                                            + TRANSIT_GRACE_MS)
    assert new.their_base_ms([new.claim[0], new.claim[1]]) == 0.0
    assert new.their_base_ms([new.claim[0] - 1, "n1"]) == AHEAD_S * 1000


@pytest.mark.timeout(30)
def test_a_waiting_offered_run_is_moved_once() -> None:
    """Behind the table's run, an offered run waits (times as moved), and is adopted with
    them as they are once the row's run ends: moved once, not twice."""
    old, new, d1, d2 = behind_the_tables_run_loaded(TIMEOUT)
    wall = due("t", K + 3) + 0.05 + AHEAD_S
    new.begin_activation(wall, graceful=False, claim=(old.claim[0] + 1, "n9"),
                         ahead_ms=AHEAD_S * 1000)
    new.activate_step(float("inf"))
    assert not new.adopt_run("t", d2.run_id, d2.slot, d2.node, d2.due_ms, d2.deadline_ms,
                             wall + 0.01, as_sent=True)
    assert new.offered_waiting["t"][d2.run_id][3] == pytest.approx(
        d2.deadline_ms + AHEAD_S * 1000)
    # The table's run (K+2) ends: its result comes; the waiting one is adopted at the next tick.
    assert new.on_result("t", d1.run_id, d1.node, "ok", {"n": 2}, 1.0, "",
                         wall + 0.02) is not None
    new.tick(wall + 0.03, NODES)
    run = new.records["t"].running
    assert run is not None and run["run"] == d2.run_id
    assert run["deadline"] == pytest.approx(d2.deadline_ms + AHEAD_S * 1000 + TRANSIT_GRACE_MS)


@pytest.mark.timeout(30)
def test_the_tables_run_in_flight_shows_the_new_managers_time_base() -> None:
    """review13 moved the table's run's deadline only where it times out (``_inflight``);
    the row, which the status shows as ``running`` and the replicas get, kept the old
    manager's deadline: 4 s early on the new manager's clock."""
    s = started(sched(tdef(timeout=TIMEOUT)), due("t", K) + 0.1)
    s.tick(due("t", K + 1), NODES)
    run = s.records["t"].running
    assert run is not None
    deadline, began = float(run["deadline"]), float(run["started"])
    s.begin_activation(due("t", K + 1) + 0.5 + AHEAD_S, graceful=True,
                       claim=(s.claim[0] + 1, "n9"), ahead_ms=AHEAD_S * 1000)
    s.activate_step(float("inf"))
    row = s.status_row("t", due("t", K + 1) + 0.6 + AHEAD_S)["running"]
    assert row["deadline"] == pytest.approx(deadline + AHEAD_S * 1000)
    assert row["started"] == pytest.approx(began + AHEAD_S * 1000)
    assert s._inflight.get("t") == pytest.approx(deadline + AHEAD_S * 1000)
    # The table a successor gets says the same (it moves it by its own offset to us).
    assert s.table()["tasks"]["t"]["running"]["deadline"] == pytest.approx(
        deadline + AHEAD_S * 1000)
