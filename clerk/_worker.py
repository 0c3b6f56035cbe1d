"""A task worker process: runs ``init``/``execute`` for the node's agent, one run at a time.

Started by the agent's worker supervisor (``clerk._worker:main``) in a fresh interpreter. It
connects to the agent's private Unix socket (:mod:`clerk._workerlink`), says ``ready``, then
loops: ``run`` request in, ``done`` reply out (an array of ``DONE_FIELDS``, or the object an
agent of an earlier version reads when its ``run`` came as one); it exits when the agent's end
of the connection closes (its supervisor starts a new one if the agent is still there).
Everything is JSON (no pickle). A run past its timeout is not this process's business: the
agent kills this process's whole tree and starts a new worker.
A run sent ahead of its due time (:mod:`clerk._lead`) is held here until that time, checked
against the wall clock: the task's code never starts before its slot is due, and never late
either: a run this process held while it was stopped (SIGSTOP, a VM stall) until past its
deadline or more than one interval past its due time is answered ``refused`` (``stale``)
instead of started, as the node answers an EXECUTE that arrives that late.

``async def execute`` and ``async def init`` are awaited in one event loop per worker, kept
across runs (a client made in one run, bound to the loop, still works in the next); the
timeout and the kill are the same as for plain functions. A state that would not come back
from JSON unchanged fails the run with the path inside it (see :mod:`clerk._jsoncheck`).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from time import perf_counter_ns
from typing import Any

from clerk import _tasks
from clerk._clock import wall_time
from clerk._jsoncheck import _plain, json_problem
from clerk._jsondump import encoder
from clerk._lead import SPIN_MS, too_late
from clerk._logging import configure_child_logging, run_context
from clerk._tasks import MAX_STATE_BYTES, Task, load_task_class
from clerk._workerlink import (
    _HEADER,
    DONE,
    DONE_FIELDS,
    READY,
    RUN,
    RUN_FIELDS,
    BlockingReader,
    LinkClosed,
    _scan,
    parse,
    send_msg,
)

__all__ = ["hold_until", "main", "run_job"]

#: ``json.dumps(state, allow_nan=False)``, without making an encoder per call.
_STATE_DUMP = encoder(separators=(", ", ": "), allow_nan=False)
#: ``json.dumps(value)`` (a reply), the same way.
_DUMPS = encoder(separators=(", ", ": "))
#: prctl(2) option: the timer slack of this thread, in ns (Linux; default 50 us).
PR_SET_TIMERSLACK = 29


def _fine_timer_slack() -> None:
    """Ask Linux to wake this process's sleeps within 1 ns rather than 50 us of their end:
    a run held until its due time starts that much sooner after it (clerk._lead). Best
    effort."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _instance(cache: dict[str, Task], name: str, target: str) -> Task:
    inst = cache.get(name)
    if inst is None:
        inst = load_task_class(target, name=name)()
        cache[name] = inst
    return inst


_loop: Any = None  # asyncio.AbstractEventLoop, made on the first async run


def _resolve(value: Any) -> Any:
    """Await what ``async def`` init/execute returned, in this worker's one event loop."""
    global _loop
    if not hasattr(value, "__await__"):
        return value
    import asyncio  # only for async tasks: a worker's start is on the clock of its first run

    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)

    async def wait() -> Any:
        return await value

    return _loop.run_until_complete(wait())


def _check_state(name: str, state: Any, who: str) -> None:
    try:  # (json_problem's quick walk first, here: one call less per run)
        if _plain(state, 0):
            return
    except RecursionError:
        pass
    problem = json_problem(state)
    if problem is not None:
        raise _tasks.TaskStateErrorFor(
            name, f"{who} returned a state JSON cannot carry unchanged: {problem}")


def hold_until(due_ms: float, wall: Callable[[], float] = wall_time,
               sleep: Callable[[float], None] = time.sleep) -> float:
    """Wait until the wall clock reaches ``due_ms``; return the wall time (s) then, which is
    never before it. Sleeps until ``SPIN_MS`` before it (0: until it), then reads the wall
    clock until it is reached (clerk._lead): a sleep that woke early spins the rest."""
    due = due_ms / 1000
    now = wall()
    rest = due - now - SPIN_MS / 1000
    if rest > 0:
        sleep(rest)
        now = wall()
    while now < due:  # the last fraction of a millisecond (or an early wake-up)
        now = wall()
    return now


def _late_start(deadline: Any, interval: Any, due_ms: float, wall: float) -> str:
    """Why the run may no longer start now (clerk._lead.too_late), or "". The two limits are
    compared here first: the message is only made for a run that is late."""
    if not isinstance(deadline, (int, float)):
        deadline = 0
    if not isinstance(interval, (int, float)):
        interval = None
    wall_ms = wall * 1000
    if (deadline and wall_ms > deadline) or (interval is not None
                                             and wall_ms > due_ms + interval):
        return too_late(wall_ms, due_ms, deadline, interval, "would start")
    return ""


