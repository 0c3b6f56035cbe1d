"""A worker that died on its own just as its run's timeout fired, with a real executor, a
real supervisor and real worker processes. Before the workers were ``temporary`` children, the
supervisor restarted the dead child and the executor's timeout path replaced it too
(``start_child`` of a new child id, then ``terminate_child`` of the old one, on a helper
thread): for a moment two processes said ready as the same worker. Now the supervisor does
not restart it (clerk._workerdeaths); the timeout's replacement is the one process, and the
old child's exit, seen late, starts no other. The test orders what the helper thread and the
agent's loop do, which a loaded machine can do on its own."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import threading
import time
from typing import Any

import pytest

import clerk
from clerk._messages import Execute
from clerk.testing import wait_until
from tests.integration.test_executor_queue import ME, running_executor

NAP = clerk.task("tests.integration.cluster_tasks:Nap", name="nap", interval=60_000,
                 timeout=1_000)


def _peer_pid(conn: socket.socket) -> int:
    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", cred)[0])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _child_pid(ex: Any, child: str) -> int | None:
    return next((c.pid for c in ex.sup.which_children() if c.id == child), None)


@pytest.mark.timeout(90)
def test_a_worker_dead_at_its_timeout_is_replaced_by_one_process_the_agent_uses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On main the supervisor's restart of the dead child said ready after the replacement
    did, took the worker's place, and was then terminated as the old child: worker 0 had no
    link (the next run timed out, "no free worker") while the replacement ran on, linked to
    nothing."""
    with running_executor(monkeypatch, {"nap": NAP}) as (ex, results, turn):
        worker = ex.workers[0]
        p1 = worker.pid
        assert p1 is not None
        go, started = threading.Event(), []
        start_child, terminate_child = ex.sup.start_child, ex.sup.terminate_child

        def start_then_note(spec: Any) -> int:
            pid = start_child(spec)
            started.append(pid)
            return int(pid)

        def terminate_when_told(child_id: str) -> None:
            assert go.wait(30)
            terminate_child(child_id)

        ex.sup.start_child = start_then_note  # type: ignore[method-assign]
        ex.sup.terminate_child = terminate_when_told  # type: ignore[method-assign]
        ex.submit(Execute(ME, 1, "nap", "r1", 1, {"s": 30}, 1_000), "m", time.monotonic())
        wait_until(lambda: turn() or worker.job is not None, timeout=10, interval=0)
        job = worker.job
        assert job is not None
        os.kill(p1, signal.SIGKILL)  # the task kills its own worker as its timeout fires
        # A temporary child: the supervisor drops it, starts none; the loop has not turned.
        wait_until(lambda: _child_pid(ex, "worker-0") is None, timeout=10)
        ex.expire(job.deadline + 0.001)
        wait_until(lambda: bool(started), timeout=10)
        p3 = started[0]
        links: dict[int, socket.socket] = {}

        def connected() -> bool:
            ex._accept()
            links.update({_peer_pid(c): c for c in ex._links.values()})
            return p3 in links

        wait_until(connected, timeout=20, interval=0.01)
        assert select.select([links[p3]], [], [], 20)[0], f"no ready from {p3}"
        ex._on_link(ex._readers[links[p3].fileno()])
        go.set()  # the helper thread ends the old child now (gone already: nothing to do)
        for _ in range(20):
            turn()
        assert [r.outcome for _, r in results] == ["timeout"]
        assert worker.identity is not None and worker.pid == p3, (worker, p1, p3)
        # The pool's capacity is back: the next run runs.
        ex.submit(Execute(ME, 1, "nap", "r2", 2, {"s": 0}, 1_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=10, interval=0)
        assert (results[1][1].run_id, results[1][1].outcome) == ("r2", "ok"), results[1]
        live = [c.pid for c in ex.sup.which_children() if c.pid is not None]
        assert live == [p3], (live, p1, p3)
    # None left behind once the executor closed (no orphan worker process).
    wait_until(lambda: not any(_alive(pid) for pid in (p1, p3)), timeout=10)
