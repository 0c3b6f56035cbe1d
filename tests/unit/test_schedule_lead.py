"""Dispatching ahead of the slot (clerk._lead): the pure Scheduler with a dispatch lead."""

from __future__ import annotations

import random

import pytest

from clerk._lead import DISPATCH_LEAD_MS, MAX_DISPATCH_LEAD_MS, check_lead
from clerk._schedule import TRANSIT_GRACE_MS, Scheduler, pack_table
from tests.unit.test_schedule import IV, NODES, K, due, tdef

LEAD = 20.0  # ms
L = LEAD / 1000  # s


def sched(lead: float = LEAD, timeout: int = 500, seed: int = 1) -> Scheduler:
    return Scheduler([tdef(timeout=timeout)], random.Random(seed), dispatch_lead_ms=lead)


def test_a_slot_is_sent_its_lead_ahead_and_carries_its_due_time() -> None:
    s = sched()
    s.activate(due("t", K) + 0.2, graceful=False)
    assert s.next_deadline(due("t", K) + 0.2) == pytest.approx(due("t", K + 1) - L)
    assert s.tick(due("t", K + 1) - L - 0.001, NODES) == ([], [])
    ds, _ = s.tick(due("t", K + 1) - L, NODES)
    assert [d.slot for d in ds] == [K + 1]
    d = ds[0]
    assert d.due_ms == int(due("t", K + 1) * 1000)
    # The run's clock starts at its due time: the timeout is not eaten by the lead.
    assert d.deadline_ms == d.due_ms + 500
    run = s.records["t"].running
    assert run is not None
    assert run["deadline"] == pytest.approx(due("t", K + 1) * 1000 + 500 + TRANSIT_GRACE_MS)
    # Nothing more until the next slot's own dispatch instant.
    assert s.tick(due("t", K + 1), NODES)[0] == []


def test_without_a_lead_a_slot_goes_at_its_due_time() -> None:
    s = sched(lead=0)
    s.activate(due("t", K) + 0.2, graceful=False)
    assert s.next_deadline(due("t", K) + 0.2) == pytest.approx(due("t", K + 1))
    assert s.tick(due("t", K + 1) - 0.001, NODES) == ([], [])
    ds, _ = s.tick(due("t", K + 1), NODES)
    assert [d.due_ms for d in ds] == [int(due("t", K + 1) * 1000)]


def test_in_flight_at_the_early_instant_the_decision_waits_for_the_due_time() -> None:
    """The previous run ends between the early instant and the due time: the slot is sent at
    its due time (no skip), as it would have been without a lead."""
    s = sched(timeout=5000)
    s.activate(due("t", K) - 0.1, graceful=False)
    first, _ = s.tick(due("t", K) - L, NODES)
    assert [d.slot for d in first] == [K]
    # Slot K+1's early instant: K is still running. Nothing is sent, nothing skipped yet.
    assert s.tick(due("t", K + 1) - L, NODES)[0] == []
    assert s.records["t"].counts["skipped"] == 0
    assert s.next_deadline(due("t", K + 1) - L) == pytest.approx(due("t", K + 1))
    # No busy loop meanwhile: the next look is the due time, not "now".
    assert s.tick(due("t", K + 1) - L / 2, NODES)[0] == []
    fin = s.on_result("t", first[0].run_id, first[0].node, "ok", 1, 1.0, "",
                      due("t", K + 1) - 0.005)
    assert fin is not None
    ds, _ = s.tick(due("t", K + 1), NODES)
    assert [d.slot for d in ds] == [K + 1]
    assert ds[0].due_ms == int(due("t", K + 1) * 1000)
    assert s.records["t"].counts["skipped"] == 0
    # The grid goes on with the lead.
    s.on_result("t", ds[0].run_id, ds[0].node, "ok", 2, 1.0, "", due("t", K + 1) + 0.01)
    assert s.next_deadline(due("t", K + 1) + 0.01) == pytest.approx(due("t", K + 2) - L)


def test_still_in_flight_at_the_due_time_the_slot_is_skipped_never_overlapped() -> None:
    s = sched(timeout=5000)
    s.activate(due("t", K) - 0.1, graceful=False)
    first, _ = s.tick(due("t", K) - L, NODES)
    assert s.tick(due("t", K + 1) - L, NODES)[0] == []
    assert s.tick(due("t", K + 1), NODES)[0] == []
    assert s.records["t"].counts["skipped"] == 1
    assert s.records["t"].running is not None and s.records["t"].running["slot"] == K
    # The slot after it goes ahead as usual once K has finished.
    s.on_result("t", first[0].run_id, first[0].node, "ok", 1, 1.0, "", due("t", K + 1) + 0.5)
    ds, _ = s.tick(due("t", K + 2) - L, NODES)
    assert [d.slot for d in ds] == [K + 2]
    assert s.records["t"].counts["skipped"] == 1


