"""``skipped`` counts each slot once across a change of manager.

A slot skipped because the run before it is still in flight (the overlap rule) is counted by
the manager that skipped it, but the row's ``slot`` (the last that ran) and ``dispatched``
(the last sent) stay where they were. A successor starts from those: after a hand-over it
decided those slots again (counted skipped a second time, or even sent one of them, late, that
its predecessor had counted skipped), and after a crash its failover window started after
them and counted them again.
"""

from __future__ import annotations

from clerk._dispatch import Dispatch
from clerk._schedule import Scheduler
from tests.unit.test_offer_wait_skips import _waiting
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef

TIMEOUT = 9000  # ms: the run of K+2 is still going through the slots below


def _skipping(upto: int) -> tuple[Scheduler, Dispatch]:
    """The old manager ran K+1, sent K+2 (a long run) and skipped K+3..``upto`` (in flight)."""
    old = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    ds, _ = old.tick(due("t", K + 2), NODES)
    for slot in range(K + 3, upto + 1):
        assert old.tick(due("t", slot), NODES)[0] == []
    assert old.records["t"].counts["skipped"] == upto - (K + 2)
    return old, ds[0]


def test_a_hand_over_does_not_count_the_slots_its_predecessor_skipped_again() -> None:
    old, d = _skipping(K + 4)
    new = sched(tdef(timeout=TIMEOUT), seed=2)
    new.load(old.table())
    new.activate(due("t", K + 4) + 0.1, graceful=True)
    assert new.tick(due("t", K + 4) + 0.1, NODES)[0] == []  # K+4 was decided already
    assert new.records["t"].counts["skipped"] == 2
    fin = new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 2600.0, "",
                        due("t", K + 4) + 0.6)
    assert fin is not None and new.records["t"].state == {"n": 2}
    ds, _ = new.tick(due("t", K + 5), NODES)
    assert [x.slot for x in ds] == [K + 5]
    assert new.records["t"].counts["skipped"] == 2  # K+3 and K+4, once each


def test_a_hand_over_after_the_run_ended_does_not_send_a_slot_counted_skipped() -> None:
    """The long run ended just before the hand-over: the successor continued at K+3, missed
    (counted again), and sent K+4, late, which its predecessor had counted skipped."""
    old, d = _skipping(K + 4)
    old.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 2050.0, "", due("t", K + 4) + 0.05)
    new = sched(tdef(timeout=TIMEOUT), seed=2)
    new.load(old.table())
    new.activate(due("t", K + 4) + 0.1, graceful=True)
    assert new.tick(due("t", K + 4) + 0.1, NODES)[0] == []
    ds, _ = new.tick(due("t", K + 5), NODES)
    assert [x.slot for x in ds] == [K + 5]
    assert new.records["t"].counts["skipped"] == 2


def test_a_crash_takeover_counts_its_window_from_the_last_slot_decided() -> None:
    old, _ = _skipping(K + 4)
    new = sched(tdef(timeout=TIMEOUT), seed=2)
    new.load(old.table())
    new.activate(due("t", K + 6) + 0.3, graceful=False)  # K+5, K+6: the failover window
    assert new.records["t"].counts["skipped"] == 4  # K+3, K+4 (old), K+5, K+6 (window)


def test_slots_skipped_while_waiting_for_offers_are_not_counted_again_by_a_successor() -> None:
    """A slot skipped while the manager waits for the members' OFFERs does not move ``slot``
    (an offered run of an earlier slot must still be adopted: test_offer_wait_skips.py); a
    successor decided it again and counted it a second time (the README said so)."""
    new, d, _ = _waiting()
    for slot in (K + 3, K + 4):
        assert new.tick(due("t", slot), NODES)[0] == []
    skipped = new.records["t"].counts["skipped"]
    assert skipped >= 2 and new.records["t"].slot == K + 1
    after = sched(tdef(timeout=TIMEOUT), seed=3)
    after.load(new.table())
    after.activate(due("t", K + 4) + 0.1, graceful=True)
    for node in NODES:
        after.offer_from(node)
    assert after.tick(due("t", K + 4) + 0.1, NODES)[0] == []  # K+4: decided by "b"
    assert [x.slot for x in after.tick(due("t", K + 5), NODES)[0]] == [K + 5]
    assert after.records["t"].counts["skipped"] == skipped


def test_a_hand_over_after_a_crash_takeover_does_not_send_a_slot_of_its_window() -> None:
    """The crash takeover skips the slots its dead predecessor may have sent ahead of their
    due time (its failover window, up to MAX_DISPATCH_LEAD_MS ahead), which moved neither
    ``slot`` nor ``dispatched``; the member it then handed over to continued from those and
    sent such a slot, which may be running already (at most once broken, not only a count)."""
    old = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    table = old.table()  # the last the members had: K+2 may have gone ahead after it
    mid = sched(tdef(timeout=TIMEOUT), seed=2)
    mid.load(table)
    mid.activate(due("t", K + 2) - 0.005, graceful=False)  # K+2: in its window
    assert mid.tick(due("t", K + 2) - 0.005, NODES)[0] == []
    after = sched(tdef(timeout=TIMEOUT), seed=3)
    after.load(mid.table())
    after.activate(due("t", K + 2) - 0.004, graceful=True)
    assert [x.slot for x in after.tick(due("t", K + 2), NODES)[0]] == []
    assert [x.slot for x in after.tick(due("t", K + 3), NODES)[0]] == [K + 3]
    assert after.records["t"].counts["skipped"] == 1
