#!/usr/bin/env python3
"""Single functions of a run's path, before and after their last cut, in one process.

    .venv/bin/python tools/bench_hotpath.py [--repeats 7] [--number 20000] [--only NAME]

Each row times the way the code did it before (rebuilt here, as it was) against the function
as it is now, in interleaved repeats (the order alternating), and prints the medians and
their ratio. What each row is, and how often a run pays it:

* ``base_tag``: the state a run starts from, at every dispatch and again at its result (the
  manager): the lineage's JSON encoded and summed each time, against looked up.
* ``link message``: a worker's DONE (the executor, on the node's loop) and the agent's RUN
  (the worker), one each per run: ``json.loads`` of bytes (their encoding guessed in Python
  first) against of their text.
* ``parse_hist``: a delta's history patches (20 rows), on every follower per replication
  round: ``json.loads`` with a hook (a new decoder per call) and a generator per entry
  against one decoder and the checks unrolled.
* ``row head`` and ``message body``: ``JSONEncoder.encode`` (its C encoder made at every
  call) against :func:`clerk._jsondump.encoder` (made once), for a task row's head (two a run
  on the manager: ``TaskRecord.to_text`` at its dispatch and its result) and a RESULT's body
  (every message a node sends is one such encode: ``clerk._codec.encode``).
* ``worker run, no-op`` and ``worker run, due``: one run in a worker process as
  ``clerk._worker.main`` does it, without the socket and the wait for the due time (the job is
  due): the RUN's body decoded, the run, the DONE's body written. Before: a 12-key object
  through ``json.loads``, the ``Run`` and its ``due`` datetime made up front, ``_late_start``
  through ``too_late``, the reply dumped without its state and spliced. After: an array of
  ``RUN_FIELDS`` through the C scanner (``_run_message``), the rest as the worker does it
  now. The ``due`` task reads ``current_run().due`` (as the benchmarks' Stamp task does), the
  no-op one does not.
* ``RUN body``: the agent's RUN for a run (``Executor._start``), once per run: a 12-key dict
  dumped against the array, its task's part remembered and the run's written in one step.
* ``decode EXECUTE`` and ``decode RESULT_ACK``: ``clerk._codec.decode`` of a no-op run's
  EXECUTE (a follower, once per run it executes) and of its RESULT_ACK: the body through
  ``JSONDecoder.decode`` (two whitespace regexes around the scanner) against the scanner
  straight away (the validators as they are now in both).
* ``sender key``: the key of the decoder's sender cache (every message): a generator of
  (key, type, value) triples against the items and the types unpacked in C.
* ``decode batch, 6``: a follower's typical batch (3 EXECUTEs, 3 RESULT_ACKs): framing
  through a memoryview and each item through ``decode`` (its frames checked again) against
  bytes slices and ``decode_body``.
* ``message_term``: the term a message carries, checked against the term bound for every
  message a node receives: four attribute look-ups against one per message class.
* ``run id count``: the run queue's count of run ids, one up and one down per run: a
  ``Counter`` (its deletion a Python method) against a plain dict.
* ``Dispatch`` and ``Finished`` (the manager, one each per run: ``Running._dispatch``,
  ``Running._finish``): the frozen slotted dataclasses they were (each field set through
  ``object.__setattr__``) against the slotted (not frozen) ones they are.
* ``dispatch + result``: one run through the scheduler on the manager, ``_dispatch`` then
  ``on_result`` (a no-op task, 3 nodes, history as at 120 tasks): before, ``_finish``
  computed the run's start twice (``_run_start``, the round trip and the history) and the
  slot's due time three times, and made a frozen-dataclass Finished; after, each once.
* ``observe_run``: the manager's metrics at every result, ``Histogram.observe`` per value
  against inlined.
* ``DONE read`` ... ``outbox add + ack``: the result path's rows (worker -> node -> manager),
  described in ``tools/_bench_results.py``.
* ``history entry`` (the manager, once per result: ``_record_history``): the entry made by
  ``make_entry`` (keywords; ``round(x, 1)`` of the due time and the start, which are whole
  milliseconds on an interval grid, and the duration rounded again after the row's last run
  rounded it) and appended with its history's texts re-read through ``_texts()`` and three
  slice deletions, against ``entry`` (positional, whole numbers as they are, the duration
  rounded once) and ``append`` with one deletion for the usual one-in-one-out.
  ``tools/bench_sched.py`` times the scheduler's whole per-run path, tree against tree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clerk  # noqa: E402
from clerk import _codec, _tasks, _worker  # noqa: E402
from clerk._batch import BATCH_KIND, decode_batch  # noqa: E402
from clerk._claims import message_term  # noqa: E402
from clerk._codec import MAGIC, DecodeError, decode, encode  # noqa: E402
from clerk._executor import Executor  # noqa: E402
from clerk._finitejson import no_constant as _refuse  # noqa: E402
from clerk._histdelta import parse_hist  # noqa: E402
from clerk._jsondump import encoder  # noqa: E402
from clerk._lead import too_late  # noqa: E402
from clerk._logging import run_context  # noqa: E402
from clerk._messages import Claim, Execute, Message, Peer, ResultAck  # noqa: E402
from clerk._record import TaskRecord  # noqa: E402
from clerk._runids import _LINEAGE_DUMP, base_tag  # noqa: E402
from clerk._tasks import MAX_STATE_BYTES, Run, Task, TaskDef  # noqa: E402
from clerk._workerlink import DONE, RUN_FIELDS, pack  # noqa: E402
from tools._bench_results import result_cases  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


class NoOp(Task):
    def execute(self, state: Any) -> Any:
        return state


class ReadsDue(Task):
    def execute(self, state: Any) -> Any:
        return state if clerk.current_run().due.year else None


def _old_due(due_ms: float, zone: str) -> Any:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo
    return datetime.fromtimestamp(due_ms / 1000, UTC).astimezone(ZoneInfo(zone))


def _old_run_job(job: dict[str, Any], cache: dict[str, Task]) -> tuple[dict[str, Any], Any]:
    """clerk._worker._run_job before its last cut (the exception path left out: not timed)."""
    name = str(job.get("task"))
    started = time.perf_counter()
    due_ms = job.get("due_ms")
    if not isinstance(due_ms, int | float) or isinstance(due_ms, bool) or due_ms <= 0:
        due_ms = time.time() * 1000
    _tasks._set_current(Run(name, int(job["slot"]), int(job["term"]), str(job["node"]),
                            _old_due(due_ms, str(job.get("timezone") or "UTC"))))
    run_context(name, int(job["slot"]), str(job.get("run")))
    try:
        inst = _worker._instance(cache, name, str(job["target"]))
        state = job.get("state")
        wall = _worker.hold_until(due_ms)
        deadline, interval = job.get("deadline_ms"), job.get("interval_ms")
        late = too_late(wall * 1000, due_ms, deadline if isinstance(deadline, int | float)
                        else 0, interval if isinstance(interval, int | float) else None,
                        "would start")
        assert not late
        started = time.perf_counter()
        new_state = _worker._resolve(inst.execute(state))
        _worker._check_state(name, new_state, "execute()")
        encoded = _worker._STATE_DUMP(new_state)
        assert len(encoded) <= MAX_STATE_BYTES
    finally:
        _tasks._set_current(None)
        run_context()
    duration = (time.perf_counter() - started) * 1000
    return {"run": job.get("run"), "outcome": "ok", "state": new_state,
            "duration_ms": duration, "error": ""}, encoded


def _old_done_body(reply: dict[str, Any], state_json: str) -> bytes:
    rest = _worker._DUMPS({k: v for k, v in reply.items() if k != "state"})
    return f'{rest[:-1]}, "state": {state_json}}}'.encode()


def _worker_cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    out = []
    for label, cls in (("no-op", NoOp), ("due", ReadsDue)):
        job = {"run": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "task": "t0001",
               "target": f"__main__:{cls.__name__}", "slot": 101, "term": 3,
               "node": "n2@127.0.0.1", "state": {"dir": "/tmp/bench"}, "init": False,
               "due_ms": 1764770000000, "timezone": "UTC", "deadline_ms": 0,
               "interval_ms": None}
        old_body = json.dumps(job).encode()
        new_body = json.dumps([job[k] for k in RUN_FIELDS]).encode()
        cache: dict[str, Task] = {}

        def before(body: bytes = old_body, cache: dict[str, Task] = cache) -> bytes:
            reply, text = _old_run_job(json.loads(body.decode()), cache)
            return pack(DONE, _old_done_body(reply, text))

        def after(body: bytes = new_body, cache: dict[str, Task] = cache) -> bytes:
            reply, text = _worker._run_message(body, cache)
            return pack(DONE, _worker.done_body(reply, text))

        assert json.loads(before()[5:])["state"] == json.loads(after()[5:])[2]  # (DONE_FIELDS)
        out.append((f"worker run, {label}", before, after))
    d = TaskDef(name="t0001", target="tools._bench_tasks:Stamp", interval=1000)
    msg = Execute(Peer("n1@127.0.0.1", "127.0.0.1:47001", "inc", 0), 3, "t0001",
                  "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", 101, {"dir": "/tmp/bench"}, 5000,
                  False, 1764770000000, 1764770005000)
    fake: Any = SimpleNamespace(defs={"t0001": d}, _run_tail={}, node="n2@127.0.0.1")

    def old_run_body() -> bytes:
        payload = {"run": msg.run_id, "task": msg.task, "target": d.target, "slot": msg.slot,
                   "term": msg.term, "node": fake.node, "state": msg.state, "init": msg.init,
                   "due_ms": msg.due_ms, "timezone": d.timezone,
                   "deadline_ms": msg.deadline_ms, "interval_ms": d.interval}
        return _worker._DUMPS(payload).encode()

    assert json.loads(old_run_body()) == dict(zip(RUN_FIELDS, json.loads(
        Executor._run_body(fake, msg)), strict=True))
    out.append(("RUN body", old_run_body, lambda: Executor._run_body(fake, msg)))
    return out


def _old_base_tag(rec: TaskRecord) -> str:
    if not rec.has_state:
        return "~init"
    branch = rec.history[-1] if rec.history else None
    lineage = _LINEAGE_DUMP([rec.origin, branch])
    return f"~{rec.version}.{zlib.crc32(lineage.encode()):08x}"


def _old_parse_hist(text: str) -> dict[str, list[Any]] | None:
    try:
        raw = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    for value in raw.values():
        if not (isinstance(value, list) and len(value) in (3, 5)
                and all(type(v) is int and v >= 0 for v in value[:4])):
            return None
        if len(value) == 5 and not isinstance(value[4], str):
            return None
    return raw


def _cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    rec = TaskRecord(state={"n": 1}, has_state=True, version=1234,
                     origin={"term": 3, "node": "n1@127.0.0.1", "time": 1764770000000},
                     history=[[3, "n1@127.0.0.1", 0]])
    assert base_tag(rec) == _old_base_tag(rec)
    done = json.dumps({"run": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "outcome": "ok",
                       "state": {"n": 1}, "error": "", "duration_ms": 0.12}).encode()
    entry = ('[100,1764770000000.0,\\"n2@127.0.0.1\\",1764770000000.4,0.21,\\"ok\\",\\"\\",'
             '100,false]')
    hist = "{" + ",".join(f'"t:t{i:05d}":[123456,{100 + i},{101 + i},2300,"{entry}"]'
                          for i in range(20)) + "}"
    assert parse_hist(hist) == _old_parse_hist(hist)
    head = rec.to_json()
    head.pop("run_history")
    head["running"] = {"run": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "slot": 101,
                       "node": "n2@127.0.0.1", "started": 1764770000000.4,
                       "deadline": 1764770005000.4, "claim": [3, "n1@127.0.0.1"]}
    body = {"sender": {"name": "n2@127.0.0.1", "address": "127.0.0.1:47002",
                       "incarnation": "5f0c1a2b3c4d+t+d", "priority": 0},
            "term": 3, "run_id": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "task": "t0001",
            "slot": 101, "outcome": "ok", "state": {"n": 1}, "duration_ms": 0.12,
            "error": "", "due_ms": 1764770000000.0}
    std_row = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    std_msg = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                               allow_nan=False).encode
    new_row, new_msg = encoder(allow_nan=False), encoder(ensure_ascii=False, allow_nan=False)
    assert std_row(head) == new_row(head) and std_msg(body) == new_msg(body)
    return [
        ("row head", lambda: std_row(head), lambda: new_row(head)),
        ("message body", lambda: std_msg(body), lambda: new_msg(body)),
        ("base_tag", lambda: _old_base_tag(rec), lambda: base_tag(rec)),
        ("link message", lambda: json.loads(done), lambda: json.loads(done.decode())),
        ("parse_hist, 20 rows", lambda: _old_parse_hist(hist), lambda: parse_hist(hist)),
        *_worker_cases(),
        *_follower_cases(),
        *_manager_cases(),
        *result_cases(),  # (the result path's rows: tools/_bench_results.py)
        *_sched_cases(),
    ]


def _old_decode(frames: list[bytes]) -> Message:
    """clerk._codec.decode before the scanner was called directly (frame checks kept)."""
    head, kind, body = frames
    if len(head) + len(kind) + len(body) > _codec.MAX_MESSAGE_BYTES or head != MAGIC:
        raise DecodeError("size", "")
    validate = (_codec._VALIDATORS if b"\\u" in body else _codec._VALIDATORS_PLAIN).get(kind)
    if validate is None:
        raise DecodeError("kind", "")
    data = _codec._DECODER.decode(body.decode("utf-8"))
    return validate(data, kind.decode())  # type: ignore[no-any-return]


def _old_decode_batch(frames: list[bytes]) -> list[Message]:
    """clerk._batch.decode_batch before (its checks of the batch as a whole kept)."""
    head, body = frames[0], frames[2]
    view = memoryview(body)
    items: list[tuple[bytes, bytes]] = []
    at, end = 0, len(body)
    while at < end:
        klen, blen = struct.unpack_from(">BI", body, at)
        at += 5
        if at + klen + blen > end:
            raise DecodeError("batch", "")
        kind = bytes(view[at:at + klen])
        if kind == BATCH_KIND:
            raise DecodeError("batch", "")
        items.append((kind, bytes(view[at + klen:at + klen + blen])))
        at += klen + blen
    out: list[Message] = []
    for kind, item in items:
        msg = _old_decode([head, kind, item])  # (as decode was: frames checked per item)
        if out and msg.sender != out[0].sender:
            raise DecodeError("batch_sender", "")
        out.append(msg)
    return out


def _follower_cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """A follower's per-message path: what it decodes, and the run queue's bookkeeping."""
    me = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d+b+r+t+d", 0)
    runs = [f"a1b2-17/3/n1@127.0.0.1~{1234 + i}.0badf00d" for i in range(3)]
    execs = [encode(Execute(me, 3, f"t{i:04d}", r, 17345678, None, 5000, due_ms=1764770000000,
                            deadline_ms=1764770000100)) for i, r in enumerate(runs)]
    acks = [encode(ResultAck(me, 3, f"t{i:04d}", r)) for i, r in enumerate(runs)]
    body = b"".join(struct.pack(">BI", len(f[1]), len(f[2])) + f[1] + f[2]
                    for f in execs + acks)
    batch = [MAGIC, BATCH_KIND, body]
    assert _old_decode_batch(batch) == decode_batch(batch)
    assert _old_decode(execs[0]) == decode(execs[0]) and _old_decode(acks[0]) == decode(acks[0])
    sender = json.loads(execs[0][2])["sender"]

    def old_key() -> Any:
        return tuple((k, type(v), v) for k, v in sender.items())

    def new_key() -> Any:
        return (*sender.items(), *map(type, sender.values()))

    counter: Counter[str] = Counter()
    plain: dict[str, int] = {}

    def old_count(rid: str = runs[0]) -> bool:
        counter[rid] += 1
        left = counter[rid] - 1
        if left > 0:
            counter[rid] = left
        else:
            del counter[rid]
        return counter[rid] > 0

    def new_count(rid: str = runs[0]) -> bool:
        plain[rid] = plain.get(rid, 0) + 1
        left = plain.get(rid, 0) - 1
        if left > 0:
            plain[rid] = left
        else:
            plain.pop(rid, None)
        return rid in plain

    ex = decode(execs[0])

    def old_term(msg: Any = ex) -> int:
        term: int = msg.term
        claim = getattr(msg, "claim", None) or getattr(msg, "manager", None)
        if isinstance(claim, Claim):
            term = max(term, claim.term)
        for name in ("ballot", "promised"):
            claim = getattr(msg, name, None)
            if isinstance(claim, Claim):
                term = max(term, claim.term)
        return term

    assert old_term(ex) == message_term(ex)
    return [
        ("message_term", old_term, lambda: message_term(ex)),
        ("decode EXECUTE", lambda: _old_decode(execs[0]), lambda: decode(execs[0])),
        ("decode RESULT_ACK", lambda: _old_decode(acks[0]), lambda: decode(acks[0])),
        ("sender key", old_key, new_key),
        ("decode batch, 6", lambda: _old_decode_batch(batch), lambda: decode_batch(batch)),
        ("run id count", old_count, new_count),
    ]


# --- the manager's per-run path (rows: Dispatch, Finished, dispatch + result, observe_run) ---


def _old_types() -> tuple[Any, Any]:
    """clerk._dispatch's Dispatch and Finished as they were: frozen slotted dataclasses."""
    from dataclasses import dataclass

    @dataclass(frozen=True, slots=True)
    class OldDispatch:
        task: str
        run_id: str
        slot: int
        node: str
        state: Any
        init: bool
        timeout_ms: int
        due_ms: int = 0
        deadline_ms: int = 0

    @dataclass(frozen=True, slots=True)
    class OldFinished:
        task: str
        run_id: str
        slot: int
        node: str
        outcome: str
        duration_ms: float
        error: str
        round_trip_ms: float = 0.0
        lateness_ms: float | None = None

    return OldDispatch, OldFinished


