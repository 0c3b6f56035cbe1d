"""review17: the paths by which an offered run's times could be moved twice, or by the wrong
offset, after 8610f5a (``sender_base_ms``): a run that waits behind the row's run in flight
and is adopted at a tick (``as_sent`` False there: moved once, when offered), a run the table
already shows in the time base of the manager whose table it is (the table's row kept, the
OFFER not moved on top of it), and a run id that names this manager itself (its own time
base: not moved whatever ``ahead_of`` says)."""

from __future__ import annotations

import pytest

from clerk._schedule import Dispatch, Scheduler
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef

TIMEOUT = 3000
AHEAD_MS = 4000.0
GRACE_MS = 1000.0  # clerk._running.TRANSIT_GRACE_MS


def m1_dispatching() -> tuple[Scheduler, Dispatch]:
    """m1 (claim ``n7``) ran slot K+1 and has just dispatched K+2: (m1, that dispatch)."""
    m1 = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    m1.claim = (1, "n7")
    run_ok(m1, K + 1, state={"n": 1})
    ds, _ = m1.tick(due("t", K + 2), NODES)
    return m1, ds[0]


@pytest.mark.timeout(30)
def test_a_waiting_offered_run_is_moved_once_by_the_senders_offset() -> None:
    m1, d0 = m1_dispatching()
    table = m1.table()  # the run of K+2 in flight
    m1.on_result("t", d0.run_id, d0.node, "ok", {"n": 2}, 1.0, "", due("t", K + 2) + 0.01)
    ds1, _ = m1.tick(due("t", K + 3), NODES)  # only the member's OFFER shows this one
    d1 = ds1[0]
    wall = due("t", K + 3) + 0.3 + AHEAD_MS / 1000
    m3 = sched(tdef(timeout=TIMEOUT), seed=3)
    m3.load(table)
    m3.begin_activation(wall, graceful=False, claim=(3, "n9"), ahead_ms=0.0,
                        ahead_of={"n7": AHEAD_MS, "n8": 0.0}, table_of="n7")
    m3.activate_step(float("inf"))
    # Offered while the row's run (K+2) is in flight: it waits, moved as offered.
    assert not m3.adopt_run("t", d1.run_id, d1.slot, d1.node, d1.due_ms, d1.deadline_ms,
                            wall + 0.01, as_sent=True)
    assert d1.run_id in m3.offered_waiting["t"]
    # K+2's result comes; at the next tick the waiting run is adopted (not moved again).
    m3.on_result("t", d0.run_id, d0.node, "ok", {"n": 2}, 1.0, "", wall + 0.02)
    m3.tick(wall + 0.03, NODES)
    run = m3.records["t"].running
    assert run is not None and run["run"] == d1.run_id
    assert run["deadline"] == pytest.approx(d1.deadline_ms + AHEAD_MS + GRACE_MS, abs=2)


@pytest.mark.timeout(30)
def test_a_row_the_first_new_manager_moved_is_not_moved_again_by_the_offer() -> None:
    m1, d = m1_dispatching()
    wall2 = due("t", K + 2) + 0.5 + AHEAD_MS / 1000
    m2 = sched(tdef(timeout=TIMEOUT), seed=2)
    m2.load(m1.table())
    m2.begin_activation(wall2, graceful=False, claim=(2, "n8"), ahead_ms=AHEAD_MS,
                        ahead_of={"n7": AHEAD_MS}, table_of="n7")
    m2.activate_step(float("inf"))
    moved = m2.records["t"].running
    assert moved is not None
    assert moved["deadline"] == pytest.approx(d.deadline_ms + GRACE_MS + AHEAD_MS, abs=2)
    # m3 (m2's clock) takes over from m2's table (caught up: table_of n8), the OFFER too.
    m3 = sched(tdef(timeout=TIMEOUT), seed=3)
    m3.load(m2.table())
    m3.begin_activation(wall2 + 0.2, graceful=False, claim=(3, "n9"), ahead_ms=0.0,
                        ahead_of={"n7": AHEAD_MS, "n8": 0.0}, table_of="n8")
    m3.activate_step(float("inf"))
    assert not m3.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms,
                            wall2 + 0.21, as_sent=True)
    run = m3.records["t"].running
    assert run is not None and run["deadline"] == pytest.approx(moved["deadline"], abs=2)
    assert "t" not in m3.offered_waiting


@pytest.mark.timeout(30)
def test_a_run_id_naming_this_manager_is_in_its_own_time_base() -> None:
    m = sched(tdef(timeout=TIMEOUT), seed=3)
    m.begin_activation(due("t", K), graceful=False, claim=(5, "n9"), ahead_ms=AHEAD_MS,
                       ahead_of={"n9": AHEAD_MS, "n7": 0.0})
    assert m.sender_base_ms([2, "n9"]) == 0.0  # (dispatched by us, an earlier term)
    assert m.sender_base_ms([2, "n7"]) == 0.0  # known: not ahead of it
    assert m.sender_base_ms([2, "n5"]) == AHEAD_MS  # never followed: the table's offset
    assert m.sender_base_ms(None) == AHEAD_MS
