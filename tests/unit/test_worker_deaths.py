"""A worker that dies holding a run is that run's failure, not the pool's (clerk._workerdeaths):
the run fails, the worker is replaced, the pool does not give up, and the task is held back on
the node for a pause that doubles while it keeps killing workers. A worker that dies without a
run still counts toward the pool's give-up. The accounting alone, then a real Executor whose
workers are test sockets and whose supervisor is a fake (no process)."""

from __future__ import annotations

import json
import select
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import clerk._workerpool
from clerk._executor import Executor
from clerk._messages import Execute, Result
from clerk._workerdeaths import HOLD_FIRST_S, HOLD_MAX_S, WorkerDeaths
from clerk._workerlink import READY, RUN, pack, recv_msg
from supervisor import Event, ExitReason
from tests.unit.test_executor_exit import DEFS, ME, _Sup

pytestmark = pytest.mark.timeout(30)


def test_deaths_in_runs_never_give_up_and_hold_the_task_back_doubling() -> None:
    d = WorkerDeaths(intensity=10, period=60)
    holds = [d.died_in_run("poison", float(i), "exited") for i in range(1000)]
    assert holds[:4] == [HOLD_FIRST_S, 2 * HOLD_FIRST_S, 4 * HOLD_FIRST_S, 8 * HOLD_FIRST_S]
    assert max(holds) == HOLD_MAX_S and d.in_run == 1000
    assert d.died_idle(1000.0)  # the first death without a run: well within the intensity
    assert "killed its worker process 1000 times in a row" in d.holding("poison", 1000.0)
    assert d.holding("other", 1000.0) == ""
    d.answered("poison")  # a worker answered a run of it: the hold ends
    assert d.holding("poison", 1000.0) == "" and d.refused == 1
    assert d.died_in_run("poison", 1001.0, "exited") == HOLD_FIRST_S  # counted afresh


def test_a_hold_ends_when_its_pause_is_over() -> None:
    d = WorkerDeaths(intensity=10, period=60)
    d.died_in_run("t", 5.0, "worker process 7 exited during the run: abnormal (exit code 1)")
    why = d.holding("t", 5.1)
    assert "killed its worker process once" in why and "exit code 1" in why
    assert d.holding("t", 5.0 + HOLD_FIRST_S) == ""


