"""Review of tests/unit/test_sim_offer_runs.py's property: a schedule that loses a run's
update with no conflict counted, offered runs on or off, because the only node that held the
result died before any manager took it (the README's "that one update is lost" case: a
double fault, outside what an OFFER can carry). The property test draws such schedules now
and then (2 of 388 seeds of ``random_schedule`` here; it ran 25 random examples and failed
~7 % of runs, so it is derandomized now): these are its known failing kinds."""

from __future__ import annotations

import pytest

from tests.unit.test_sim_offer_runs import _bad, random_schedule, run_schedule

#: seed -> what happened (random_schedule's 3 nodes n0-n2; n2 manages under term 1)
LOST_WITH_ITS_NODE = {
    # n2 sent slot ...065 to n1 (a long run) and crashed at once; n1 ran it to the end with
    # no manager to take its result and crashed 40 ms later: n0 took over at term 2 and ran
    # the next slot from the state before (counter 7 twice).
    392: "manager and runner crashed",
    # (from the fault list and the runs) n1 had left; n2 sent ...107 to n0 (long) and
    # crashed; n0 crashed after its run ended,
    # its result unsent: every node down, n2 restarted and went on from state 20.
    191: "every node down",
}


@pytest.mark.xfail(strict=True, reason="a double fault loses the only copy of a result (README: "
                   "'that one update is lost'): test_sim_offer_runs's property test counts it as "
                   "a dropped result, and draws such a schedule ~0.5% of examples (flaky)")
@pytest.mark.parametrize("seed", sorted(LOST_WITH_ITS_NODE))
def test_the_property_holds_when_the_results_only_holder_dies(seed: int) -> None:
    n, faults = random_schedule(seed)
    assert not _bad(run_schedule(n, seed, faults, offer_runs=True))


@pytest.mark.parametrize("seed", sorted(LOST_WITH_ITS_NODE))
def test_without_offered_runs_the_same_update_is_lost(seed: int) -> None:
    """Not the offer change's doing: the same repeat without it."""
    n, faults = random_schedule(seed)
    a = run_schedule(n, seed, faults, offer_runs=True)
    b = run_schedule(n, seed, faults, offer_runs=False)
    assert a["repeated"] and a["repeated"] == b["repeated"] and a["conflicts"] == 0


#: 4 nodes: n3 (term 1) crashes right after a dispatch; n2 takes over (term 2), sends slot
#: ...062 to n0 (a long run, 5 -> 6) and crashes at once; n3 and n2 restart and hear from n0
#: (which still follows n2's dead claim) while they wait for their recorded members; n3
#: claims term 3 (``stale``: it waits for OFFERs) with members n2, n3 only: n0, not among
#: them, was not waited for, nor told of the claim (it found it by its own election 0.46 s
#: later). n3 sent slot ...100 from state 5 before n0's OFFER (whose run had ended by then),
#: and n0's result then came to ``_unseen_run`` with its slot below the row's: dropped,
#: counted as a conflict (since main's b700f73). Now (clerk._joining, "Restarts") n3's claim
#: announces itself to n0 (a recorded member it heard from), waits for its OFFER as for a
#: member's, and takes its result before its JOIN is in.
SILENT = (4, 1280095389, [("crash_after_dispatch", 1, 1.0130363938237046),
                          ("crash_after_dispatch", 2, 0.09612090679210775)])


def test_a_result_the_row_never_saw_is_counted() -> None:
    """Before (``rejoin_heard`` off): the update lost, never silently."""
    n, seed, faults = SILENT
    got = run_schedule(n, seed, faults, offer_runs=True, rejoin_heard=False)
    assert got["repeated"] and got["conflicts"] > 0, got


def test_a_takeover_waits_for_a_member_it_does_not_list_yet() -> None:
    n, seed, faults = SILENT
    got = run_schedule(n, seed, faults, offer_runs=True)
    assert not got["repeated"] and not got["conflicts"], got


#: 4 nodes: n3 (manager, term 1) sends slot ...036 to n2 (a long run, 8 -> 9) and crashes
#: at once; n2 leaves gracefully 0.1 s before its run ends, with no manager to give the result
#: to; n1 takes over (term 2). Before: n2 sent its result to n3 (dead) and stopped, and n1 ran
#: the next slot from state 8 (counter 9 twice, nothing counted; the same with offered runs
#: off). Now n2 keeps the result until a manager acknowledges it: n1's COORDINATOR reaches it
#: (its LEAVE died with n3, so n1 still lists it), the result goes to n1, which continues
#: from 9.
LEFT = (4, 695812900, [("restart", 3, 0.7375107309660327),
                       ("crash_after_dispatch", 0, 0.5007426447103424),
                       ("leave", 2, 1.075758758766177)])


def test_a_member_leaving_without_a_manager_keeps_its_result() -> None:
    n, seed, faults = LEFT
    got = run_schedule(n, seed, faults, offer_runs=True)
    assert not got["repeated"] and not got["conflicts"], got