def _old_scheduler_class(old_finished: Any) -> Any:
    """The Scheduler with ``_finish``'s tail and ``_record_history`` as they were."""
    from clerk._control import append_history, make_entry
    from clerk._lineage import note_update
    from clerk._running import ERROR_KEEP_CHARS
    from clerk._schedstate import _packed_size
    from clerk._schedule import Scheduler

    class OldScheduler(Scheduler):
        def _finish(self, name: str, rec: TaskRecord, outcome: str, state: Any,
                    duration_ms: float, error: str, wall_ms: float) -> Any:
            # The no-op ok path of the old _finish, as it was (the budget and lineage checks
            # are the same code in both: clerk._running).
            run = rec.running
            assert run is not None
            self.dirty.add(name)
            self.runs_dirty = True
            rec.running = None
            self._inflight.pop(name, None)
            rec.slot = max(rec.slot, int(run["slot"]))
            rec.runs += 1
            size = _packed_size(state)
            others = self._states_total - self._state_bytes.get(name, 0)
            claim = run.get("claim")
            if (isinstance(claim, list) and len(claim) == 2 and type(claim[0]) is int
                    and isinstance(claim[1], str)):
                note_update(rec, claim[0], claim[1])
            rec.version += 1
            rec.state = state
            rec.has_state = True
            self._state_bytes[name] = size
            self._states_total = others + size
            rec.counts[outcome] = rec.counts.get(outcome, 0) + 1
            node = str(run["node"])
            if outcome in ("ok", "error"):
                self.node_runs[node] = self.node_runs.get(node, 0) + 1
            round_trip = max(0.0, wall_ms - self._run_start(name, run))
            kept = error if len(error) <= ERROR_KEEP_CHARS else "..." + error[-ERROR_KEEP_CHARS:]
            rec.last = {"node": node, "slot": run["slot"], "duration_ms": round(duration_ms, 3),
                        "outcome": outcome, "error": kept, "finished": wall_ms,
                        "round_trip_ms": round(round_trip, 3)}
            trigger = bool(run.get("trigger"))
            grid = name in self._grid and not trigger
            due = self.due_ms(name, int(run["slot"])) if grid else None
            started = float(run["started"])
            append_history(rec.run_history, make_entry(
                slot=int(run["slot"]), due_ms=due, node=node,
                start_ms=self._run_start(name, run), duration_ms=duration_ms, outcome=outcome,
                error=error if outcome != "ok" else "", version=rec.version,
                trigger=trigger), self.history_cap)
            lateness = None if due is None else max(0.0, started - due)
            return old_finished(name, str(run["run"]), int(run["slot"]), node, outcome,
                                duration_ms, error, round_trip, lateness)

    return OldScheduler