def test_a_deferred_slot_of_a_draining_manager_does_not_wake_it_forever() -> None:
    s = sched(timeout=5000)
    s.activate(due("t", K) - 0.1, graceful=False)
    s.tick(due("t", K) - L, NODES)
    s.tick(due("t", K + 1) - L, NODES)  # deferred: K in flight
    s.drain()
    run = s.records["t"].running
    assert run is not None
    assert s.next_deadline(due("t", K + 1) + 0.1) == pytest.approx(run["deadline"] / 1000)


def test_a_run_sent_ahead_reports_its_start_and_round_trip_from_the_due_time() -> None:
    s = sched()
    s.activate(due("t", K) - 0.1, graceful=False)
    ds, _ = s.tick(due("t", K) - L, NODES)
    fin = s.on_result("t", ds[0].run_id, ds[0].node, "ok", 1, 1.0, "", due("t", K) + 0.003)
    assert fin is not None
    assert fin.lateness_ms == 0.0
    assert fin.round_trip_ms == pytest.approx(3.0, abs=0.01)
    entry = s.detail("t", due("t", K) + 0.01)["history"][-1]
    assert entry["start"] == pytest.approx(due("t", K))


def test_a_timeout_counts_from_the_due_time() -> None:
    s = sched(timeout=500)
    s.activate(due("t", K) - 0.1, graceful=False)
    s.tick(due("t", K) - L, NODES)
    end = due("t", K) + (500 + TRANSIT_GRACE_MS) / 1000
    assert s.tick(end - 0.001, NODES)[1] == []
    _, finished = s.tick(end, NODES)
    assert [f.outcome for f in finished] == ["timeout"]
    assert finished[0].duration_ms == pytest.approx(500 + TRANSIT_GRACE_MS, abs=0.01)


def test_a_crash_takeover_skips_the_slots_the_dead_manager_may_have_sent_ahead() -> None:
    """The dead manager sent slot K+1 early and died before replicating it: a successor
    taking over within the maximum lead before K+1 must not send K+1 again."""
    old = sched()
    old.activate(due("t", K) - 0.1, graceful=False)
    ds, _ = old.tick(due("t", K) - L, NODES)
    old.on_result("t", ds[0].run_id, ds[0].node, "ok", 1, 1.0, "", due("t", K) + 0.01)
    replica = pack_table(old.table())  # the last table the followers heard of
    sent, _ = old.tick(due("t", K + 1) - L, NODES)
    assert [d.slot for d in sent] == [K + 1]
    # The crash, then a takeover MAX_DISPATCH_LEAD_MS / 2 before K+1 is due.
    new = sched(lead=0, seed=2)  # whatever its own lead
    new.load(replica)
    at = due("t", K + 1) - MAX_DISPATCH_LEAD_MS / 2000
    new.activate(at, graceful=False)
    for t in (at, due("t", K + 1), due("t", K + 1) + 0.5):
        assert new.tick(t, NODES)[0] == []
    assert new.records["t"].counts["skipped"] == 1
    ds, _ = new.tick(due("t", K + 2), NODES)
    assert [d.slot for d in ds] == [K + 2]


def test_a_graceful_hand_over_continues_after_the_slot_sent_ahead() -> None:
    old = sched()
    old.activate(due("t", K) - 0.1, graceful=False)
    ds, _ = old.tick(due("t", K) - L, NODES)
    assert [d.slot for d in ds] == [K]
    old.drain()
    new = sched(seed=2)
    new.load(pack_table(old.table()))
    new.activate(due("t", K) - L / 2, graceful=True)
    assert new.records["t"].running is not None  # adopted: its result comes here
    assert new.tick(due("t", K), NODES)[0] == []
    new.on_result("t", ds[0].run_id, ds[0].node, "ok", 1, 1.0, "", due("t", K) + 0.01)
    ds, _ = new.tick(due("t", K + 1) - L, NODES)
    assert [d.slot for d in ds] == [K + 1]
    assert new.records["t"].counts["skipped"] == 0


def test_trigger_and_instant_runs_are_due_when_sent() -> None:
    s = Scheduler([tdef(instant=True)], random.Random(1), dispatch_lead_ms=LEAD)
    now = due("t", K) + 0.3
    s.activate(now, graceful=False)
    ds, _ = s.tick(now, NODES)
    assert [d.due_ms for d in ds] == [int(now * 1000)]
    s.on_result("t", ds[0].run_id, ds[0].node, "ok", 1, 1.0, "", now + 0.01)
    later = now + 0.1
    d, why = s.trigger("t", later, NODES)
    assert d is not None, why
    assert d.due_ms == int(later * 1000)
    assert d.deadline_ms == int(later * 1000) + 500


def test_the_lead_is_bounded() -> None:
    assert check_lead(0) == 0.0
    assert check_lead(MAX_DISPATCH_LEAD_MS) == MAX_DISPATCH_LEAD_MS
    assert 0 < DISPATCH_LEAD_MS <= MAX_DISPATCH_LEAD_MS < IV
    for bad in (-1, MAX_DISPATCH_LEAD_MS + 1, True, "5"):
        with pytest.raises(ValueError, match="dispatch lead"):
            check_lead(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="dispatch lead"):
            Scheduler([tdef()], random.Random(1), dispatch_lead_ms=bad)  # type: ignore[arg-type]
