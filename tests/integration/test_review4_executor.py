"""Review of branch ``fixes`` (06f5c6c, the executor reads a worker's link before it kills a
run past its timeout): the DONE it then finds need not have been written in time.

The fix's case is a DONE written inside the timeout that waits unread while the loop is late.
But the link is read whatever the DONE's time: a run that overran its timeout (here 0.6 s of
a 0.3 s timeout) and wrote its DONE after its deadline, before a late loop turn looked, is
reported ``ok`` with its new state, where the README says a timeout fails that run. On main
``expire`` kills it and reports a timeout (the first test passes on main, fails on fixes).

The same hole exists on main when the late turn reads the link *before* its timer check (the
agent's loop, like this file's ``turn``, handles ready sockets first): the second test is a
strict xfail on main too. Suggested fix: a DONE whose run is past its deadline when it is
read (or whose ``duration_ms`` exceeds the run's timeout) is a timeout (its worker, idle
again, need not be killed), in ``_on_done`` so both orders agree. Done so: a DONE whose
``duration_ms`` is over the run's timeout is a timeout (no state taken); both tests pass.
"""

from __future__ import annotations

import select
import time

import pytest

import clerk
from clerk._messages import Execute
from clerk.testing import wait_until
from tests.integration.test_executor_queue import ME, running_executor

NAP = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                 timeout=10_000)


def _overran(monkeypatch: pytest.MonkeyPatch, read_first: bool) -> tuple[str, float]:
    """A run of 0.6 s under a 0.3 s timeout; the loop turns only once its DONE is in the
    link (past the deadline). Returns the run's (outcome, duration ms)."""
    with running_executor(monkeypatch, {"nap": NAP}) as (ex, results, turn):
        ex.submit(Execute(ME, 1, "nap", "warm", 0, {"s": 0}, 10_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 1, timeout=20, interval=0)
        worker = ex.workers[0]
        link = worker.identity
        assert link is not None
        ex.submit(Execute(ME, 1, "nap", "slow", 1, {"s": 0.6}, 300), "m", time.monotonic())
        job = worker.job
        assert job is not None
        # No loop turn: the run overruns its timeout, then its DONE arrives, unread.
        wait_until(lambda: bool(select.select([link], [], [], 0)[0]),
                                 timeout=10, interval=0.005)
        assert time.monotonic() > job.deadline  # written after the deadline
        if read_first:
            turn()  # ready sockets first, then the timers (as the agent's loop)
        else:
            ex.expire(time.monotonic())  # the timer check first (a turn with no poll)
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        result = results[1][1]
        assert result.run_id == "slow"
        return result.outcome, result.duration_ms


@pytest.mark.timeout(60)
def test_a_run_past_its_timeout_found_by_the_timer_check_is_a_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes on main (killed, timeout); fails on ``fixes`` (ok, ~600 ms of a 300 ms
    timeout)."""
    outcome, duration = _overran(monkeypatch, read_first=False)
    assert outcome == "timeout", (outcome, duration)


@pytest.mark.timeout(60)
def test_a_done_written_after_the_deadline_is_not_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, duration = _overran(monkeypatch, read_first=True)
    assert outcome == "timeout", (outcome, duration)
