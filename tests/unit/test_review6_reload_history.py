"""A manager that reloads its own last table log while it schedules keeps its better state
(``Scheduler._load_row``/``_reload_own``) and with it the row's last slot, but took the
run history of the log's older row: the row said "slot K+2 ended, its update is in the state"
and its history did not list K+2 (review6; the sweep seed 216 of
``test_sim_hold_property``'s leave-soon-after-a-re-claim schedules, busy, before the reclaim
branch stopped the default mode's reload). The node of K+2, whose RESULT_ACK the re-claim
dropped, resends K+2's result: ``_unseen_run`` found ``slot <= rec.slot`` with no history
entry for it and counted a conflict ("later slots of the task ran meanwhile") for an update
the state holds. The default mode no longer reloads at a claim again (clerk._reclaim);
quorum mode still does, and so does this directed form of it.
"""

from __future__ import annotations

from tests.unit.test_offer_wait_skips import NODES, K, due, offered_manager_after_one_run


def test_a_reload_that_keeps_its_state_keeps_the_history_of_the_run_that_made_it() -> None:
    b = offered_manager_after_one_run()
    ds2, _ = b.tick(due("t", K + 2), NODES)
    log = b.table()  # the last round: K+2 in flight
    d2 = ds2[0]
    b.on_result("t", d2.run_id, d2.node, "ok", {"n": 2}, 1.0, "", due("t", K + 2) + 0.01)
    ds3, _ = b.tick(due("t", K + 3), NODES)
    b.load(log)  # the reload of its own last log, our row better: kept
    b.stale = True
    b.activate(due("t", K + 3) + 0.05, graceful=False, claim=(5, "b"))
    rec = b.records["t"]
    assert rec.state == {"n": 2} and rec.slot == K + 2
    assert any(e[0] == K + 2 for e in rec.run_history), list(rec.run_history)
    for node in NODES:
        b.offer_from(node)
    # K+2's node resends its result (its ACK was dropped with the old claim): the row holds
    # its update already; nothing is lost, nothing to count.
    assert b.on_result("t", d2.run_id, d2.node, "ok", {"n": 2}, 1.0, "",
                       due("t", K + 3) + 0.2, slot=K + 2) is None
    assert rec.conflicts == 0 and rec.state == {"n": 2}, rec.last_conflict
