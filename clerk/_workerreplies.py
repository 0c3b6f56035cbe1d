"""The agent's side of its worker links (split out of :mod:`clerk._executor`): a worker's
connection accepted, its messages read, a READY taking the worker into the pool, a DONE matched
to the run its worker holds, and a message that is not one counted and logged.

:class:`WorkerReplies` is a base of :class:`clerk._executor.Executor` and works on its state
(the pool ``workers``, the links, the counters); what it needs of the executor (``_reply``,
``_pump``, ``_refuse_stale``, ``_check_capacity``) is declared here and written there.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clerk._runqueue import Job, RunQueue
from clerk._workerdeaths import WorkerDeaths
from clerk._workerlink import _MAX_FLOAT, DONE, DONE_FIELDS, READY, LinkClosed, Reader, parse

__all__ = ["MALFORMED_LOG_S", "Worker", "WorkerReplies"]

log = logging.getLogger("clerk.executor")  # (the executor's: one logger for the pool)

#: One WARNING per this many seconds at most for malformed messages from workers.
MALFORMED_LOG_S = 1.0
#: A run's outcomes, as a worker may report them.
_OUTCOMES = frozenset({"ok", "error", "timeout", "refused"})


def _form(value: Any) -> str:
    """What a message body was, for a log line: its JSON type, and its length if it has one."""
    name = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "null")
    return f"{name} of {len(value)} items" if type(value) in (dict, list) else name


def _int(value: Any) -> int:
    """A worker's ``wid`` as an int, -1 (no worker) if it is not one."""
    return value if type(value) is int else -1


@dataclass
class Worker:
    wid: int
    child: str  # its supervisor child id: worker-<wid>, then worker-<wid>-<n> once replaced
    identity: socket.socket | None = None  # its connection, once it said ready
    pid: int | None = None
    job: Job | None = None
    start_failures: int = 0  # its processes that exited before their READY, in a row
    # Its current process said READY: its exit is a death, not a failed start, even when its
    # link's EOF was read first (``_drop_link`` cleared ``identity``: no sign of it left).
    said_ready: bool = False