def run_job(job: dict[str, Any], cache: dict[str, Task]) -> dict[str, Any]:
    """Run one job; never raises: the outcome says what happened. A job sent ahead of its
    due time starts at it (``hold_until``), never before; its duration counts from then."""
    reply, _ = _run_job(job, cache)
    return reply


def done_body(reply: dict[str, Any], state_json: str | None, array: bool = True) -> bytes:
    """The ``done`` message's body for ``reply``: the array of ``DONE_FIELDS``
    (clerk._workerlink), or with ``array=False`` the object an agent of an earlier version
    reads (``json.dumps(reply)``'s text: the worker answers in the form its RUN came in). Its
    state is ``state_json`` when given (the text ``run_job`` already encoded to check its size:
    a state is encoded once).

    Written in one step: the run id, outcome and error (str) are quoted by the encoder's own C
    function and a finite float duration written as ``repr``; other values go through the
    encoder one by one, as ``json.dumps`` would write them."""
    run, outcome, error = reply["run"], reply["outcome"], reply["error"]
    duration = reply["duration_ms"]
    if state_json is None:
        state_json = _DUMPS(reply["state"])
    if (type(run) is str and type(outcome) is str and type(error) is str
            and type(duration) is float and math.isfinite(duration) and len(reply) == 5):
        if array:
            return (f"[{_quote(run)}, {_quote(outcome)}, {state_json}, {duration!r}, "
                    f"{_quote(error)}]").encode()
        return (f'{{"run": {_quote(run)}, "outcome": {_quote(outcome)}, "state": {state_json}, '
                f'"duration_ms": {duration!r}, "error": {_quote(error)}}}').encode()
    if array:
        values = ", ".join(state_json if k == "state" else _DUMPS(reply[k]) for k in DONE_FIELDS)
        return f"[{values}]".encode()
    items = ", ".join(f"{_quote(k)}: {state_json if k == 'state' else _DUMPS(v)}"
                      for k, v in reply.items())
    return f"{{{items}}}".encode()


#: A str as JSON text (quotes, escapes, ASCII), as the encoder writes it.
_quote: Callable[[str], str] = encode_basestring_ascii


def _run_job(job: dict[str, Any], cache: dict[str, Task]) -> tuple[dict[str, Any], str | None]:
    """:func:`run_job`, and the new state as JSON text (None when the run failed)."""
    return _run(job.get("run"), job["slot"], job["term"], job.get("state"), job.get("init"),
                job.get("due_ms"), job.get("deadline_ms"), job.get("task"), job.get("target"),
                job["node"], job.get("timezone"), job.get("interval_ms"), cache)


def _run_message(body: bytes, cache: dict[str, Task]) -> tuple[dict[str, Any], str | None]:
    """:func:`_run_job` of a RUN's body (see :func:`_run_request`)."""
    reply, state_json, _ = _run_request(body, cache)
    return reply, state_json


def _run_request(body: bytes,
                 cache: dict[str, Task]) -> tuple[dict[str, Any], str | None, bool]:
    """:func:`_run_job` of a RUN's body: the array of ``RUN_FIELDS`` (clerk._workerlink) the
    agent writes, or the object an agent of an earlier version wrote (a worker started after
    the package was upgraded under a running agent); and True if it was the array (the agent
    reads a DONE as an array then; an earlier one only as an object). ValueError for
    anything else."""
    text = body.decode()  # (a str: see Executor._on_link)
    try:  # parse(text), its usual case in line
        job, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        job = parse(text)
    if type(job) is list and len(job) == len(RUN_FIELDS):
        (run, slot, term, state, init, due, deadline, task, target, node, zone, interval,
         slot_due) = job
        return (*_run(run, slot, term, state, init, due, deadline, task, target, node, zone,
                      interval, cache, slot_due), True)
    if type(job) is list and len(job) == len(RUN_FIELDS) - 1:  # an agent before slot_due_ms
        run, slot, term, state, init, due, deadline, task, target, node, zone, interval = job
        return (*_run(run, slot, term, state, init, due, deadline, task, target, node, zone,
                      interval, cache), True)
    if isinstance(job, dict):
        return (*_run_job(job, cache), False)
    raise ValueError(f"a run from the agent is not an array of {len(RUN_FIELDS)} fields "
                     f"({', '.join(RUN_FIELDS)}): {body[:200]!r}")


