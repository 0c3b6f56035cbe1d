"""The agent's side of a worker link (clerk._executor), without worker processes: the RUN body
it writes and what it does with a message from a worker that is not a reply."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from types import MethodType, SimpleNamespace
from typing import Any

import pytest

from clerk._executor import Executor
from clerk._messages import Execute, Peer
from clerk._tasks import TaskDef
from clerk._worker import _run_message
from clerk._workerdeaths import WorkerDeaths
from clerk._workerlink import DONE, READY, RUN_FIELDS, Reader, pack

ME = Peer("a@127.0.0.1", "127.0.0.1:1", "inc", 0)
NODE = "n2@127.0.0.1"


def _old_payload(msg: Execute, d: TaskDef) -> dict[str, Any]:
    """The RUN body as Executor._start wrote it before, as a dict."""
    return {"run": msg.run_id, "task": msg.task, "target": d.target, "slot": msg.slot,
            "term": msg.term, "node": NODE, "state": msg.state, "init": msg.init,
            "due_ms": msg.due_ms, "timezone": d.timezone,
            "deadline_ms": msg.deadline_ms, "interval_ms": d.interval,
            "slot_due_ms": msg.due_ms}  # (review13: the due time as sent, when not moved)


def _fake(defs: dict[str, TaskDef]) -> Any:
    return SimpleNamespace(defs=defs, _run_tail={}, node=NODE, _sent_due=None)


@pytest.mark.parametrize("msg", [
    Execute(ME, 3, "poll", "a1b2-17/3/n1~1234.0badf00d", 101, {"dir": "/tmp/é"}, 5000,
            False, 1_764_770_000_000, 1_764_770_005_000),
    Execute(ME, 1, "poll", 'odd, "run"\n', 0, None, 100, True, 0, 0),
    Execute(ME, 2, "poll", "r", 7, [1, 2.5], 100, False, 1_764_770_000_000.5,  # type: ignore[arg-type]
            0),
    Execute(ME, 2, "poll", "r", 7, "s", 100, 1, 5, 6),  # type: ignore[arg-type]
])
def test_the_run_body_is_the_object_it_was_as_an_array(msg: Execute) -> None:
    defs = {"poll": TaskDef(name="poll", target="m:C", interval=1000)}
    fake = _fake(defs)
    body = Executor._run_body(fake, msg)
    values = json.loads(body)
    assert len(values) == len(RUN_FIELDS)
    assert dict(zip(RUN_FIELDS, values, strict=True)) == _old_payload(msg, defs["poll"])
    assert Executor._run_body(fake, msg) == body  # (its task's part, remembered)


def test_the_run_body_carries_the_due_time_its_manager_sent() -> None:
    """review13: a run whose times this node moved into its own time base (clerk._clockskew)
    starts at the moved due time; ``slot_due_ms``, what current_run().due shows, is the
    slot's time as sent (tests/integration/test_review13_skew_due.py)."""
    msg = Execute(ME, 3, "poll", "r", 1, None, 5000, False, 1_764_770_000_000 - 1998,
                  1_764_770_005_000 - 1998)
    fake = _fake({"poll": TaskDef(name="poll", target="m:C", interval=1000)})
    fake._sent_due = {"r": 1_764_770_000_000}.get
    got = dict(zip(RUN_FIELDS, json.loads(Executor._run_body(fake, msg)), strict=True))
    assert got["due_ms"] == 1_764_770_000_000 - 1998
    assert got["slot_due_ms"] == 1_764_770_000_000


def test_the_run_body_follows_a_changed_definition() -> None:
    msg = Execute(ME, 3, "poll", "r", 1, None, 5000, False, 1000, 2000)
    fake = _fake({"poll": TaskDef(name="poll", target="m:C", interval=1000)})
    Executor._run_body(fake, msg)
    fake.defs["poll"] = TaskDef(name="poll", target="m:D", interval=None, cron="* * * * *",
                                timezone="Europe/Berlin")
    values = json.loads(Executor._run_body(fake, msg))
    assert dict(zip(RUN_FIELDS, values, strict=True)) == _old_payload(msg, fake.defs["poll"])


def test_a_worker_runs_the_body_the_agent_writes() -> None:
    d = TaskDef(name="poll", target="tests.unit.test_worker_run:Echo", interval=None,
                timezone="Asia/Kolkata")
    msg = Execute(ME, 3, "poll", "r-9", 7, {"n": 1}, 5000, False, 1_764_640_000_250, 0)
    reply, _ = _run_message(Executor._run_body(_fake({"poll": d}), msg), {})
    assert reply["outcome"] == "ok", reply["error"]
    assert reply["run"] == "r-9" and reply["state"] == {
        "state": {"n": 1}, "run": ["poll", 7, 3, NODE],
        "due": "2025-12-02T07:16:40.250000+05:30"}


