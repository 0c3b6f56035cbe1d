"""Pipelining's rules (clerk._prefetch) in a real Executor whose workers are test sockets: no
worker process, no supervisor, a fake clock. Each "worker" is the far end of a link: the test
reads the RUNs the agent writes and answers with DONEs (or closes it, as a killed worker)."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import clerk._executor
from clerk._executor import Executor
from clerk._messages import Execute, Peer, Result
from clerk._prefetch import PREFETCH_SHORT_MS
from clerk._tasks import TaskDef
from clerk._workerlink import DONE, READY, RUN, pack, recv_msg
from supervisor import Event

ME = Peer("a@127.0.0.1", "127.0.0.1:1", "inc", 0)
WALL0 = 1_764_000_000.0
DEFS = {name: TaskDef(name=name, target="m:C", interval=60_000, timeout=1_000)
        for name in ("t0", "t1", "t2", "t3", "long")}


class _Sup:
    """The worker supervisor, doing nothing: the test plays the workers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.calls: list[tuple[str, str]] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def start_child(self, spec: Any) -> None:
        self.calls.append(("start", spec.id))

    def terminate_child(self, child: str) -> None:
        self.calls.append(("terminate", child))

    def delete_child(self, child: str) -> None: ...


class Pool:
    """An executor with ``workers`` test links, each said ready; a fake clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, workers: int, prefetch: int) -> None:
        monkeypatch.setattr(clerk._executor, "Supervisor", _Sup)
        self.mono, self.wall = 1000.0, WALL0
        self.readers: dict[int, Any] = {}
        self.results: list[Result] = []
        self.stale: list[tuple[str, str]] = []
        self.ex = Executor(
            node="a@127.0.0.1", defs=DEFS, workers=workers,
            add_reader=lambda fd, cb: self.readers.__setitem__(fd, cb),
            remove_reader=lambda fd: self.readers.pop(fd, None),
            send_result=lambda r, to: self.results.append(r), me=lambda: (ME, 1),
            now=lambda: self.mono, wall=lambda: self.wall, log_level="warning",
            on_stale=lambda msg, why: self.stale.append((msg.run_id, why)), prefetch=prefetch)
        self.links: list[socket.socket] = []
        for wid in range(workers):
            link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            link.settimeout(5)
            link.connect(self.ex._endpoint)
            link.sendall(pack(READY, json.dumps({"wid": wid, "pid": 100 + wid}).encode()))
            self.links.append(link)
        for _ in range(50):
            self.turn()
            if all(w.identity is not None for w in self.ex.workers.values()):
                break
        assert all(w.identity is not None for w in self.ex.workers.values())

    def turn(self, timeout: float = 0.05) -> None:
        """Read what the links have (one poll)."""
        ready, _, _ = select.select(list(self.readers), [], [], timeout)
        for fd in ready:
            callback = self.readers.get(fd)
            if callback is not None:
                callback()

    def submit(self, run: str, task: str = "t0", ahead_ms: float = 10.0,
               timeout_ms: int = 1_000, state: Any = None) -> None:
        due = int((self.wall + ahead_ms / 1000) * 1000)
        self.ex.submit(Execute(ME, 1, task, run, int(run.lstrip("r") or 0) if run[1:].isdigit()
                               else 0, state, timeout_ms, False, due, due + timeout_ms),
                       "m", self.mono)

    def pending(self, wid: int) -> list[str]:
        """The run ids written into worker ``wid``'s link and not read yet (read now)."""
        link = self.links[wid]
        out = []
        link.setblocking(False)
        try:
            while True:
                try:
                    kind, body = recv_msg(link)
                except (BlockingIOError, OSError):
                    break
                assert kind == RUN
                out.append(json.loads(body)[0])
        finally:
            link.settimeout(5)
        return out

    def done(self, wid: int, run: str, duration_ms: float = 0.05,
             outcome: str = "ok") -> None:
        self.links[wid].sendall(pack(DONE, json.dumps([run, outcome, {"n": 1}, duration_ms,
                                                       ""]).encode()))
        self.turn()

    def outcomes(self) -> dict[str, str]:
        return {r.run_id: r.outcome for r in self.results}

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.ex.close()


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Pool]:
    workers, prefetch = getattr(request, "param", (1, 1))
    p = Pool(monkeypatch, workers, prefetch)
    try:
        yield p
    finally:
        p.close()