def test_deaths_without_a_run_give_up_past_the_intensity_in_the_period() -> None:
    d = WorkerDeaths(intensity=3, period=60)
    assert [d.died_idle(t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    d = WorkerDeaths(intensity=3, period=60)
    assert all(d.died_idle(t * 61.0) for t in range(20))  # spread out: never


@pytest.mark.parametrize("bad", [{"intensity": -1, "period": 60},
                                 {"intensity": True, "period": 60},
                                 {"intensity": 3, "period": 0}])
def test_bad_settings_are_named(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="intensity|period"):
        WorkerDeaths(**bad)


# --- a real Executor -------------------------------------------------------------------------

class _Pool:
    def __init__(self, ex: Executor, readers: dict[int, Any], clock: list[float],
                 results: list[Result], failed: list[str]) -> None:
        self.ex, self.readers, self.clock, self.results, self.failed = (
            ex, readers, clock, results, failed)
        self.links: list[socket.socket] = []
        self.pid = 100

    def turn(self, until: Any) -> None:
        for _ in range(200):
            for fd in select.select(list(self.readers), [], [], 0.02)[0]:
                if fd in self.readers:
                    self.readers[fd]()
            if until():
                return
        raise AssertionError("the executor did not get there")

    def worker_up(self) -> socket.socket:
        """The current child of worker 0 connects and says ready."""
        self.pid += 1
        link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        link.settimeout(5)
        self.links.append(link)
        link.connect(self.ex._endpoint)
        w = self.ex.workers[0]
        link.sendall(pack(READY, json.dumps({"wid": 0, "pid": self.pid,
                                             "child": w.child}).encode()))
        self.turn(lambda: w.identity is not None)
        return link

    def worker_dies(self, reason: ExitReason | None = None) -> None:
        """Worker 0's current child exits (the supervisor's thread says so)."""
        w = self.ex.workers[0]
        self.ex._hook(Event(kind="exit", supervisor="s", child_id=w.child, pid=self.pid,
                            reason=reason))
        assert select.select([self.ex._events_r], [], [], 5)[0]
        self.ex._on_worker_events()
        for t in self.ex._killers:  # the replacement's start_child, on its helper thread
            t.join(5)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Pool]:
    monkeypatch.setattr(clerk._workerpool, "Supervisor", _Sup)
    readers: dict[int, Any] = {}
    results: list[Result] = []
    failed: list[str] = []
    clock = [0.0]
    ex = Executor(node="a@127.0.0.1", defs=DEFS, workers=1,
                  add_reader=lambda fd, cb: readers.__setitem__(fd, cb),
                  remove_reader=lambda fd: readers.pop(fd, None),
                  send_result=lambda r, to: results.append(r), me=lambda: (ME, 1),
                  now=lambda: clock[0], log_level="warning", on_failed=failed.append)
    p = _Pool(ex, readers, clock, results, failed)
    try:
        yield p
    finally:
        for link in p.links:
            link.close()
        ex.close()


def _execute(run: str) -> Execute:
    return Execute(ME, 1, "t", run, 1, {"n": 0}, 5_000)


def test_workers_dying_in_runs_fail_those_runs_and_never_the_pool(pool: _Pool) -> None:
    """Three times the pool's intensity (10 for one worker) of workers that die in a run: each
    run fails naming the exit, each worker is replaced (start_child of a new child, the old one
    a temporary child the supervisor does not restart), the pool never gives up, and runs of
    the task that come while it is held back are refused without a worker. On main the
    supervisor restarted and counted each (permanent children): the 11th made it give up;
    the executor started no worker itself."""
    ex = pool.ex
    assert ex._spec("worker-0", 0).restart == "temporary"
    link = pool.worker_up()
    for i in range(30):
        pool.clock[0] = 1000.0 * (i + 1)  # each hold is over by the next run
        ex.submit(_execute(f"r{i}"), "m", pool.clock[0])
        kind, body = recv_msg(link)
        assert kind == RUN and json.loads(body)[0] == f"r{i}"
        old = ex.workers[0].child
        pool.worker_dies()
        result = pool.results[-1]
        assert (result.run_id, result.outcome) == (f"r{i}", "error")
        assert f"worker process {pool.pid} exited during the run" in result.error
        assert ex.workers[0].child != old
        assert ex.sup.calls[-1] == ("start", ex.workers[0].child)  # type: ignore[attr-defined]
        # held back: a run now is refused, no worker taken
        ex.submit(_execute(f"h{i}"), "m", pool.clock[0] + 0.01)
        held = pool.results[-1]
        assert (held.run_id, held.outcome) == (f"h{i}", "refused"), held
        assert "killed its worker process" in held.error
        link = pool.worker_up()
    assert pool.failed == [] and not ex.failed
    stats = ex.stats()
    assert stats["died_in_run"] == 30 and stats["held_back"] == 30 and stats["died_idle"] == 0


def test_workers_dying_without_a_run_still_give_up(pool: _Pool) -> None:
    """More than max(10, 5 * workers) workers that die idle in 60 s: the pool gives up and
    the agent is told (it escalates). On main the executor left this to the supervisor's
    intensity and counted nothing: with the library's restarts out of the picture (here a
    fake), nothing gave up."""
    ex = pool.ex
    for i in range(11):
        pool.worker_up()
        pool.clock[0] = float(i)
        pool.worker_dies()
    assert len(pool.failed) == 1 and "worker supervisor gave up" in pool.failed[0]
    assert "more than 10 workers died without a run in 60 s" in pool.failed[0]
    assert ex.stats()["died_idle"] == 11
    starts = [c for c in ex.sup.calls if c[0] == "start"]  # type: ignore[attr-defined]
    assert len(starts) == 10  # the one too many is not replaced: the agent escalates
    ex.submit(_execute("late"), "m", 11.0)
    assert pool.results[-1].outcome == "refused" and "is gone" in pool.results[-1].error


def test_a_run_queued_before_its_task_killed_a_worker_is_held_back_too(pool: _Pool) -> None:
    """Runs of the task queued behind the one that killed the worker do not each kill the next
    worker: they are refused once its hold has begun (on main they ran, one death each)."""
    ex = pool.ex
    link = pool.worker_up()
    ex.submit(_execute("r0"), "m", 0.0)
    assert json.loads(recv_msg(link)[1])[0] == "r0"
    ex.submit(_execute("q1"), "m", 0.0)  # queued: the only worker holds r0
    assert ex.stats()["queued"] == 1
    pool.worker_dies()
    pool.worker_up()  # the replacement is ready: the queue is pumped
    assert [(r.run_id, r.outcome) for r in pool.results] == [("r0", "error"), ("q1", "refused")]
    assert "killed its worker process once" in pool.results[-1].error
    assert ex.workers[0].job is None and not ex.busy()


def test_a_worker_that_cannot_start_is_tried_after_each_pause_then_the_pool_gives_up(
        pool: _Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose process exits before its READY, every time (a site hook that fails):
    each try waits the next of START_RETRY_PAUSES, and after the last the pool gives up
    once, naming the exit, with no worker ever ready (its agent then exits EXIT_CANNOT_START,
    not retried). On main each replacement started at once and the pool gave up only past the
    intensity, 10 deaths, each try logged by the supervisor: a fresh agent took ~10 s to
    reach that, longer than the node's own intensity counts, so a node looped for good."""
    pauses = (0.2, 0.3, 0.4)
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", pauses)
    ex = pool.ex
    waited = []
    for i in range(len(pauses) + 1):
        before = time.monotonic()
        pool.worker_dies()  # (joins the helper thread: the pause, then its start_child)
        waited.append(time.monotonic() - before)
        starts = [c for c in ex.sup.calls if c[0] == "start"]  # type: ignore[attr-defined]
        if i < len(pauses):
            assert starts[-1] == ("start", ex.workers[0].child), ex.sup.calls  # type: ignore
            assert pool.failed == []
    assert all(w >= p for w, p in zip(waited, pauses, strict=False)), waited
    assert len(starts) == len(pauses)  # the last death is not replaced: the pool gave up
    assert len(pool.failed) == 1 and ex.failed and not ex.ever_ready
    assert ("could not start a worker: its process exited before it was ready, 4 times in "
            "a row (the last: worker-0-3") in pool.failed[0]


def test_a_ready_worker_begins_the_count_of_failed_starts_again(
        pool: _Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (0.0, 0.0))
    for _ in range(3):  # two failed starts, a worker that says ready, and it dies idle
        pool.worker_dies()
        pool.worker_dies()
        pool.worker_up()
        pool.worker_dies()
    assert pool.failed == [] and pool.ex.ever_ready and pool.ex.workers[0].start_failures == 0


def _link_closes(pool: _Pool, link: socket.socket) -> None:
    """Worker 0's process is gone: its link's EOF is read before the supervisor's exit event
    (the kernel closes the socket at the death; the event takes the supervisor's thread and
    the events socket), as the agent's loop often reads them."""
    link.close()
    pool.turn(lambda: pool.ex.workers[0].identity is None)


def test_a_ready_worker_whose_link_closed_first_did_not_fail_its_start(
        pool: _Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that said READY and dies idle is replaced at once and counts no failed start,
    whichever of its link's EOF and its exit event the loop reads first. On main the EOF first
    (``_drop_link``: no identity any more) made it look like a start that failed: its
    replacement waited the first of START_RETRY_PAUSES and the count began at 1."""
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (1.0, 1.0, 1.0))
    _link_closes(pool, pool.worker_up())
    before = time.monotonic()
    pool.worker_dies()
    assert time.monotonic() - before < 0.5  # replaced without the pause of a failed start
    assert pool.ex.workers[0].start_failures == 0 and pool.failed == []


def test_a_pool_gives_up_after_four_failed_starts_not_three(
        pool: _Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ready worker dies idle (its link's EOF read first), then its replacement fails to
    start three times: one try is left (1 + len(START_RETRY_PAUSES) tries of a start). On main
    the idle death counted as the first failed start, and the third real one gave up."""
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (0.0, 0.0, 0.0))
    _link_closes(pool, pool.worker_up())
    pool.worker_dies()  # a ready worker's death: not a failed start
    for _ in range(3):
        pool.worker_dies()  # three failed starts
    assert pool.failed == [] and pool.ex.workers[0].start_failures == 3
    pool.worker_dies()  # the fourth
    assert len(pool.failed) == 1 and "4 times in a row" in pool.failed[0]


def test_workers_killed_from_outside_before_their_ready_are_not_failed_starts(
        pool: _Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """review14: a new worker SIGKILLed (or SIGTERMed) before its READY, by the OOM killer, an
    operator or a chaos tool, could start: it is an idle death, replaced at once and counted by
    the pool's intensity, and a pool that gives up on those did not fail to start workers
    (``start_gave_up`` False: its agent exits EXIT_WORKERS_GONE and the node starts it again,
    not EXIT_CANNOT_START, which stops the node for good). Before, the fourth such kill in a
    row gave up as "could not start a worker" after the pauses, and the node stopped."""
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (1.0, 1.0, 1.0))
    for sig in (signal.SIGKILL, signal.SIGTERM) * 2:
        before = time.monotonic()
        pool.worker_dies(ExitReason.from_returncode(-sig))
        assert time.monotonic() - before < 0.5  # replaced without a failed start's pause
    assert pool.ex.workers[0].start_failures == 0 and pool.failed == []
    for _ in range(20):  # killed as they come: the pool's intensity gives up, as for any
        pool.worker_dies(ExitReason.from_returncode(-signal.SIGKILL))  # idle deaths
        if pool.failed:
            break
    assert len(pool.failed) == 1 and "died without a run" in pool.failed[0], pool.failed
    assert not pool.ex.start_gave_up and not pool.ex.ever_ready


@pytest.mark.parametrize("code", [1, -signal.SIGSEGV, -signal.SIGABRT])
def test_a_worker_that_exits_or_crashes_by_itself_before_its_ready_failed_to_start(
        pool: _Pool, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Its own exit code, or a crash of its own (a broken C extension): starting one again
    would fail the same way: the pool gives up after the tries, ``start_gave_up``."""
    monkeypatch.setattr(clerk._workerpool, "START_RETRY_PAUSES", (0.0, 0.0, 0.0))
    for _ in range(4):
        pool.worker_dies(ExitReason.from_returncode(code))
    assert len(pool.failed) == 1 and "4 times in a row" in pool.failed[0]
    assert pool.ex.start_gave_up and not pool.ex.ever_ready
