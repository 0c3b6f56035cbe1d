"""A merged row from a node whose clock is ahead of ours (clerk._lead ``FUTURE_SKEW_MS``).

A merge (an OFFER, a HANDOVER) refuses a row claiming a slot in the future: no real manager
can have run it, and a forged row must not push a task's next slot out of reach. The guard
was one slot past our clock's current one, so a row from a manager whose clock ran more than
about one interval ahead (100 ms at the shortest) was refused, its state with it: the next
run started from the older state (a count repeated). Now the margin is 5 s; a row a million
slots ahead is still refused (tests/unit/test_review5_merge.py, test_schedule).
"""

from __future__ import annotations

import pytest

from clerk._lead import FUTURE_SKEW_MS
from tests.unit.test_schedule import NODES, K, due, sched, started, tdef

IV = 100  # ms: the shortest interval


def _ahead_by(skew_s: float) -> tuple[bool, object, list[int]]:
    """A manager ``skew_s`` ahead of ours ran the task's slot current by its clock; we merge
    its row at our now. (merged, our state after, [its slot, the slots we dispatch next])."""
    ahead = started(sched(tdef(interval=IV), seed=1), due("t", K, IV) + skew_s - 0.05)
    slot = ahead.next_slot["t"]  # (a takeover's first slot: a little past its clock's now)
    ds, _ = ahead.tick(due("t", slot, IV), NODES)
    assert [d.slot for d in ds] == [slot]
    fin = ahead.on_result("t", ds[0].run_id, ds[0].node, "ok", {"n": "ahead"}, 1.0, "",
                          due("t", slot, IV) + 0.01)
    assert fin is not None
    ours = started(sched(tdef(interval=IV), seed=2), due("t", K - 5, IV) + 0.01)
    now = due("t", K, IV) + 0.01
    merged = ours.merge(ahead.table(), wall=now, source="skewed")
    nxt = [d.slot for d in ours.tick(due("t", slot + 1, IV), NODES)[0]]
    return merged, ours.records["t"].state, [slot, *nxt]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("skew_s", [0.3, 1.0, 3.0])
def test_a_row_from_a_manager_whose_clock_is_ahead_is_merged(skew_s: float) -> None:
    merged, state, nxt = _ahead_by(skew_s)
    assert merged and state == {"n": "ahead"}, (merged, state)  # main: refused at 0.3 s
    assert nxt[1:] == [nxt[0] + 1], nxt  # its slot not run again here


@pytest.mark.timeout(30)
def test_a_row_far_past_the_margin_is_still_refused() -> None:
    merged, state, _ = _ahead_by(FUTURE_SKEW_MS / 1000 + 2.0)
    assert not merged and state != {"n": "ahead"}, (merged, state)