def _warm(pool: Pool, task: str = "t0", duration_ms: float = 0.05, wid: int = 0) -> None:
    """One run of ``task`` answered: its duration is known here."""
    pool.submit(f"warm-{task}", task, ahead_ms=0)
    assert pool.pending(wid) == [f"warm-{task}"]
    pool.done(wid, f"warm-{task}", duration_ms)


@pytest.mark.timeout(20)
def test_a_busy_worker_is_sent_its_next_run_ahead_at_most_depth(pool: Pool) -> None:
    _warm(pool)
    pool.submit("r1", ahead_ms=10)
    pool.submit("r2", ahead_ms=12)
    pool.submit("r3", ahead_ms=14)
    assert pool.pending(0) == ["r1", "r2"]  # r2 sent ahead; r3 waits (depth 1)
    st = pool.ex.stats()
    assert (st["queued"], st["ahead"], st["sent_ahead"]) == (1, 1, 1)
    assert [(h["run"], h["ahead"]) for h in st["holding"]["worker-0"]] == [
        ("r1", False), ("r2", True)]
    assert pool.ex.has_run("r2") and {m.run_id for m in pool.ex.runs_in_flight()} == {
        "r1", "r2", "r3"}
    pool.done(0, "r1")
    # r2 is its run now (it reads it from its link), and r3 goes ahead behind it.
    assert pool.ex.workers[0].job is not None and pool.ex.workers[0].job.msg.run_id == "r2"
    assert pool.pending(0) == ["r3"]
    pool.done(0, "r2")
    pool.done(0, "r3")
    assert pool.outcomes() == {"warm-t0": "ok", "r1": "ok", "r2": "ok", "r3": "ok"}
    assert not pool.ex.busy() and pool.ex.stats()["holding"] == {}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pool", [(1, 0)], indirect=True)
def test_prefetch_0_sends_nothing_ahead(pool: Pool) -> None:
    _warm(pool)
    pool.submit("r1")
    pool.submit("r2", ahead_ms=12)
    assert pool.pending(0) == ["r1"] and pool.ex.stats()["queued"] == 1


@pytest.mark.timeout(20)
def test_nothing_goes_ahead_behind_a_run_of_a_task_not_known_short(pool: Pool) -> None:
    """Not behind a task's first run here, nor one whose last run took long, nor a run going
    longer than a short one: a run waits in the queue for whichever worker is free first."""
    pool.submit("r1", "t1")  # t1 never ran here
    pool.submit("r2", ahead_ms=12)
    assert pool.pending(0) == ["r1"]
    pool.done(0, "r1", duration_ms=PREFETCH_SHORT_MS * 4)  # t1 is long
    assert pool.pending(0) == ["r2"]
    pool.done(0, "r2")
    pool.submit("r3", "t1")
    pool.submit("r4", ahead_ms=12)
    assert pool.pending(0) == ["r3"]
    pool.done(0, "r3", duration_ms=0.05)  # t1 short now
    assert pool.pending(0) == ["r4"]
    pool.submit("r5", ahead_ms=20)
    assert pool.pending(0) == ["r5"]  # behind r4 (t0, short)
    pool.done(0, "r4")
    # r5 runs; it has been going longer than a short run: nothing more goes behind it.
    pool.mono += 0.020 + PREFETCH_SHORT_MS / 1000 * 2
    pool.submit("r6", ahead_ms=5)
    assert pool.pending(0) == [] and pool.ex.stats()["queued"] == 1