class WorkerReplies:
    """What the agent does with a message from one of its workers (see the module docstring)."""

    workers: dict[int, Worker]
    queue: RunQueue
    executed: int
    malformed: int
    stray_dones: int
    _malformed_quiet_until: float
    _now: Callable[[], float]
    _listener: socket.socket
    _links: dict[int, socket.socket]
    _readers: dict[int, Reader]
    _add_reader: Callable[[Any, Callable[[], None]], None]
    _remove_reader: Callable[[Any], None]
    _on_ready: Callable[[], None] | None
    _said_ready: set[int]
    _capable: bool
    ever_ready: bool
    deaths: WorkerDeaths

    if TYPE_CHECKING:  # written by the executor
        def _reply(self, job: Job, outcome: str, state: Any, error: str,
                   duration_ms: float | None = None) -> None: ...
        def _pump(self, now: float) -> None: ...
        def _refuse_stale(self, job: Job, why: str) -> None: ...
        def _check_capacity(self) -> None: ...
        def _replace_worker(self, worker: Worker) -> None: ...

    def _accept(self) -> None:
        """A worker connected: its messages are read as they come (``_on_link``)."""
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("cannot accept a worker's connection: %s", exc)
                return
            conn.setblocking(False)
            reader = Reader(conn)
            self._links[conn.fileno()] = conn
            self._readers[conn.fileno()] = reader
            self._add_reader(conn.fileno(), functools.partial(self._on_link, reader))

    def _drop_link(self, conn: socket.socket) -> None:
        """Close a worker's connection; the worker on it (if any) takes no more runs (a run it
        holds fails when its exit is seen, as before)."""
        fd = conn.fileno()
        self._readers.pop(fd, None)
        if fd >= 0 and self._links.pop(fd, None) is not None:
            self._remove_reader(fd)
        conn.close()
        for worker in self.workers.values():
            if worker.identity is conn:
                worker.identity = None
        self._check_capacity()

    def _on_link(self, reader: Reader) -> None:
        identity = reader.sock
        try:
            messages = reader.read()
        except LinkClosed:
            self._drop_link(identity)
            return
        for kind, body in messages:
            try:
                # A str, not bytes: json.loads of bytes first guesses their encoding in Python
                # (~3 us of its ~6.6 per message). A worker writes UTF-8 (ASCII) JSON; bytes
                # that are not UTF-8 fail here as UnicodeDecodeError, a ValueError; nesting
                # deep enough to exhaust the decoder's recursion is dropped too.
                data = parse(body.decode())
            except (ValueError, RecursionError) as exc:
                self._malformed(identity, f"a message that is not JSON ({exc})")
                if kind == DONE:  # the worker answered its run, and nothing can be taken
                    self._end_malformed(identity, f"not JSON: {exc}")
                continue
            if kind == DONE:
                self._on_done(identity, data)
            elif kind == READY:
                if type(data) is not dict:
                    self._malformed(identity, f"a ready that is not an object: {_form(data)}")
                    continue
                worker = self.workers.get(_int(data.get("wid", -1)))
                said = data.get("child")
                if worker is not None and said is not None and said != worker.child:
                    # A process of a child this worker id no longer is: one the executor
                    # replaced (a timeout, a stray DONE) whose READY is read late (before the
                    # workers were temporary children, also the supervisor's restart of one
                    # that died as it was replaced). Its old child is being terminated, which
                    # ends it; taking it would drop the replacement's link and leave the
                    # worker id without a process once it is gone. Its link stays open until
                    # then, unused.
                    log.info("worker %d: ignored a ready from pid %s of child %r, replaced "
                             "by %r", worker.wid, data.get("pid"), str(said)[:100],
                             worker.child)
                    continue
                if worker is not None:
                    lost, worker.job = worker.job, None
                    if lost is not None:
                        # A new incarnation said ready before we saw the old one's exit
                        # event (two sockets, no order between them): the run died with it.
                        self._reply(lost, "error", None,
                                    f"worker process {worker.pid} exited during the run")
                    worker.identity, worker.pid = identity, data.get("pid")
                    worker.start_failures = 0
                    worker.said_ready = True
                    self.ever_ready = True
                    if self._on_ready is not None and worker.wid not in self._said_ready:
                        self._said_ready.add(worker.wid)
                        if len(self._said_ready) == len(self.workers):
                            on_ready, self._on_ready = self._on_ready, None
                            self._capable = True
                            on_ready()
                    self._check_capacity()
                    # Runs may be queued, waiting for exactly this worker.
                    self._pump(self._now())

    def _on_done(self, identity: socket.socket, data: Any) -> None:
        """A worker's reply to its run: the array of ``DONE_FIELDS``, or the object of a
        worker of an earlier version (clerk._workerlink)."""
        if type(data) is list and len(data) == len(DONE_FIELDS):
            run, outcome, state, duration, error = data
        elif type(data) is dict and "run" in data:  # (without it, it answers no run)
            run, outcome, state = data.get("run"), data.get("outcome"), data.get("state")
            duration, error = data.get("duration_ms", 0.0), data.get("error", "")
        else:
            shape = (f"neither an array of the {len(DONE_FIELDS)} fields "
                     f"({', '.join(DONE_FIELDS)}) nor an object with them: {_form(data)}")
            self._malformed(identity, f"a done that is {shape}")
            self._end_malformed(identity, shape)
            return
        for worker in self.workers.values():
            if worker.identity is identity:
                break
        else:
            return
        job = worker.job
        if job is None or job.msg.run_id != run:
            self._stray_done(worker, job, run)
            return
        known = type(outcome) is str and outcome in _OUTCOMES
        if (not known or type(error) is not str
                or type(duration) not in (int, float)
                or not -_MAX_FLOAT <= duration <= _MAX_FLOAT):  # (an int: no overflow)
            problem = (f"outcome {outcome!r}" if not known
                       else f"error {error!r}" if type(error) is not str
                       else f"duration_ms {duration!r}")
            self._malformed(identity, f"a done with {problem}"[:300])
            self._end_malformed(identity, problem)
            return
        worker.job = None
        self.executed += 1
        if self.deaths.held:  # it survived a run of its task: the task's hold ends
            self.deaths.answered(job.msg.task)
        # The next queued run first: it has waited for exactly this worker.
        if self.queue:
            self._pump(self._now())
        if outcome == "refused" and error.startswith("stale: "):
            self._refuse_stale(job, error.removeprefix("stale: "))
            return
        if outcome != "refused" and duration > job.msg.timeout_ms:
            # It ran past its timeout and a late loop turn read its DONE before the timer
            # check could kill it: still a timeout (its state is not taken), whichever came
            # first; the worker is idle again, so it is kept.
            self._reply(job, "timeout", None, f"ran {float(duration):.0f} ms, past its "
                                              f"{job.msg.timeout_ms} ms timeout",
                        float(duration))
            return
        self._reply(job, outcome, state, error, float(duration))

    def _stray_done(self, worker: Worker, job: Job | None, run: Any) -> None:
        """A DONE from ``worker`` for a run it does not hold (another run's id, or none held).
        A worker takes one run at a time and answers it, so its exchange with the agent is out
        of step: whether it still runs the held run, and what it would answer next, is not
        known. Logged (the worker, the run it holds, the one it answered) and counted
        (``stray_dones`` in stats); the held run fails at once (no state taken) and the
        worker is replaced as after a timeout, so the pool is not left with a worker that
        is idle while the agent counts it busy (or the reverse)."""
        self.stray_dones += 1
        held = f"run {job.msg.run_id!r}" if job is not None else "no run"
        got = repr(run)[:200]
        log.warning("worker %s (pid %s) answered run %s but holds %s: replacing it (%d such "
                    "replies in all)", worker.child, worker.pid, got, held, self.stray_dones)
        pid = worker.pid
        self._replace_worker(worker)
        self._check_capacity()
        if job is not None:
            self._reply(job, "error", None, f"worker process {pid} answered run {got} while "
                                            f"it held {held}: the worker was replaced")

    def _end_malformed(self, identity: socket.socket, problem: str) -> None:
        """A DONE from the worker on ``identity`` that cannot be read (not JSON, neither
        form, a field of the wrong type): the worker answered its run and waits for the next
        one, so that run is over. It fails at once, saying why (no state taken), and the
        worker takes the next run; before, a DONE that was not JSON or in neither form was
        only dropped, and its run waited for its timeout, the worker's slot held."""
        worker = next((w for w in self.workers.values() if w.identity is identity), None)
        if worker is None or worker.job is None:
            return  # no run to end (a worker not ready yet, or one that holds none)
        job, worker.job = worker.job, None
        self.executed += 1
        if self.queue:  # the next queued run first, as for any DONE
            self._pump(self._now())
        self._reply(job, "error", None, f"worker process {worker.pid} answered the run with "
                                        f"a malformed reply ({problem})"[:1000])

    def _malformed(self, identity: socket.socket, what: str) -> None:
        """Count (``malformed`` in stats) and log a message from a worker that is not one:
        one WARNING per ``MALFORMED_LOG_S`` at most (a broken worker writing in a loop must
        not make the agent's loop a logger)."""
        self.malformed += 1
        now = self._now()
        if now < self._malformed_quiet_until:
            return
        self._malformed_quiet_until = now + MALFORMED_LOG_S
        pid = next((w.pid for w in self.workers.values() if w.identity is identity), None)
        log.warning("dropped %s from worker pid %s (%d such messages in all)", what,
                    pid if pid is not None else "(not ready)", self.malformed)
