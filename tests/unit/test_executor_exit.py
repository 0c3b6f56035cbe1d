"""A worker's exit seen before the DONE it wrote just before it: the run ended, and its result
is the DONE's, not "exited during the run". The exit comes from the supervisor's thread over
one socket and the DONE over the worker's link: nothing orders the two in the agent's loop.
A real Executor whose worker is a test socket (no process, no supervisor)."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import clerk._workerpool
from clerk._executor import Executor
from clerk._messages import Execute, Peer, Result
from clerk._tasks import TaskDef
from clerk._workerlink import DONE, READY, RUN, pack, recv_msg
from supervisor import Event

ME = Peer("a@127.0.0.1", "127.0.0.1:1", "inc", 0)
DEFS = {"t": TaskDef(name="t", target="m:C", interval=60_000, timeout=5_000)}


class _Sup:
    """The worker supervisor, doing nothing: the test plays the worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.calls: list[tuple[str, str]] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def start_child(self, spec: Any) -> int:
        self.calls.append(("start", spec.id))
        return 0

    def terminate_child(self, child: str) -> None:
        self.calls.append(("terminate", child))

    def delete_child(self, child: str) -> None:
        self.calls.append(("delete", child))


class Harness:
    """A real Executor (its supervisor the test's fake, patched in by the caller) whose
    workers are test sockets: ``readers`` are the loop's, ``results`` what it sent."""

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        self.readers: dict[int, Any] = {}
        self.results: list[Result] = []
        readers = self.readers
        self.ex = Executor(node="a@127.0.0.1", defs=DEFS, workers=workers,
                           add_reader=lambda fd, cb: readers.__setitem__(fd, cb),
                           remove_reader=lambda fd: readers.pop(fd, None),
                           send_result=lambda r, to: self.results.append(r),
                           me=lambda: (ME, 1), log_level="warning", **kwargs)
        self.links: list[socket.socket] = []

    def turn(self, wait: float = 0.05) -> None:
        """One loop turn: what is readable is read."""
        for fd in select.select(list(self.readers), [], [], wait)[0]:
            if fd in self.readers:
                self.readers[fd]()

    def ready(self) -> list[socket.socket]:
        """Each worker's link connected and READY (pid 100 + wid), the executor's loop
        turned until it took every one."""
        for wid in range(len(self.ex.workers)):
            link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.links.append(link)
            link.settimeout(5)
            link.connect(self.ex._endpoint)
            link.sendall(pack(READY, json.dumps({"wid": wid, "pid": 100 + wid}).encode()))
        for _ in range(100):
            self.turn()
            if all(w.identity is not None for w in self.ex.workers.values()):
                break
        assert all(w.identity is not None for w in self.ex.workers.values())
        return self.links

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.ex.close()


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Executor, socket.socket,
                                                            list[Result]]]:
    monkeypatch.setattr(clerk._workerpool, "Supervisor", _Sup)
    h = Harness()
    try:
        link, = h.ready()
        yield h.ex, link, h.results
    finally:
        h.close()


def _exit_seen(ex: Executor) -> None:
    """worker-0's exit (pid 100) reaches the executor as the supervisor's thread sends it,
    and the executor's loop handles it, before it reads the worker's link."""
    ex._hook(Event(kind="exit", supervisor="s", child_id="worker-0", pid=100, reason=None))
    select.select([ex._events_r], [], [], 5)
    ex._on_worker_events()


@pytest.mark.timeout(20)
def test_a_done_written_before_the_exit_is_the_runs_result(
        pool: tuple[Executor, socket.socket, list[Result]]) -> None:
    """On main the run was answered "error: worker process 100 exited during the run", its
    new state lost, though its worker had answered it ok."""
    ex, link, results = pool
    ex.submit(Execute(ME, 1, "t", "r1", 1, {"n": 0}, 5_000), "m", 0.0)
    kind, body = recv_msg(link)
    assert kind == RUN and json.loads(body)[0] == "r1"
    link.sendall(pack(DONE, json.dumps(["r1", "ok", {"n": 1}, 0.5, ""]).encode()))
    _exit_seen(ex)  # the exit first, the link not read yet
    assert [(r.run_id, r.outcome, r.state) for r in results] == [("r1", "ok", {"n": 1})]
    assert ex.restarts == 1 and not ex.busy()