def _run_pair(cls: Any) -> Callable[[], Any]:
    """One run of task t0001 through ``cls`` (dispatch, then its ok result)."""
    import random

    from clerk._dispatch import Finished

    defs = [TaskDef(name=f"t{i:04d}", target="x:Y", interval=100, timeout=5000)
            for i in range(120)]
    s = cls(defs, random.Random(1))
    members = {f"n{i}@127.0.0.1": frozenset(x.name for x in defs) for i in range(3)}
    wall = 1764770000.0
    s.activate(wall, False, (3, "n0@127.0.0.1"))
    d, rec = s.defs["t0001"], s.records["t0001"]
    rec.state, rec.has_state, rec.version = {"dir": "/tmp/bench-stamps-x"}, True, 1
    rec.origin = {"term": 3, "node": "n0@127.0.0.1", "time": 1764770000000}
    rec.history = [[3, "n0@127.0.0.1", 0]]
    at = [s._slot_at(d, wall * 1000)]

    def pair() -> Any:
        at[0] += 1
        slot = at[0]
        wall_ms = s.due_ms("t0001", slot) + 0.4
        (out,) = s._dispatch(d, rec, slot, wall_ms, members, [])
        fin = s.on_result("t0001", out.run_id, out.node, "ok", out.state, 0.12, "",
                          (wall_ms + 2.0) / 1000)
        assert fin is not None and fin.outcome == "ok"
        return fin

    for _ in range(60):  # a history as at 120 tasks (its byte cap: ~8 entries)
        pair()
    last = pair()
    assert isinstance(last, Finished) or type(last).__name__ == "OldFinished"
    return pair