def _run(run: Any, slot: Any, term: Any, state: Any, init: Any, due_ms: Any, deadline: Any,
         task: Any, target: Any, node: Any, timezone: Any, interval: Any,
         cache: dict[str, Task], slot_due: Any = None) -> tuple[dict[str, Any], str | None]:
    """:func:`_run_job` of the run's fields, in the order of ``RUN_FIELDS``. The run starts
    at ``due_ms`` (this node's clock); ``current_run().due`` is ``slot_due`` (the slot's time
    as its manager sent it) when given, else ``due_ms``."""
    encoded: str | None = None
    name = str(task)
    started = perf_counter_ns()
    kind = type(due_ms)
    if not ((kind is int or kind is float) and due_ms > 0) and (
            not isinstance(due_ms, (int, float)) or isinstance(due_ms, bool) or due_ms <= 0):
        due_ms = wall_time() * 1000  # an EXECUTE without a due time: it is due now
    slot = int(slot)
    shown = due_ms
    if type(slot_due) is int and slot_due > 0:  # (review13: test_review13_skew_due.py)
        shown = slot_due
    # current_run() makes the Run (and its due datetime) when the task first asks for it.
    _tasks._begin_run(name, slot, int(term), str(node), shown, str(timezone or "UTC"))
    run_context(name, slot, str(run))  # on the task's log records
    try:
        inst = cache.get(name)
        if inst is None:
            inst = _instance(cache, name, str(target))
        # Everything else is ready: the user's code starts at the due time, and not late.
        wall = wall_time()
        if wall * 1000 < due_ms:
            wall = hold_until(due_ms)
        wall_ms = wall * 1000
        # (the usual case, in line: due within its interval and before its deadline)
        if not (type(deadline) is int and type(interval) is int
                and wall_ms <= due_ms + interval and (not deadline or wall_ms <= deadline)):
            late = _late_start(deadline, interval, due_ms, wall)
            if late:  # this worker was stopped while it held the run (SIGSTOP, a VM stall)
                return {"run": run, "outcome": "refused", "state": None,
                        "duration_ms": 0.0, "error": f"stale: {late}"}, None
        started = perf_counter_ns()
        if init:
            state = inst.init(state)
            if hasattr(state, "__await__"):
                state = _resolve(state)
            _check_state(name, state, "init()")
        new_state = inst.execute(state)
        if new_state is None:  # (nothing to check, and its text is known)
            encoded = "null"
        else:
            if hasattr(new_state, "__await__"):
                new_state = _resolve(new_state)
            _check_state(name, new_state, "execute()")
            encoded = _STATE_DUMP(new_state)
        if len(encoded) > MAX_STATE_BYTES:
            raise _tasks.TaskStateErrorFor(
                name, f"returned a state of {len(encoded)} bytes, over the "
                      f"{MAX_STATE_BYTES}-byte limit")
        outcome, error = "ok", ""
    except (Exception, SystemExit) as exc:  # the user's code: report it, keep the state
        new_state = encoded = None
        outcome = "error"
        if isinstance(exc, _tasks.TaskStateError):
            error = str(exc)
        else:
            error = "".join(traceback.format_exception(exc)).rstrip()
    finally:
        _tasks._set_current(None)
        run_context()
    # Whole nanoseconds over 1e6: the float nearest a 6-decimal number of ms, whose repr
    # (done_body) is its 6 decimals (repr of the 17 digits of a perf_counter difference took
    # a quarter of the worker's own instructions per no-op run: tools/bench_worker.py).
    duration = (perf_counter_ns() - started) / 1e6
    return {"run": run, "outcome": outcome, "state": new_state,
            "duration_ms": duration, "error": error}, encoded


def main(endpoint: str, wid: int, node: str = "", log_level: str = "info",
         log_to: str | None = None, child: str = "") -> None:
    """Worker entry point (a supervised child of the agent). Its records, the task's own
    included, go where the agent's go (see clerk._logging). Its READY names ``child``, its
    supervisor child id: the agent takes a worker id's ready only from its current child."""
    configure_child_logging(node, log_level, log_to)
    _fine_timer_slack()
    # A worker ends only by the agent's decision (SIGKILL of its tree on a timeout or at the
    # agent's exit; the parent-death signal if the agent dies). A SIGTERM sent to the whole
    # tree from above (e.g. a user's Supervisor stopping clerk.node_spec) must not kill the
    # run in flight while the agent leaves gracefully and lets it finish.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(endpoint)
    ready: dict[str, object] = {"wid": wid, "pid": os.getpid()}
    if child:
        ready["child"] = child
    send_msg(sock, READY, json.dumps(ready).encode())
    cache: dict[str, Task] = {}
    inbox = BlockingReader(sock)
    try:
        while True:
            try:
                kind, body = inbox.recv()
            except LinkClosed:
                return  # the agent is gone (or closed our link): nothing more to run
            if kind != RUN:
                continue
            reply, state_json, array = _run_request(body, cache)
            try:  # (a blocking socket: one call writes it all)
                done = done_body(reply, state_json, array)
                sock.sendall(_HEADER.pack(len(done), DONE) + done)  # pack(DONE, done)
            except OSError:
                return  # the agent is gone
    finally:
        sock.close()