@pytest.mark.timeout(20)
def test_a_run_due_now_is_not_put_behind_one_held_for_its_due_time(pool: Pool) -> None:
    _warm(pool)
    pool.submit("r1", ahead_ms=30)
    pool.submit("r2", ahead_ms=0)  # due now: the worker is busy until r1's due time
    assert pool.pending(0) == ["r1"] and pool.ex.stats()["queued"] == 1


@pytest.mark.timeout(20)
def test_a_big_run_is_not_sent_ahead(pool: Pool) -> None:
    _warm(pool)
    pool.submit("r1")
    pool.submit("r2", ahead_ms=12, state={"blob": "x" * (64 << 10)})
    assert pool.pending(0) == ["r1"] and pool.ex.stats()["queued"] == 1


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pool", [(2, 1)], indirect=True)
def test_idle_workers_first(pool: Pool) -> None:
    _warm(pool)
    pool.submit("r1")
    pool.submit("r2", ahead_ms=12)
    assert pool.pending(0) == ["r1"] and pool.pending(1) == ["r2"]
    assert pool.ex.stats()["sent_ahead"] == 0


@pytest.mark.timeout(20)
def test_the_kill_timer_watches_the_run_going_not_the_one_ahead(pool: Pool) -> None:
    """A run sent ahead with a shorter timeout than the one going: its worker is not killed
    at its deadline (it has not started); it is the worker's run once it answers the first,
    and its own timeout counts as for any queued run."""
    _warm(pool)
    pool.submit("r1", ahead_ms=10, timeout_ms=1_000)
    pool.submit("r2", ahead_ms=11, timeout_ms=100)
    assert pool.pending(0) == ["r1", "r2"]
    deadline = pool.ex.next_deadline()
    assert deadline == pytest.approx(pool.mono + 0.010 + 1.0)  # r1's, not r2's (0.111)
    pool.mono += 0.5
    pool.wall += 0.5
    pool.ex.expire(pool.mono)
    assert pool.ex.restarts == 0 and pool.results[1:] == []
    pool.done(0, "r1")
    assert pool.ex.next_deadline() == pytest.approx(pool.mono - 0.5 + 0.011 + 0.1)