@pytest.mark.timeout(20)
def test_a_worker_that_exits_without_a_done_fails_its_run(
        pool: tuple[Executor, socket.socket, list[Result]]) -> None:
    ex, link, results = pool
    ex.submit(Execute(ME, 1, "t", "r1", 1, {"n": 0}, 5_000), "m", 0.0)
    assert recv_msg(link)[0] == RUN
    _exit_seen(ex)
    [result] = results
    assert result.outcome == "error" and "exited during the run" in result.error


@pytest.mark.timeout(20)
def test_a_run_given_to_the_worker_after_that_done_waits_for_another(
        pool: tuple[Executor, socket.socket, list[Result]]) -> None:
    """Reading that DONE frees the worker, and the queued run goes to it (on a link still
    open: here the test's; in life a leftover child of the dead worker): it is not failed
    with the exit, it waits in the queue for the next worker."""
    ex, link, results = pool
    ex.submit(Execute(ME, 1, "t", "r1", 1, {"n": 0}, 5_000), "m", 0.0)
    ex.submit(Execute(ME, 1, "t", "r2", 2, {"n": 0}, 5_000), "m", 0.0)
    assert json.loads(recv_msg(link)[1])[0] == "r1"
    link.sendall(pack(DONE, json.dumps(["r1", "ok", {"n": 1}, 0.5, ""]).encode()))
    _exit_seen(ex)
    assert [(r.run_id, r.outcome) for r in results] == [("r1", "ok")]
    assert ex.stats()["queued"] == 1 and ex.has_run("r2")


@pytest.mark.timeout(20)
def test_a_stray_done_read_at_the_exit_replaces_the_worker_once_and_only_its_new_child_counts(
        pool: tuple[Executor, socket.socket, list[Result]]) -> None:
    """The exit's handler reads the dead worker's link first; a stray DONE there replaces the
    worker (worker-0-1). On main that exit also counted a second restart, and a ready from the
    supervisor's own restart of worker-0 (being terminated) took the worker's place."""
    ex, link, results = pool
    ex.submit(Execute(ME, 1, "t", "r1", 1, {"n": 0}, 5_000), "m", 0.0)
    assert json.loads(recv_msg(link)[1])[0] == "r1"
    link.sendall(pack(DONE, json.dumps(["r0", "ok", {"n": 1}, 0.5, ""]).encode()))
    _exit_seen(ex)
    assert [(r.run_id, r.outcome) for r in results] == [("r1", "error")]
    for killer in ex._killers:
        killer.join(5)
    calls = ex.sup.calls  # type: ignore[attr-defined]
    assert calls == [("start", "worker-0-1"), ("terminate", "worker-0")]
    assert ex.stats()["restarts"] == 1 and ex.stats()["stray_dones"] == 1
    worker = ex.workers[0]
    old, new = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2))
    try:
        for conn, child, pid in ((new, "worker-0-1", 102), (old, "worker-0", 101)):
            conn.connect(ex._endpoint)
            conn.sendall(pack(READY, json.dumps({"wid": 0, "pid": pid, "child": child})
                              .encode()))
            select.select([ex._listener], [], [], 5)
            ex._accept()  # then read every link that wrote (only this one did)
            for fd, reader in list(ex._readers.items()):
                if select.select([ex._links[fd]], [], [], 0.2)[0]:
                    ex._on_link(reader)
        assert worker.pid == 102 and worker.child == "worker-0-1"
    finally:
        old.close()
        new.close()