def _manager_cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    from clerk._dispatch import Dispatch, Finished
    from clerk._metrics import DURATION_BUCKETS, LATENESS_BUCKETS, NodeMetrics
    from clerk._schedule import Scheduler

    old_dispatch, old_finished = _old_types()
    d_args = ("t0001", "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", 101, "n2@127.0.0.1",
              {"dir": "/tmp/bench"}, False, 5000, 1764770000000, 1764770005000)
    f_args = ("t0001", "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", 101, "n2@127.0.0.1", "ok",
              0.12, "", 2.1, 0.0)
    assert repr(old_dispatch(*d_args)).split("(", 1)[1] == repr(Dispatch(*d_args)).split(
        "(", 1)[1]
    assert repr(old_finished(*f_args)).split("(", 1)[1] == repr(Finished(*f_args)).split(
        "(", 1)[1]
    old_pair, new_pair = _run_pair(_old_scheduler_class(old_finished)), _run_pair(Scheduler)
    a, b = old_pair(), new_pair()
    assert tuple(getattr(a, f) for f in Finished.__slots__[2:]) == tuple(
        getattr(b, f) for f in Finished.__slots__[2:]), (a, b)
    m = NodeMetrics(["t0001"])

    def old_observe(task: str = "t0001", duration_ms: float = 0.12,
                    lateness_ms: float | None = 0.3) -> None:
        if task not in m.duration:
            m.lateness[task] = type(m.lateness[task])(LATENESS_BUCKETS)
            m.duration[task] = type(m.duration[task])(DURATION_BUCKETS)
        m.duration[task].observe(max(0.0, duration_ms) / 1000)
        if lateness_ms is not None:
            m.lateness[task].observe(max(0.0, lateness_ms) / 1000)

    return [
        ("Dispatch", lambda: old_dispatch(*d_args), lambda: Dispatch(*d_args)),
        ("Finished", lambda: old_finished(*f_args), lambda: Finished(*f_args)),
        ("dispatch + result", old_pair, new_pair),
        ("observe_run", old_observe, lambda: m.observe_run("t0001", 0.12, 0.3)),
    ]


