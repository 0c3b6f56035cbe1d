"""skew2: a node without an estimate of its manager's clock (just joined, a new manager's
first stamped heartbeat not in yet, a manager of an older build) judges an EXECUTE by its own
clock, as before, and says so: the status's ``clock.judged_by`` and the count of runs so
judged (``clock.unestimated_runs``), which ``clerk status`` prints. Before, its status showed
``offset_ms: null`` and ``corrected: false`` alike for a node within 5 ms of its manager and
for one that had no estimate at all, and nothing counted the runs judged without one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from clerk.__main__ import _clock_lines
from clerk._clockskew import JUDGED_BY, SkewEstimator
from clerk._messages import Execute, Peer
from clerk._routing import ResultRouting

M = Peer("m", "127.0.0.1:1", "m-1+c", 0)
WALL0 = 1_800_000_000.0


def _estimator(offset_s: float) -> SkewEstimator:
    est = SkewEstimator()
    for i in range(10):  # stamps every 100 ms, 0.3 ms on the way
        est.sample("m/m-1+c", int((WALL0 + i * 0.1) * 1000), 50.0 + i * 0.1 + 0.0003)
    return est


def _status(est: SkewEstimator, offset_s: float) -> dict[str, Any]:
    mono = 51.0
    return est.status(mono, WALL0 + (mono - 50.0) + offset_s)


@pytest.mark.timeout(30)
def test_the_status_says_by_which_clock_runs_are_judged() -> None:
    assert _status(SkewEstimator(), 0.0)["judged_by"] == JUDGED_BY[2] == "own (no estimate)"
    assert _status(_estimator(0.0), 0.0)["judged_by"] == "own (within 5 ms)"
    assert _status(_estimator(-2.0), -2.0)["judged_by"] == "manager"
    assert _status(SkewEstimator(), 0.0)["unestimated_runs"] == 0


def _routing(est: SkewEstimator, offset_s: float) -> Any:
    wall = WALL0 + 1.0 + offset_s
    return SimpleNamespace(agent=SimpleNamespace(core=SimpleNamespace(clock_skew=est),
                                                 clock=SimpleNamespace(wall=lambda: wall),
                                                 me=SimpleNamespace(name="n2")),
                           as_sent=SimpleNamespace(note=lambda *a: None), executor=None)


@pytest.mark.timeout(30)
def test_runs_judged_without_an_estimate_are_counted_and_printed() -> None:
    due = int((WALL0 + 1.5) * 1000)
    msg = Execute(M, 1, "t", "r1", 1, None, 1000, False, due, due + 1000)
    fresh = SkewEstimator()
    assert ResultRouting._in_my_time(_routing(fresh, -2.0), msg, 51.0) is msg
    assert fresh.unestimated == 1
    # With an estimate from its sender: moved, not counted; within 5 ms: as it is, not
    # counted either (judged by our clock, but with an estimate that says it agrees).
    est = _estimator(-2.0)
    got = ResultRouting._in_my_time(_routing(est, -2.0), msg, 51.0)
    assert got.due_ms == pytest.approx(due - 2000, abs=2) and est.unestimated == 0
    near = _estimator(0.0)
    assert ResultRouting._in_my_time(_routing(near, 0.0), msg, 51.0) is msg
    assert near.unestimated == 0
    # An EXECUTE from another manager than the one whose stamps made the estimate.
    other = Execute(Peer("x", "127.0.0.1:2", "x-1+c", 0), 2, "t", "r2", 2, None, 1000, False,
                    due, due + 1000)
    assert ResultRouting._in_my_time(_routing(est, -2.0), other, 51.0) is other
    assert est.unestimated == 1
    # Our own (the manager's runs on itself): not counted.
    mine = Execute(Peer("n2", "127.0.0.1:3", "n2-1+c", 0), 2, "t", "r3", 3, None, 1000)
    ResultRouting._in_my_time(_routing(fresh, 0.0), mine, 51.0)
    assert fresh.unestimated == 1
    assert _clock_lines(_status(fresh, 0.0), None) == [
        "clock: no estimate of the manager's; 1 runs judged by this node's own clock "
        "without one"]
    assert _clock_lines(_status(SkewEstimator(), 0.0), None) == []
