"""Review of the ``_unseen`` rule (an old slot's result after only skipped slots is applied,
clerk._unseen): it must never apply a result twice, move a row's slot back, or apply one
after a later run started from the state it continues (a trigger, an operator pause, a run
that timed out or failed, a new grid)."""

from __future__ import annotations

from clerk._schedule import Scheduler
from tests.unit.test_schedule import NODES, K, due, tdef
from tests.unit.test_schedule_unseen import _lost_dispatch


def _skip(new: Scheduler, *slots: int) -> None:
    for k in slots:
        ds, _ = new.tick(due("t", k), {})
        assert not ds


def test_a_trigger_in_flight_or_ended_at_the_skipped_slot_blocks_it() -> None:
    """One slot skipped after the lost K+2 (rec.slot == K+3): a trigger in that period
    carries that very slot (``max(current, rec.slot, rec.dispatched)``) and starts from n=1 as
    the lost run did. In flight, or ended (with an error too: the version unchanged), the
    old result is dropped; never applied on top of it."""
    for outcome in ("in flight", "error", "ok"):
        _, new, d = _lost_dispatch()
        rec = new.records["t"]
        _skip(new, K + 3)
        assert rec.slot == K + 3 and rec.dispatched < K + 2
        t, err = new.trigger("t", due("t", K + 3) + 0.3, NODES)
        assert t is not None and t.slot == K + 3, err
        if outcome != "in flight":
            new.on_result("t", t.run_id, t.node, outcome, {"n": 5} if outcome == "ok" else None,
                          1.0, "boom" if outcome == "error" else "", due("t", K + 3) + 0.4)
        before = (dict(rec.state), rec.version, rec.slot)
        assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                             due("t", K + 3) + 0.5, slot=d.slot) is None, outcome
        assert (dict(rec.state), rec.version, rec.slot) == before, outcome


def test_a_trigger_after_several_skips_blocks_it_in_flight_and_after() -> None:
    for outcome in ("in flight", "error", "timeout"):
        _, new, d = _lost_dispatch()
        rec = new.records["t"]
        _skip(new, K + 3, K + 4)
        t, _ = new.trigger("t", due("t", K + 4) + 0.1, NODES)
        assert t is not None and t.slot == K + 4
        at = due("t", K + 4) + 0.2
        if outcome == "error":
            new.on_result("t", t.run_id, t.node, "error", None, 1.0, "boom", at)
        elif outcome == "timeout":
            at = due("t", K + 6)
            new.tick(at, {})  # past its deadline: timed out
            assert rec.running is None
        assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", at + 0.01,
                             slot=d.slot) is None, outcome
        assert rec.state == {"n": 1} and rec.conflicts == 1, outcome


def test_paused_then_resumed_it_is_applied_once_and_the_slot_never_goes_back() -> None:
    """Slots skipped while paused are no runs: the old run's result (it was sent before the
    pause) continues the row and is applied once; the row's slot does not go back; a
    resend later is harmless; the next slot after the resume starts from it."""
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    new.set_paused("t", True, "a", due("t", K + 2) + 0.1)
    for k in (K + 3, K + 4):
        ds, _ = new.tick(due("t", k), NODES)
        assert not ds
    slot = rec.slot
    fin = new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                        due("t", K + 4) + 0.1, slot=d.slot)
    assert fin is not None and rec.state == {"n": 2} and rec.slot >= slot
    version = rec.version
    for _ in range(2):
        assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                             due("t", K + 4) + 0.2, slot=d.slot) is None
    assert rec.version == version and rec.conflicts == 0
    new.set_paused("t", False, "a", due("t", K + 4) + 0.3)
    ds, _ = new.tick(due("t", K + 5), NODES)
    assert [x.slot for x in ds] == [K + 5] and ds[0].state == {"n": 2}


def test_a_later_lost_run_from_the_same_state_is_never_applied_on_top() -> None:
    """Two runs from n=1 whose dispatches the table never saw (K+2's, then K+3's sent by a
    manager that died too): whichever result comes first is applied, the other is dropped
    and counted (it did not start from the state that now is)."""
    for first in (0, 1):
        old, new, d2 = _lost_dispatch()
        old.on_result("t", d2.run_id, d2.node, "error", None, 1.0, "x", due("t", K + 2) + 0.1)
        ds, _ = old.tick(due("t", K + 3), NODES)
        d3 = ds[0]
        assert d3.state == {"n": 1}
        rec = new.records["t"]
        _skip(new, K + 3, K + 4)
        runs = [d2, d3] if first == 0 else [d3, d2]
        got = [new.on_result("t", r.run_id, r.node, "ok", {"n": 2 + i}, 1.0, "",
                             due("t", K + 4) + 0.1 + i / 10, slot=r.slot)
               for i, r in enumerate(runs)]
        assert got[0] is not None and got[1] is None
        assert rec.version == 2 and rec.conflicts == 1 and rec.slot == K + 4


def test_a_new_grid_counts_the_old_ones_slots_as_sent() -> None:
    """A definition that moves the grid sets ``dispatched`` to the new grid's current slot:
    an old-grid result is not applied by the skipped-slots rule (its slot is below)."""
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    _skip(new, K + 3)
    new.update_defs({"t": tdef("t", 500)}, due("t", K + 3) + 0.1)
    assert rec.dispatched > d.slot
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 3) + 0.2, slot=d.slot) is None
    assert rec.state == {"n": 1}
