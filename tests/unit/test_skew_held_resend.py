"""A new manager whose clock is behind the old one's by more than ``FUTURE_SKEW_MS`` (5 s)
counted the resends of results its table already holds as lost updates (simulator seed 27 of
review17's scan, /work/wt/_prompts/keep/r17scan.py: n3, 3 s ahead, ran slots to 117 and
dispatched 118; n2, 3 s behind, took over from n3's replica, which shows 116 and 117 finished,
and the nodes of 116 and 117 sent their results again, as they do to each new manager).

The result of a run the table does not show is judged in ``clerk._unseen``; its first check
drops a slot past the new manager's own horizon (its clock + lead + ``FUTURE_SKEW_MS``) as
another grid's number (review16). It ran before the check for a resend of a slot the row
already reached, so with the clocks 6 s apart the row's own slots were past the horizon and
each resend was counted as a conflict (no update was lost: the row holds both). Now that check
only judges slots past the row's slot, the only ones that could move it."""

from __future__ import annotations

import pytest

from tests.unit.test_schedule import NODES, K, due, sched, started, tdef

IV = 100  # ms: the shortest interval, the most slots per second of skew
BEHIND_S = 6.0  # the new manager's clock behind the old one's (offsets -3 s and +3 s)


def _resends_after_takeover(behind_s: float) -> tuple[int, object]:
    """m1 runs slots K+1..K+3; m2, ``behind_s`` behind, takes over from m1's table and gets
    the results of K+2 and K+3 again; its row's conflicts and state."""
    m1 = started(sched(tdef(interval=IV), seed=1), due("t", K, IV) + 0.01)
    m1.claim = (1, "n3")
    sent = []
    for slot in range(K + 1, K + 4):
        ds, _ = m1.tick(due("t", slot, IV), NODES)
        assert [d.slot for d in ds] == [slot]
        d = ds[0]
        state = {"n": slot - K}
        fin = m1.on_result("t", d.run_id, d.node, "ok", state, 1.0, "",
                           due("t", slot, IV) + 0.01)
        assert fin is not None and fin.outcome == "ok"
        sent.append((d, state))
    table = m1.table()
    assert table is not None
    wall2 = due("t", K + 3, IV) + 0.05 - behind_s
    m2 = sched(tdef(interval=IV), seed=2)
    m2.load(table)
    m2.activate(wall2, graceful=False, claim=(2, "n2"))
    for d, state in sent[1:]:
        assert m2.on_result("t", d.run_id, d.node, "ok", state, 1.0, "", wall2 + 0.01,
                            slot=d.slot) is None
    rec = m2.records["t"]
    return rec.conflicts, rec.state


@pytest.mark.timeout(30)
def test_a_resend_of_a_held_result_is_no_conflict_on_a_manager_far_behind() -> None:
    assert _resends_after_takeover(BEHIND_S) == (0, {"n": 3})  # (before: 2 counted)


@pytest.mark.timeout(30)
def test_a_resend_of_a_held_result_is_no_conflict_with_clocks_that_agree() -> None:
    assert _resends_after_takeover(0.0) == (0, {"n": 3})
