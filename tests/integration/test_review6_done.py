"""A worker's DONE whose ``duration_ms`` is an integer too large for a float (review6).

``Executor._on_done`` checked the duration with ``math.isfinite``, which raises
OverflowError for such an int (JSON reads ``1`` followed by 400 zeros as a Python int): the
error left the executor's reader callback and, on a real node, the agent's loop. The DONE is
malformed like one with a non-finite or non-number duration: its run fails at once, saying
why, and the same worker takes the next run (as
``test_executor_queue.test_a_done_the_agent_cannot_read_fails_its_run_at_once_and_frees_the_worker``).
"""

from __future__ import annotations

import time

import pytest

import clerk
from clerk._messages import Execute
from clerk.testing import wait_until
from tests.integration.test_executor_queue import ME, running_executor

BIG = "1" + "0" * 400  # (an int JSON reads whole; float() of it overflows)


@pytest.mark.timeout(60)
def test_a_done_whose_duration_is_an_int_too_large_for_a_float_fails_its_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    body = f'["r0", "ok", {{"n": 1}}, {BIG}, ""]'
    bad = clerk.task("tests.integration.cluster_tasks:MalformedDone", name="bad",
                     interval=60_000, timeout=20_000)
    nap = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                     timeout=20_000)
    with running_executor(monkeypatch, {"bad": bad, "nap": nap}) as (ex, results, turn):
        pid = ex.workers[0].pid
        began = time.monotonic()
        ex.submit(Execute(ME, 1, "bad", "r0", 0, {"body": body}, 20_000), "m",
                  time.monotonic())
        ex.submit(Execute(ME, 1, "nap", "r1", 1, {"s": 0.01}, 20_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=30, interval=0)
        failed, done = results[0][1], results[1][1]
        assert (failed.run_id, failed.outcome, failed.state) == ("r0", "error", None)
        assert (f"worker process {pid} answered the run with a malformed reply "
                f"(duration_ms {BIG[:50]}") in failed.error, failed.error
        assert (done.run_id, done.outcome) == ("r1", "ok"), done.error
        assert time.monotonic() - began < 10  # not the 20 s timeout
        assert ex.workers[0].pid == pid and ex.restarts == 0 and ex.malformed == 1
