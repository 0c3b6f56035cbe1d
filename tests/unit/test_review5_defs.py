"""review5: a definition change must not take a task's next slot back below what its manager
decided already (``TaskRecord.decided``, the crash takeover's failover window)."""

from __future__ import annotations

from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef

TIMEOUT = 9000  # ms


def test_a_definition_change_after_a_crash_takeover_does_not_send_a_slot_of_its_window() -> None:
    """Case: a crash takeover 5 ms before slot K+2 is due treats K+2 as inside its failover
    window (the dead manager may have sent it ahead, up to MAX_DISPATCH_LEAD_MS: the
    takeover's ``next_slot`` is K+3 and ``decided`` K+2). A member then announces a changed
    definition of the task on the same grid (a timeout changed in a rolling deploy), and the
    manager sends K+2 at its due time: a slot the dead manager may have sent, so at most
    once is broken, and one it counted skipped, so it is counted and run.

    Cause: clerk/_adopt.py ``Adoption.update_defs`` (the ``else`` branch of ``if grid is
    None``) sets ``next_slot = max(current, rec.slot, rec.dispatched) + 1`` with ``current``
    the slot due now: neither ``rec.decided`` nor the ``next_slot`` already decided is kept,
    so the slot numbers decided ahead of now are decided again. The same happens to a slot
    skipped ahead of its due time while the manager waits for OFFERs with a lead (counted
    skipped twice, or sent after it was counted).

    Fixed: on the same grid, ``next_slot = max(next_slot, current + 1, rec.slot + 1,
    rec.dispatched + 1, rec.decided + 1)`` (a new grid resets them, as before). Fails on
    main (K+2 sent)."""
    old = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    table = old.table()  # the last the members had: K+2 may have gone ahead after it
    new = sched(tdef(timeout=TIMEOUT), seed=2)
    new.load(table)
    new.activate(due("t", K + 2) - 0.005, graceful=False)  # K+2: in its failover window
    assert new.records["t"].decided == K + 2
    assert new.tick(due("t", K + 2) - 0.005, NODES)[0] == []
    notes = new.update_defs({"t": tdef(timeout=TIMEOUT + 1000)}, due("t", K + 2) - 0.004)
    assert notes and "definition changed" in notes[0]
    assert [d.slot for d in new.tick(due("t", K + 2), NODES)[0]] == []  # main: [K+2]
    assert [d.slot for d in new.tick(due("t", K + 3), NODES)[0]] == [K + 3]
    assert new.records["t"].counts["skipped"] == 1  # K+2, once
