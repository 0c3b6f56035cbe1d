"""The busy tasks that cluster tests load beside the task under test (``Nap`` with
``args={"s": 0}``: test_reclaim, test_takeover_offered_runs, test_leave_results) run, with a
real executor and worker process: their first run takes the state from ``init(args)``."""

from __future__ import annotations

import time

import pytest

import clerk
from clerk._messages import Execute
from clerk.testing import wait_until
from tests.integration.cluster_tasks import Nap
from tests.integration.test_executor_queue import ME, running_executor


@pytest.mark.timeout(60)
def test_a_busy_nap_runs_from_its_args(monkeypatch: pytest.MonkeyPatch) -> None:
    """On main every run failed: ``Nap`` had no ``init``, so its state was None and
    ``execute`` raised ``TypeError: 'NoneType' object is not subscriptable``."""
    # (An interval of a minute: a run that reaches its worker more than one interval after it
    # came is refused as stale, and on a loaded machine 100 ms was not enough: "stale: would
    # start 114 ms after its slot was due". The runs' state is what this tests, not timing.)
    busy = clerk.task(Nap, name="busy0", interval=60_000, args={"s": 0})
    with running_executor(monkeypatch, {"busy0": busy}) as (ex, results, turn):
        # As the manager sends a task's first run: its args as the state, init set.
        ex.submit(Execute(ME, 1, "busy0", "r0", 0, {"s": 0}, 10_000, True), "m",
                  time.monotonic())
        wait_until(lambda: turn() or len(results) == 1, timeout=20, interval=0)
        ex.submit(Execute(ME, 1, "busy0", "r1", 1, results[0][1].state, 10_000), "m",
                  time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
    assert [(r.outcome, r.state, r.error) for _, r in results] == [
        ("ok", {"s": 0}, ""), ("ok", {"s": 0}, "")]