def _link_fake(workers: dict[int, Any] | None = None) -> Any:
    """An Executor's state for ``_on_link`` alone: its replies recorded, no worker pool."""
    fake = SimpleNamespace(workers=workers or {}, malformed=0, executed=0, queue=[],
                           _malformed_quiet_until=-math.inf, _now=time.monotonic, replies=[],
                           stray_dones=0, replaced=[], _check_capacity=lambda: None,
                           deaths=WorkerDeaths(intensity=10, period=60))
    fake._malformed = MethodType(Executor._malformed, fake)
    fake._on_done = MethodType(Executor._on_done, fake)
    fake._end_malformed = MethodType(Executor._end_malformed, fake)
    fake._reply = lambda job, *rest: fake.replies.append((job.msg.run_id, *rest))
    fake._refuse_stale = lambda job, why: fake.replies.append((job.msg.run_id, "stale", why))
    if hasattr(Executor, "_stray_done"):
        fake._stray_done = MethodType(Executor._stray_done, fake)

    def replace(worker: Any) -> None:  # (Executor._replace_worker, without a pool)
        fake.replaced.append(worker.wid)
        worker.job = worker.identity = worker.pid = None

    fake._replace_worker = replace
    return fake


@pytest.mark.timeout(10)
def test_a_malformed_message_from_a_worker_is_dropped() -> None:
    """Not JSON, not UTF-8, not an object, nested past the decoder's recursion, a reply from
    a connection no worker holds: each is dropped, none raises out of the agent's loop."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    fake = _link_fake()
    try:
        reader = Reader(a)
        for body in (b"{", b"\xff\xfe", b"[1]", b"[" * 30_000, b'{"run": "r"}',
                     b'{"wid": 5, "pid": 1}', b'{"wid": "x"}', b'["r", "ok", null, 1.0, ""]'):
            b.sendall(pack(DONE, body) + pack(READY, body))
            Executor._on_link(fake, reader)
    finally:
        a.close()
        b.close()
    assert fake.replies == [] and fake.malformed > 0


def _running(sock: socket.socket, run_id: str) -> dict[int, Any]:
    msg = Execute(ME, 3, "poll", run_id, 7, None, 5000, False, 0, 0)
    job = SimpleNamespace(msg=msg)
    return {0: SimpleNamespace(wid=0, identity=sock, pid=4242, job=job)}


def _done(fake: Any, a: socket.socket, b: socket.socket, body: bytes) -> None:
    b.sendall(pack(DONE, body))
    Executor._on_link(fake, Reader(a))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("body", [
    json.dumps(["r-1", "ok", {"n": 1}, 0.25, ""]).encode(),  # this worker's array
    json.dumps({"run": "r-1", "outcome": "ok", "state": {"n": 1}, "duration_ms": 0.25,
                "error": ""}).encode(),  # an earlier worker's object
])
def test_a_done_is_read_as_the_array_or_an_earlier_workers_object(body: bytes) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    try:
        fake = _link_fake(_running(a, "r-1"))
        _done(fake, a, b, body)
        assert fake.replies == [("r-1", "ok", {"n": 1}, "", 0.25)]
        assert fake.executed == 1 and fake.workers[0].job is None and fake.malformed == 0
    finally:
        a.close()
        b.close()


SHAPE = ("neither an array of the 5 fields (run, outcome, state, duration_ms, error) nor an "
         "object with them")


@pytest.mark.timeout(10)
def test_a_done_in_neither_form_fails_its_run_saying_what_it_was(
        caplog: pytest.LogCaptureFixture) -> None:
    """The worker answered its run: the run is over, failed at once with what the reply was
    (before, it was only dropped, and the run waited for its timeout with its worker's slot
    held; this test failed on main: no reply, the job still held)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    try:
        fake = _link_fake(_running(a, "r-1"))
        with caplog.at_level(logging.WARNING, logger="clerk.executor"):
            _done(fake, a, b, b'["r-1", "ok", null]')
            _done(fake, a, b, b'"r-1"')  # counted, not logged again within MALFORMED_LOG_S
        # The second holds no run any more: counted, nothing to end.
        assert fake.replies == [("r-1", "error", None, "worker process 4242 answered the run "
                                 f"with a malformed reply ({SHAPE}: an array of 3 items)")]
        assert fake.workers[0].job is None and fake.executed == 1 and fake.malformed == 2
        [line] = [r.getMessage() for r in caplog.records]
        assert SHAPE in line and "an array of 3 items" in line and "pid 4242" in line
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("body", [
    b'["r-1", "ok", {"n": NaN}, 0.25, ""]', b'["r-1", "ok", {"n": 1}, Infinity, ""]',
    b'["r-1", "ok", {"n": 1}, 0.25, ', b'["r-1", "ok", \xff, 0.25, ""]',
    b'["r-1", "ok", {"n": 1e400}, 0.25, ""]', b'["r-1", "ok", null, 1e400, ""]',
])
def test_a_done_that_is_not_json_fails_its_run_with_the_parse_error(
        body: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Not JSON (truncated, not UTF-8, or a number that is not finite, which json reads by
    default: a state holding NaN went on to the manager as the run's new state before):
    counted and logged, and the run fails at once with the parse error, no state taken
    (before, it waited for its timeout: this test failed on main)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    try:
        fake = _link_fake(_running(a, "r-1"))
        with caplog.at_level(logging.WARNING, logger="clerk.executor"):
            _done(fake, a, b, body)
        assert fake.malformed == 1 and fake.workers[0].job is None
        [(run, outcome, state, error)] = fake.replies
        assert (run, outcome, state) == ("r-1", "error", None)
        assert error.startswith("worker process 4242 answered the run with a malformed reply "
                                "(not JSON: ")
        [line] = [r.getMessage() for r in caplog.records]
        assert "not JSON" in line and "pid 4242" in line
        if b"NaN" in body or b"Infinity" in body or b"1e400" in body:
            assert "is not a finite number" in line and "is not a finite number" in error
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("fields", "named"), [
    (["r-1", "done", None, 1.0, ""], "outcome 'done'"),
    (["r-1", ["ok"], None, 1.0, ""], "outcome ['ok']"),
    (["r-1", "ok", None, "1.5", ""], "duration_ms '1.5'"),
    (["r-1", "ok", None, None, ""], "duration_ms None"),
    (["r-1", "ok", None, True, ""], "duration_ms True"),
    (["r-1", "error", None, 1.0, ["x"]], "error ['x']"),
    ({"run": "r-1", "outcome": "ok", "duration_ms": "x"}, "duration_ms 'x'"),
])
def test_a_malformed_done_for_the_run_fails_it_naming_the_field(fields: Any,
                                                                 named: str) -> None:
    """The worker's run is over either way: the run fails with an error naming what was
    wrong (an earlier agent raised out of its loop on a duration that was not a number)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    try:
        fake = _link_fake(_running(a, "r-1"))
        _done(fake, a, b, (fields if isinstance(fields, str) else json.dumps(fields)).encode())
        [(run, outcome, state, error)] = fake.replies
        assert (run, outcome, state) == ("r-1", "error", None)
        assert f"worker process 4242 answered the run with a malformed reply ({named})" == error
        assert fake.workers[0].job is None and fake.malformed == 1
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("held", "answered"), [("r-1", "r-0"), (None, "r-0"), ("r-1", 17)])
def test_a_done_for_a_run_the_worker_does_not_hold_is_logged_counted_and_ends_the_worker(
        held: str | None, answered: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A worker takes one run at a time and answers it: a DONE naming another run (or none
    held) means its exchange with the agent is out of step. Logged (worker, expected, got),
    counted (``stray_dones``), the held run failed at once, the worker replaced. On main the
    DONE was dropped silently: no line, no count, the run held until its timeout."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    try:
        workers = _running(a, held or "x")
        workers[0].child = "worker-0"
        if held is None:
            workers[0].job = None
        fake = _link_fake(workers)
        with caplog.at_level(logging.WARNING, logger="clerk.executor"):
            _done(fake, a, b, json.dumps([answered, "ok", {"n": 1}, 0.25, ""]).encode())
        [line] = [r.getMessage() for r in caplog.records]
        assert "worker-0" in line and "pid 4242" in line and repr(answered) in line, line
        assert (f"run {held!r}" if held else "no run") in line, line
        assert fake.stray_dones == 1 and fake.replaced == [0] and fake.executed == 0
        assert fake.workers[0].job is None and fake.malformed == 0
        if held is None:
            assert fake.replies == []
        else:
            [(run, outcome, state, error)] = fake.replies
            assert (run, outcome, state) == (held, "error", None)
            assert error == (f"worker process 4242 answered run {answered!r} while it held "
                             f"run {held!r}: the worker was replaced")
    finally:
        a.close()
        b.close()
