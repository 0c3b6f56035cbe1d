"""Review 7: the bound on a run adopted on a node a new manager does not list
(``UNLISTED_RUN_WAIT_S``, ``Scheduler.bound_run``, clerk._adoptedruns) holds across a claim
again while scheduling.

A manager that claims again while it schedules (a higher-term ELECTION: clerk._reclaim)
activates again without ``deactivate``: ``begin_activation`` rebuilt the deadlines of the runs
in flight from the rows, which keep their own (long) deadline, and the runner's
``_resolve_adopted`` then bounded the run again from the new claim's wall time. Each claim
again pushed the bound 12 s further, so a cluster whose manager kept being made to claim again
(an ELECTION every few seconds) kept the task stalled up to the run's whole timeout (an
hour's, say), which is what the bound is there to prevent.
"""

from __future__ import annotations

import pytest

from clerk._adoptedruns import UNLISTED_RUN_WAIT_S
from tests.unit.test_schedule import NODES, TRANSIT_GRACE_MS, K, due, sched, started, tdef


@pytest.mark.timeout(30)
def test_a_claim_again_keeps_the_bound_of_a_run_on_an_unlisted_node() -> None:
    s = started(sched(tdef(timeout=3_600_000)), due("t", K) + 0.1)
    ds, _ = s.tick(due("t", K + 1), NODES)
    limit_ms = (due("t", K + 1) + (3_600_000 + TRANSIT_GRACE_MS) / 1000) * 1000
    assert s._inflight.get("t") == pytest.approx(limit_ms, abs=1)
    takeover = due("t", K + 1) + 0.5
    bound_ms = (takeover + UNLISTED_RUN_WAIT_S) * 1000
    s.bound_run("t", bound_ms)  # (the runner's _resolve_adopted at the takeover)
    # 5 s later: a claim again while scheduling (no deactivate), and its _resolve_adopted.
    again = takeover + 5.0
    s.activate(again, graceful=False, claim=(s.claim[0] + 1, s.claim[1]))
    s.bound_run("t", (again + UNLISTED_RUN_WAIT_S) * 1000)
    assert s.records["t"].running is not None and s.records["t"].running["run"] == ds[0].run_id
    assert s._inflight.get("t") == pytest.approx(bound_ms, abs=1), "the bound moved with the claim"
    _, fins = s.tick(bound_ms / 1000, NODES)
    assert [(f.slot, f.outcome) for f in fins if f.outcome == "timeout"] == [(K + 1, "timeout")]


@pytest.mark.timeout(30)
def test_a_bound_is_for_its_run_only() -> None:
    """The bound kept for a claim again is the run's: a later run of the task has its own
    deadline."""
    s = started(sched(tdef(timeout=60_000)), due("t", K) + 0.1)
    s.tick(due("t", K + 1), NODES)
    bound = due("t", K + 1) + UNLISTED_RUN_WAIT_S
    s.bound_run("t", bound * 1000)
    _, fins = s.tick(bound, NODES)
    assert [f.outcome for f in fins] == ["timeout"]
    run = s.records["t"].running
    assert run is not None and run["slot"] > K + 1
    deadline = float(run["deadline"])
    s.activate(bound + 1.0, graceful=False, claim=(s.claim[0] + 1, s.claim[1]))
    assert s._inflight.get("t") == pytest.approx(deadline, abs=1)
