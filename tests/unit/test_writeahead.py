"""The manager's write-ahead (clerk._writeahead): reservations ahead of due time, dispatches
held until their reservation is committed, results until their record is."""

from __future__ import annotations

from dataclasses import dataclass

from clerk._writeahead import RESERVE_LEAD_FACTOR, RESERVE_LEAD_MIN_MS, WriteAhead


@dataclass
class Rec:
    dispatched: int


def make(learned: dict[str, int | None] | None = None) -> tuple[WriteAhead, dict[str, int]]:
    committed: dict[str, int] = {}
    return WriteAhead(learned or {}, committed.get), committed


def test_a_new_manager_continues_after_the_learned_reservations() -> None:
    wa, _ = make({"t": 7, "u": None})
    recs = {"t": Rec(3), "u": Rec(2), "v": Rec(-1)}
    wa.continue_after(recs)
    assert (recs["t"].dispatched, recs["u"].dispatched, recs["v"].dispatched) == (7, 2, -1)
    assert wa.reserve("t", 7) == {}  # already reserved by an earlier ballot: never again
    assert wa.reserve("t", 8) == {"t": {"reserved": 8}}
    assert wa.reserve("t", 8) == {}  # written once


def test_reserve_ahead_only_within_the_lead() -> None:
    wa, _ = make()
    rows = wa.ahead([("t", 5, 1000.0 + RESERVE_LEAD_MIN_MS), ("u", 9, 1000.0 + 500)], 1000.0)
    assert rows == {"t": {"reserved": 5}}


def test_the_loop_wakes_up_a_lead_before_the_next_unreserved_slot() -> None:
    wa, _ = make()
    up = [("t", 5, 1000.0), ("u", 2, 900.0)]
    assert wa.next_reserve_ms(up) == 900.0 - RESERVE_LEAD_MIN_MS
    wa.reserve("u", 2)
    assert wa.next_reserve_ms(up) == 1000.0 - RESERVE_LEAD_MIN_MS
    wa.reserve("t", 5)
    assert wa.next_reserve_ms(up) == float("inf")


def test_the_lead_follows_the_median_commit_latency() -> None:
    wa, _ = make()
    assert wa.lead_ms == RESERVE_LEAD_MIN_MS
    for i, ms in enumerate((10.0, 12.0, 50.0)):
        wa.wrote([i + 1], 0.0)
        wa.on_committed(i + 1, ms)
    assert wa.lead_ms == RESERVE_LEAD_FACTOR * 12.0


def test_dispatch_waits_for_its_reservation_commit() -> None:
    wa, committed = make()
    assert not wa.gate("t", 5)
    wa.hold_dispatch("d5", "t", 5)
    wa.hold_dispatch("d9", "u", 9)
    assert wa.on_committed(1, 0.0) == []  # an unrelated write
    committed["t"] = 5
    assert wa.on_committed(2, 0.0) == ["d5"]
    assert wa.gate("t", 5) and not wa.gate("t", 6)
    assert [h.what for h in wa.held] == ["d9"]


def test_results_wait_for_every_write_of_their_record() -> None:
    wa, _ = make()
    wa.hold_result("r", "t", [3, 4])
    assert wa.on_committed(3, 0.0) == []
    assert wa.on_committed(4, 0.0) == ["r"]
    wa.hold_result("again", "t", [3])  # already committed: released at the next commit
    assert wa.on_committed(9, 0.0) == ["again"]


def test_drop_held() -> None:
    wa, _ = make()
    wa.hold_dispatch(("d", 1), "t", 1)
    wa.hold_dispatch(("d", 2), "t", 2)
    assert wa.drop_held(lambda w: w[1] > 1) == [("d", 1)]
    assert [h.what for h in wa.held] == [("d", 2)]