def _old_append(h: Any, entry: list[Any], cap_bytes: int) -> None:
    """``RunHistory.append`` as it was."""
    from clerk._control import HISTORY_MAX_RUNS, _dumps, _quote

    parts, qparts = h._texts()
    text = _dumps(entry)
    h.entries.append(entry)
    parts.append(text)
    qparts.append(_quote(text)[1:-1])
    h._bytes += len(text) + 1
    drop = 0
    while len(h.entries) - drop > HISTORY_MAX_RUNS or (
            h._bytes > cap_bytes and drop < len(h.entries) - 1):
        h._bytes -= len(parts[drop]) + 1
        drop += 1
    if drop:
        del h.entries[:drop]
        del parts[:drop]
        del qparts[:drop]
    h.n += 1
    h._text = h._quoted = None
    h._joined = True


def _sched_cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    from clerk._control import RunHistory, entry, make_entry

    cap = 96 * 1024 // 120  # a history's share at 120 tasks (~8 entries)
    old_h, new_h = RunHistory(), RunHistory()
    due, start, duration = 1764770000100, 1764770000100, 0.1234567

    def old() -> None:
        _old_append(old_h, make_entry(slot=17647700001, due_ms=due, node="n2@127.0.0.1",
                                      start_ms=start, duration_ms=duration, outcome="ok",
                                      error="", version=1234, trigger=False), cap)

    def new() -> None:
        new_h.append(entry(17647700001, due, "n2@127.0.0.1", start, round(duration, 3), "ok",
                           "", 1234, False), cap)

    for _ in range(60):
        old()
        new()
    assert old_h.quoted() == new_h.quoted() and old_h._bytes == new_h._bytes
    return [("history entry", old, new)]


def _time(f: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        f()
    return (time.perf_counter() - t0) / number * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--number", type=int, default=20000, help="calls per timing")
    ap.add_argument("--only", default="", help="only the rows whose name contains this")
    args = ap.parse_args()
    print(f"{'function':<22} | {'before us':>9} | {'after us':>8} | ratio "
          f"(medians of {args.repeats} interleaved repeats of {args.number} calls)")
    for name, before, after in _cases():
        if args.only not in name:
            continue
        got: dict[str, list[float]] = {"before": [], "after": []}
        for rep in range(args.repeats):
            pair = (("before", before), ("after", after))
            for label, f in pair if rep % 2 == 0 else pair[::-1]:
                got[label].append(_time(f, args.number))
        b, a = statistics.median(got["before"]), statistics.median(got["after"])
        print(f"{name:<22} | {b:9.2f} | {a:8.2f} | {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
