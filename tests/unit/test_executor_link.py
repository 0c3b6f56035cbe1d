"""The agent's side of a worker link (clerk._executor), without worker processes: the RUN body
it writes and what it does with a message from a worker that is not a reply."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from clerk._executor import Executor
from clerk._messages import Execute, Peer
from clerk._tasks import TaskDef
from clerk._worker import _run_message
from clerk._workerlink import DONE, READY, RUN_FIELDS, Reader, pack

ME = Peer("a@127.0.0.1", "127.0.0.1:1", "inc", 0)
NODE = "n2@127.0.0.1"


def _old_payload(msg: Execute, d: TaskDef) -> dict[str, Any]:
    """The RUN body as Executor._start wrote it before, as a dict."""
    return {"run": msg.run_id, "task": msg.task, "target": d.target, "slot": msg.slot,
            "term": msg.term, "node": NODE, "state": msg.state, "init": msg.init,
            "due_ms": msg.due_ms, "timezone": d.timezone,
            "deadline_ms": msg.deadline_ms, "interval_ms": d.interval}


def _fake(defs: dict[str, TaskDef]) -> Any:
    return SimpleNamespace(defs=defs, _run_tail={}, node=NODE)


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


@pytest.mark.timeout(10)
def test_a_malformed_message_from_a_worker_is_dropped() -> None:
    """Not JSON, not UTF-8, not an object, nested past the decoder's recursion, a reply from
    a connection no worker holds: each is dropped, none raises out of the agent's loop."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    fake = SimpleNamespace(workers={})
    try:
        reader = Reader(a)
        for body in (b"{", b"\xff\xfe", b"[1]", b"[" * 30_000, b'{"run": "r"}',
                     b'{"wid": 5, "pid": 1}'):
            b.sendall(pack(DONE, body) + pack(READY, body))
            Executor._on_link(fake, reader)  # type: ignore[arg-type]
    finally:
        a.close()
        b.close()
