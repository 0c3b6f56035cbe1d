"""Rows of ``tools/bench_hotpath.py`` for a run's result path (worker -> node -> manager).

* ``DONE read``: the agent's work on a worker's DONE (``Executor._on_done``), once per run on
  every node: a 5-key object decoded and its fields taken with ``str``/``float`` (before)
  against the array of ``DONE_FIELDS`` decoded and its fields checked (after).
* ``DONE body``: the worker writes it, once per run: the object against the array.
* ``encode RESULT`` and ``encode RESULT_ACK``: ``clerk._codec.encode`` of a Stamp run's
  RESULT (a follower, once per run it executes) and of its RESULT_ACK (the manager, once per
  run another node executes): the generic dumper and encoder against ``_WRITERS``.
* ``HeldAck``: the manager's held RESULT_ACK (clerk._resultacks), once per remote run: the
  frozen slotted dataclass it was against the slotted one it is.
* ``outbox add + ack``: a node's outbox (clerk._outbox) at its steady state (full: each add
  forgets the oldest), once per run: the add as it was (two pops first) against now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle
from typing import Any

from clerk import _codec, _worker
from clerk._messages import Peer, Result, ResultAck
from clerk._outbox import KEEP_MAX, Outbox, _Kept
from clerk._resultacks import HeldAck
from clerk._workerlink import DONE_FIELDS, parse

__all__ = ["result_cases"]

_OUTCOMES = frozenset({"ok", "error", "timeout", "refused"})
Case = tuple[str, Callable[[], Any], Callable[[], Any]]


def _old_done(text: str) -> tuple[Any, ...]:
    """The agent's DONE before: an object, its fields taken as they came."""
    data = parse(text)
    if not isinstance(data, dict):
        return ()
    return (data.get("run"), str(data.get("outcome")), data.get("state"),
            str(data.get("error", "")), float(data.get("duration_ms", 0.0)))


def _new_done(text: str) -> tuple[Any, ...]:
    """As ``Executor._on_done`` reads one now (the array; its checks)."""
    data = parse(text)
    if type(data) is list and len(data) == len(DONE_FIELDS):
        run, outcome, state, duration, error = data
    else:
        return ()
    if (outcome not in _OUTCOMES or type(error) is not str
            or type(duration) not in (int, float)):
        return ()
    return run, outcome, state, error, float(duration)


@dataclass(frozen=True, slots=True)
class _FrozenHeldAck:
    to: str
    task: str
    run_id: str
    since: float


class _OldOutbox(Outbox):
    def add(self, result: Result, now: float) -> None:
        self._rows.pop(result.run_id, None)
        self._rows[result.run_id] = _Kept(result, now, now)
        self._open.pop(result.run_id, None)
        self._open[result.run_id] = None
        while len(self._rows) > KEEP_MAX:
            self._open.pop(self._rows.popitem(last=False)[0], None)


def _outbox_pair() -> tuple[Callable[[], Any], Callable[[], Any]]:
    p = Peer("n2@127.0.0.1", "127.0.0.1:47002", "5f0c1a2b3c4d+b", 0)
    results = [Result(p, 3, "t0001", f"a1b2-17/3/n1~{i}", i, "ok", None, 0.1, "")
               for i in range(4 * KEEP_MAX)]

    def pair(box: Outbox) -> Callable[[], Any]:
        for r in results[:KEEP_MAX]:
            box.add(r, 1.0)
        feed = cycle(results[KEEP_MAX:] + results[:KEEP_MAX])

        def step() -> None:
            r = next(feed)
            box.add(r, 2.0)
            box.ack(r.run_id)
        return step

    return pair(_OldOutbox()), pair(Outbox())


def result_cases() -> list[Case]:
    reply = {"run": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "outcome": "ok",
             "state": {"dir": "/tmp/bench"}, "duration_ms": 0.123456, "error": ""}
    state_json = _worker._STATE_DUMP(reply["state"])
    obj = _worker.done_body(reply, state_json, array=False).decode()
    arr = _worker.done_body(reply, state_json).decode()
    assert _old_done(obj) == _new_done(arr) and json.loads(obj) == reply
    p = Peer("n2@127.0.0.1", "127.0.0.1:47002", "5f0c1a2b3c4d+b", 0)
    result = Result(p, 3, "t0001", reply["run"], 101, "ok", reply["state"], 0.123456, "")
    ack = ResultAck(p, 3, "t0001", reply["run"])
    writers = dict(_codec._WRITERS)

    def generic(msg: Any) -> list[bytes]:
        _codec._WRITERS.clear()
        try:
            return _codec.encode(msg)
        finally:
            _codec._WRITERS.update(writers)

    assert generic(result) == _codec.encode(result) and generic(ack) == _codec.encode(ack)
    dumper_r, dumper_a = _codec._DUMPERS[Result], _codec._DUMPERS[ResultAck]

    def old_encode(msg: Any, dump: Any, kind: str) -> list[bytes]:
        """``encode`` as it was: the kind, the dumper, the encoder, the size check."""
        k = _codec._KIND_OF.get(type(msg))
        assert k is not None
        try:
            data = dump(msg, k.decode())
        except _codec.DecodeError:
            raise
        body = _codec._ENCODE(data).encode()
        if len(_codec.MAGIC) + len(k) + len(body) > _codec.MAX_MESSAGE_BYTES:
            raise _codec.EncodeError(kind)
        return [_codec.MAGIC, k, body]

    assert old_encode(result, dumper_r, "result") == _codec.encode(result)
    old_box, new_box = _outbox_pair()
    return [
        ("DONE read", lambda: _old_done(obj), lambda: _new_done(arr)),
        ("DONE body", lambda: _worker.done_body(reply, state_json, array=False),
         lambda: _worker.done_body(reply, state_json)),
        ("encode RESULT", lambda: old_encode(result, dumper_r, "result"),
         lambda: _codec.encode(result)),
        ("encode RESULT_ACK", lambda: old_encode(ack, dumper_a, "result_ack"),
         lambda: _codec.encode(ack)),
        ("HeldAck", lambda: _FrozenHeldAck("127.0.0.1:47002", "t0001", "r", 1.0),
         lambda: HeldAck("127.0.0.1:47002", "t0001", "r", 1.0)),
        ("outbox add + ack", old_box, new_box),
    ]
