"""A DONE that answers a run its worker does not hold, with a real executor and worker
processes: a link that says ``ready`` as worker 0 (as a confused worker would) answers the
run it was given with another run's id."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

import clerk
from clerk._messages import Execute
from clerk._workerlink import DONE, READY, RUN, pack, recv_msg
from clerk.testing import wait_until
from tests.integration.test_executor_queue import ME, running_executor

NAP = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                 timeout=10_000)


@pytest.mark.timeout(60)
def test_a_done_for_another_run_fails_the_held_run_and_replaces_the_worker(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """On main the DONE was dropped without a word: the run waited for its 10 s timeout
    (this test's 5 s wait for a result failed), then the worker was killed; nothing counted."""
    with running_executor(monkeypatch, {"nap": NAP}) as (ex, results, turn):
        real = ex.workers[0]
        pid, own_link = real.pid, real.identity
        confused = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        confused.settimeout(10)
        try:
            confused.connect(ex._endpoint)
            confused.sendall(pack(READY, json.dumps({"wid": 0, "pid": pid}).encode()))
            wait_until(lambda: turn() or real.identity not in (None, own_link), timeout=10,
                       interval=0)
            ex.submit(Execute(ME, 1, "nap", "r1", 1, {"s": 0}, 10_000), "m", time.monotonic())
            kind, body = recv_msg(confused)  # the run went to the confused link
            assert kind == RUN and json.loads(body)[0] == "r1"
            with caplog.at_level(logging.WARNING, logger="clerk.executor"):
                confused.sendall(pack(DONE, json.dumps(["r0", "ok", {"s": 9}, 1.0, ""])
                                      .encode()))
                wait_until(lambda: turn() or len(results) == 1, timeout=5, interval=0)
            [(_, result)] = results
            assert (result.run_id, result.outcome, result.state) == ("r1", "error", None)
            assert "answered run 'r0' while it held run 'r1'" in result.error, result.error
            [line] = [r.getMessage() for r in caplog.records if "answered run" in r.getMessage()]
            assert "worker-0" in line and "'r0'" in line and "r1" in line, line
            assert ex.stats()["stray_dones"] == 1 and ex.stats()["restarts"] == 1
            # Not left in a wrong state: a new worker takes the next run and runs it.
            wait_until(lambda: turn() or (real.identity is not None and real.pid != pid),
                       timeout=20, interval=0)
            ex.submit(Execute(ME, 1, "nap", "r2", 2, {"s": 0}, 10_000), "m", time.monotonic())
            wait_until(lambda: turn() or len(results) == 2, timeout=10, interval=0)
            assert (results[1][1].run_id, results[1][1].outcome) == ("r2", "ok")
        finally:
            confused.close()