def _kill_at_timeout(pool: Pool, wid: int = 0) -> None:
    """Worker ``wid`` holds r1 (t0, its timeout 100 ms) and r2 sent ahead; r1 hangs and is
    killed."""
    _warm(pool, wid=wid)
    pool.submit("r1", ahead_ms=5, timeout_ms=100)
    pool.submit("r2", ahead_ms=10)
    assert pool.pending(wid) == ["r1", "r2"]
    pool.mono += 0.2
    pool.wall += 0.2
    pool.ex.expire(pool.mono)
    assert pool.outcomes()["r1"] == "timeout" and pool.ex.restarts == 1
    # r2 waits for the end of the killed worker's link: still in flight here, not failed.
    assert "r2" not in pool.outcomes() and pool.ex.has_run("r2") and pool.ex.busy()
    assert [h["run"] for h in pool.ex.stats()["holding"]["(a worker being replaced)"]] == ["r2"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pool", [(2, 1)], indirect=True)
def test_a_run_ahead_of_a_worker_killed_at_a_timeout_goes_to_another(pool: Pool) -> None:
    pool.submit("busy", "long", ahead_ms=0, timeout_ms=60_000)  # unknown: nothing behind it
    assert pool.pending(0) == ["busy"]
    _kill_at_timeout(pool, wid=1)
    pool.links[1].close()  # killed: the end of its link, no DONE for r1
    pool.turn()
    assert pool.ex.stats()["requeued"] == 1 and pool.ex.stats()["queued"] == 1
    pool.done(0, "busy")
    assert pool.pending(0) == ["r2"]  # another worker runs it, once
    pool.done(0, "r2")
    assert pool.outcomes()["r2"] == "ok" and pool.ex.stats()["prefetch_lost"] == 0
    assert not pool.ex.busy()


@pytest.mark.timeout(20)
def test_a_run_ahead_past_its_deadline_when_requeued_is_refused_stale(pool: Pool) -> None:
    _kill_at_timeout(pool)
    pool.wall += 5.0  # r2's deadline (its due + 1 s) is past by the time its link ends
    pool.mono += 5.0
    pool.links[0].close()
    pool.turn()
    assert pool.outcomes()["r2"] == "refused" and [r for r, _ in pool.stale] == ["r2"]
    assert not pool.ex.busy()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pool", [(2, 1)], indirect=True)
def test_a_run_ahead_the_killed_worker_may_have_started_fails_not_run_twice(
        pool: Pool) -> None:
    """r1's DONE came after the kill was decided: the worker went on to r2 before the kill
    landed. r2 is failed, saying why, and never sent to another worker."""
    pool.submit("busy", "long", ahead_ms=0, timeout_ms=60_000)
    assert pool.pending(0) == ["busy"]
    _kill_at_timeout(pool, wid=1)
    pool.done(1, "r1", duration_ms=150.0)  # (r1 answered already: its timeout)
    pool.links[1].close()
    pool.turn()
    result = next(r for r in pool.results if r.run_id == "r2")
    assert result.outcome == "error" and "may have started" in result.error, result.error
    assert pool.ex.stats()["prefetch_lost"] == 1 and pool.ex.stats()["requeued"] == 0
    pool.done(0, "busy")
    assert pool.pending(0) == [] and not pool.ex.busy()
    assert [r.run_id for r in pool.results].count("r2") == 1


@pytest.mark.timeout(20)
def test_a_run_ahead_answered_before_the_kill_landed_keeps_its_result(pool: Pool) -> None:
    _kill_at_timeout(pool)
    pool.done(0, "r1", duration_ms=150.0)
    pool.done(0, "r2", duration_ms=0.05)
    pool.links[0].close()
    pool.turn()
    assert pool.outcomes()["r2"] == "ok" and pool.results[-1].state == {"n": 1}
    assert pool.ex.stats()["prefetch_lost"] == 0 and pool.ex.stats()["requeued"] == 0
    assert not pool.ex.busy()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pool", [(2, 1)], indirect=True)
def test_a_worker_that_exits_leaves_its_run_ahead_to_another(pool: Pool) -> None:
    """A crash: its exit is seen (the supervisor's event) before or after its link's end;
    either way the run sent ahead, never started, runs on another worker."""
    pool.submit("busy", "long", ahead_ms=0, timeout_ms=60_000)
    assert pool.pending(0) == ["busy"]
    _warm(pool, wid=1)
    pool.submit("r1", ahead_ms=5)
    pool.submit("r2", ahead_ms=10)
    assert pool.pending(1) == ["r1", "r2"]
    pool.ex._hook(Event(kind="exit", supervisor="s", child_id="worker-1", pid=101,
                        reason=None))
    pool.turn()
    assert pool.outcomes()["r1"] == "error" and pool.ex.stats()["requeued"] == 1
    pool.done(0, "busy")
    assert pool.pending(0) == ["r2"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pool", [(2, 1)], indirect=True)
def test_a_worker_that_answered_then_exited_fails_the_run_it_went_on_to(pool: Pool) -> None:
    """Its DONE of r1 is read before its exit is acted on: r2 was its run (it may have
    started it), so r2 fails with the exit, and is not queued again."""
    pool.submit("busy", "long", ahead_ms=0, timeout_ms=60_000)
    assert pool.pending(0) == ["busy"]
    _warm(pool, wid=1)
    pool.submit("r1", ahead_ms=5)
    pool.submit("r2", ahead_ms=10)
    assert pool.pending(1) == ["r1", "r2"]
    pool.links[1].sendall(pack(DONE, json.dumps(["r1", "ok", None, 0.05, ""]).encode()))
    pool.ex._hook(Event(kind="exit", supervisor="s", child_id="worker-1", pid=101,
                        reason=None))
    pool.ex._on_worker_events()
    assert pool.outcomes() == {"warm-t0": "ok", "r1": "ok", "r2": "error"}
    assert "exited during the run" in pool.results[-1].error
    assert pool.ex.stats()["requeued"] == 0
