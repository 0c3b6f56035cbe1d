"""review13: a new manager whose clock is ahead of the manager it followed reads that
manager's deadlines (the table's runs in flight) in its own time base: without
``begin_activation(ahead_ms=...)`` a run with time to go timed out at once and the next slot
went beside it (tests/integration/test_review13_skew_handover.py, real processes)."""

from __future__ import annotations

import pytest

from tests.unit.test_schedule import NODES, K, due, sched, started, tdef


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ahead_ms", [0.0, 4000.0])
def test_the_old_managers_run_times_out_later_by_how_far_the_new_one_is_ahead(
        ahead_ms: float) -> None:
    s = started(sched(tdef(timeout=3000)), due("t", K) + 0.1)
    s.tick(due("t", K + 1), NODES)
    run = s.records["t"].running
    assert run is not None
    deadline = float(run["deadline"])
    takeover = due("t", K + 1) + 0.5
    s.begin_activation(takeover, graceful=True, claim=(s.claim[0] + 1, "n9"), ahead_ms=ahead_ms)
    s.activate_step(float("inf"))
    assert s._inflight.get("t") == pytest.approx(deadline + ahead_ms, abs=1)
    _, fins = s.tick((deadline + 1) / 1000, NODES)
    assert [f.outcome for f in fins] == ([] if ahead_ms else ["timeout"])


@pytest.mark.timeout(30)
def test_its_own_runs_do_not_move_and_no_offset_moves_nothing() -> None:
    """A claim again (its own runs: its own time base), a negative or non-finite offset:
    the deadlines are the rows' (behind, a run times out later anyway: never early)."""
    for claim_node, ahead in (("", 4000.0), ("n9", -4000.0), ("n9", float("nan"))):
        s = started(sched(tdef(timeout=3000)), due("t", K) + 0.1)
        s.tick(due("t", K + 1), NODES)
        run = s.records["t"].running
        assert run is not None
        s.begin_activation(due("t", K + 1) + 0.5, graceful=False,
                           claim=(s.claim[0] + 1, claim_node or s.claim[1]), ahead_ms=ahead)
        s.activate_step(float("inf"))
        assert s._inflight.get("t") == pytest.approx(float(run["deadline"]), abs=1), claim_node
