"""Runs EXECUTE requests on this node, in worker processes supervised by the agent.

The agent owns a ``supervisor.Supervisor`` of ``workers`` processes (``clerk._worker``) and a
Unix socket in a 0700 temporary directory that each worker connects to (one connection per
worker, :mod:`clerk._workerlink`; the end of a connection is the end of that worker's link: a
worker whose agent is gone exits, and the agent sends nothing more on a link that closed). A run
goes to an idle worker (or waits in a queue, its clock already running). A run sent ahead of its
due time goes to an idle worker once it is due within ``RELEASE_LEAD_MS`` (at once, with the
default lead), which starts it at the due time (:mod:`clerk._lead`); free workers take the
earliest start first; its timeout counts from the due time. Past its timeout the executor
first reads the worker's link (a DONE the worker wrote in time may wait there unread when this
loop was late: that run ended in time, it is not a timeout; but a DONE whose duration is
over the timeout is one, whichever of the read and the timer check comes first); if the
run is still not done, the
worker's whole process tree is killed and the worker replaced by a new child
(``start_child`` first, then ``terminate_child``, which honours ``brutal_kill``; neither
counts against the restart intensity; both on a helper thread, so the loop keeps
heartbeating), and the run is reported as a timeout. A worker id takes a READY only from its
current child (the worker's READY names it).

Workers are ``temporary`` children: the supervisor never restarts one; the executor starts
every replacement itself (``start_child``, a new child id, as for a timeout), because it alone
knows whether the worker held a run, which decides what the death means
(:mod:`clerk._workerdeaths`). A worker that dies mid-run fails that run with an error naming
the exit (its link is read first: a DONE it wrote before it died ends its run as it says),
as Celery's WorkerLostError does: the run's failure, not the pool's. It is replaced at once
and does not count toward the pool's give-up; its task is held back on this node for a pause
that doubles while its runs keep killing workers (0.25 s up to 30 s; refused "not started:
task ... killed its worker process ..."), so a poison task costs a worker start per pause, not
one per run, and the other tasks keep their workers. A worker that dies without a run (at
start-up, before its READY, idle) is the pool's: it is replaced at once and counted, and more
than ``max(10, 5 * workers)`` such deaths in 60 s give up (below). (Why temporary children and not
another supervisor rule: :mod:`clerk._workerdeaths`.) A DONE the agent cannot read (not JSON, in
neither form, a field of the wrong type) fails its run at once with an error naming the
problem, no state taken: the worker has answered and waits for its next run, which it takes as
usual.
A worker pool that is gone for good escalates, as in OTP: when it gives up (more than
``max(10, 5 * workers)`` workers died without a run in 60 s), or a worker cannot be started
in the place of one that died or was killed (tried after each of ``START_RETRY_PAUSES``,
:mod:`clerk._workerpool`, which starts, replaces and gives up on workers), the runs queued
here are refused at once, any run a dead worker still held fails, EXECUTEs that come after
are refused, and ``on_failed`` tells the agent, which leaves the cluster and exits
non-zero, so the node's supervisor starts it again with a fresh pool (:mod:`clerk._agent`).
Results go to the manager this node follows now (which may have changed during the run), else
to the sender. What the agent does with its workers' messages (READY, DONE, a malformed one) is
:mod:`clerk._workerreplies`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from clerk._jsondump import encoder
from clerk._lead import RELEASE_LEAD_MS, too_late
from clerk._messages import Execute, Peer, Result
from clerk._runqueue import Job as _Job
from clerk._runqueue import RunQueue
from clerk._sockdir import BINDING, bind_listening, socket_dir
from clerk._tasks import TaskDef
from clerk._workerdeaths import WorkerDeaths
from clerk._workerlink import RUN, LinkClosed, Reader, send_msg
from clerk._workerpool import KILLED_FROM_OUTSIDE, WorkerPool
from clerk._workerreplies import Worker, WorkerReplies

__all__ = ["Executor"]

#: ``json.dumps(value)`` (a RUN), without the set-up per call (clerk._jsondump).
_DUMPS = encoder(separators=(", ", ": "))
#: A str as JSON text (quotes, escapes, ASCII), as that encoder writes it.
_quote: Callable[[str], str] = encode_basestring_ascii

log = logging.getLogger("clerk.executor")

#: How many ended runs' ids an executor remembers to refuse a second EXECUTE of one.
ENDED_KEPT = 4096


class Executor(WorkerPool, WorkerReplies):
    """The worker pool of one node and the runs in it."""

    def __init__(
        self,
        *,
        node: str,
        defs: dict[str, TaskDef],
        workers: int,
        add_reader: Callable[[Any, Callable[[], None]], None],
        remove_reader: Callable[[Any], None],
        send_result: Callable[[Result, str], None],
        me: Callable[[], tuple[Peer, int]],
        now: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        log_level: str = "info",
        log_to: str | None = None,
        on_ready: Callable[[], None] | None = None,
        on_capacity: Callable[[bool], None] | None = None,
        on_stale: Callable[[Execute, str], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
        sent_due: Callable[[str], int | None] | None = None,
    ) -> None:
        self.node = node
        self._log = (log_level, log_to)  # for the workers' logging (see clerk._logging)
        self.defs = defs
        self.send_result = send_result
        self.me = me
        self.executed = 0
        self.restarts = 0  # worker processes replaced (exited, or killed past a timeout)
        self.queue = RunQueue()  # runs waiting for a worker (O(log n) a run, a tick)
        self._now = now  # the agent's monotonic clock
        self._wall = wall  # and its wall clock: EXECUTE's due time is a wall time
        self._on_ready = on_ready  # called once, when every worker has said ready
        self._said_ready: set[int] = set()
        # Has any worker ever said ready? A pool that gives up before one has, on workers that
        # could not be started (``start_gave_up``), could not start at all: its agent exits
        # EXIT_CANNOT_START, which the node does not retry (clerk._agent).
        self.ever_ready = False
        # After that: on_capacity(False) when no worker is left up (all are being replaced,
        # e.g. the only one was killed on a timeout), on_capacity(True) when one is back. A
        # node without a worker is not eligible for runs: one sent to it meanwhile would only
        # wait for the replacement and time out ("no free worker"), which is the next slot
        # lost for nothing while other nodes could have run it.
        self._on_capacity = on_capacity
        self._capable = False
        # A run that could not start before it went stale (clerk._lead.too_late): it waited
        # for a worker past it, or its worker was stopped while it held the run.
        self._on_stale = on_stale
        # The due time its manager sent for a run whose times this node moved into its own
        # time base (clerk._clockskew.AsSent.due; None: not moved): current_run().due.
        self._sent_due = sent_due
        # The pool gone for good (see _give_up): on_failed(why), once; the agent then fails
        # (it leaves and exits non-zero) and the node's supervisor starts a fresh one.
        self._on_failed = on_failed
        self.failed = ""  # why the pool is gone for good; "" while it works
        # (with the directories that killed agents left: clerk._sockdir)
        self._dir, endpoint = socket_dir("clerk-workers-", "workers", socket.SOCK_STREAM,
                                         suffix=BINDING)
        self._add_reader, self._remove_reader = add_reader, remove_reader
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bind_listening(self._listener, endpoint, 2 * workers + 4)  # (see clerk._sockdir)
        self._listener.setblocking(False)
        self._links: dict[int, socket.socket] = {}  # fd -> a worker's connection
        self._readers: dict[int, Reader] = {}  # fd -> its reader (expire reads it first)
        add_reader(self._listener.fileno(), self._accept)
        self._events_r, self._events_w = socket.socketpair()
        self._events_r.setblocking(False)
        self._events_w.setblocking(False)
        add_reader(self._events_r.fileno(), self._on_worker_events)
        self._endpoint = endpoint
        # The last ENDED_KEPT runs this executor answered for: a second EXECUTE of one of them
        # (or of a run queued or running here) is ignored, never run twice (see submit).
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0
        self.malformed = 0  # messages from workers dropped as malformed (_malformed)
        self.stray_dones = 0  # DONEs for a run their worker did not hold (_stray_done)
        self._malformed_quiet_until = -math.inf
        # Per task: its definition and the part of a RUN's text that only that definition
        # decides (see _start), remade when the definition is another object.
        self._run_tail: dict[str, tuple[TaskDef, str]] = {}
        self.workers = {i: Worker(i, f"worker-{i}") for i in range(workers)}
        # Which deaths count toward giving up, and the tasks held back (clerk._workerdeaths).
        self.deaths = WorkerDeaths(intensity=max(10, 5 * workers), period=60)
        self._start_pool(workers)  # (clerk._workerpool)

    def _on_worker_events(self) -> None:
        try:
            data = self._events_r.recv(65536)
        except (BlockingIOError, OSError):
            return
        for line in data.splitlines():
            try:
                ev = json.loads(line)
                gave_up = ev.get("kind") == "gave up"
                if gave_up:
                    why, pool_gone = str(ev["reason"]), bool(ev.get("pool_gone"))
                    cannot_start = bool(ev.get("cannot_start"))
                else:
                    wid = int(str(ev["child"]).split("-")[1])
            except (ValueError, KeyError, IndexError):  # (a malformed line: not ours)
                continue
            if gave_up:  # (outside the try: an error of its answers is not a malformed line)
                self.start_gave_up = self.start_gave_up or cannot_start
                self._give_up(why, pool_gone=pool_gone)
                continue
            worker = self.workers.get(wid)
            if worker is None or worker.child != ev["child"] or self._closing.is_set():
                continue  # an old child (e.g. the one we killed on a timeout), or close()
            # What it wrote before it died first: the exit comes over another socket than
            # its link, in no order with it, and a DONE there means its run ended as it says.
            link, held = worker.identity, worker.job
            reader = self._readers.get(link.fileno()) if link is not None else None
            if reader is not None:
                self._on_link(reader)
                if worker.child != ev["child"]:
                    continue  # a stray DONE there replaced it: that replacement counted
            worker.identity = None
            job, worker.job = worker.job, None
            if job is not None and job is not held:
                # Given to it after that DONE, on a link only a leftover of it still held
                # open: the process that would run it is gone. It waits for another worker.
                job.wid = None
                self.queue.push_back(job)
                job = None
            how = f"worker process {ev.get('pid')} exited during the run: {ev.get('reason')}"
            now = self._now()
            if job is not None:  # the run's failure, not the pool's (clerk._workerdeaths)
                hold = self.deaths.died_in_run(job.msg.task, now, how)
                log.warning("task=%s slot=%d: %s; worker %s replaced, the task held back "
                            "here for %.2f s", job.msg.task, job.msg.slot, how, worker.child,
                            hold, extra={"task": job.msg.task, "slot": job.msg.slot,
                                         "run": job.msg.run_id})
                self._reply(job, "error", None, how)
            elif not self.deaths.died_idle(now):
                self._check_capacity()
                self._give_up(f"worker supervisor gave up: more than {self.deaths.intensity} "
                              f"workers died without a run in {self.deaths.period:.0f} s "
                              f"(the last: {ev['child']}, pid {ev.get('pid')}: "
                              f"{ev.get('reason')})", pool_gone=False)
                continue
            pause = 0.0
            if (job is None and not worker.said_ready
                    and ev.get("signal") not in KILLED_FROM_OUTSIDE):
                # It exited before its READY, by itself: a failed start (not ``link is None``:
                # a ready worker's link whose EOF was read first has none either). Killed from
                # outside, it is an idle death (counted above), replaced at once.
                found = self._start_failed(worker, str(ev["child"]), ev.get("pid"),
                                           ev.get("reason"))
                if found is None:
                    continue  # (it gave up)
                pause = found
            if not self.failed:  # (a pool that gave up starts none: its agent is leaving)
                self._restart_worker(worker, pause)
            self._check_capacity()
            self._pump(now)

    def _give_up(self, why: str, *, pool_gone: bool) -> None:
        """The pool is gone for good (its supervisor gave up: ``pool_gone``), or a worker could
        not be started again (``_replace``): the runs queued here are refused at once (none
        will start), the ones a dead worker held fail, and the agent is told (``on_failed``),
        which escalates: it leaves and exits non-zero, and the node's supervisor starts it
        again with a fresh pool. A worker left up (a start failure) keeps its run: a leaving
        node lets its runs in flight finish."""
        if self.failed:
            return
        self.failed = why
        queued, self.queue = self.queue, RunQueue()
        try:
            # (Each worker's exit came before the shutdown and failed its run already: these
            # are what is left, should one not have come.)
            for worker in self.workers.values() if pool_gone else ():
                worker.identity = None
                job, worker.job = worker.job, None
                if job is not None:
                    self._reply(job, "error", None,
                                f"the worker pool of {self.node} is gone: {why}")
            for job in queued:
                self._reply(job, "refused", None,
                            f"not started: the worker pool of {self.node} is gone ({why})",
                            0.0)
            self._check_capacity()
        finally:
            # The agent is told whatever an answer did: a failed pool refuses every run, and
            # a node left with one, not leaving, would sit there for good.
            if self._on_failed is not None:
                self._on_failed(why)

    # --- runs ---------------------------------------------------------------------------------

    def submit(self, msg: Execute, reply_to: str, now: float) -> None:
        # A run sent ahead of its due time (clerk._lead) waits here, no worker taken, until it
        # is due within RELEASE_LEAD_MS (normally at once); its timeout counts from the due time.
        ahead = max(0.0, msg.due_ms / 1000 - self._wall()) if msg.due_ms > 0 else 0.0
        release = now + max(0.0, ahead - RELEASE_LEAD_MS / 1000)
        if msg.run_id in self._ended or self.has_run(msg.run_id):
            # No path sends a run twice today (ZeroMQ delivers at most once, a manager never
            # resends an EXECUTE); should one come, the run it names is not started again,
            # and no second answer goes (a "refused" could overwrite the run's own result).
            self.duplicates += 1
            log.warning("ignored a second EXECUTE of run %s (task=%s slot=%d term=%d): it is "
                        "%s here", msg.run_id, msg.task, msg.slot, msg.term,
                        "done" if msg.run_id in self._ended else "queued or running",
                        extra={"task": msg.task, "slot": msg.slot, "run": msg.run_id})
            return
        job = _Job(msg, reply_to, now, now + ahead + msg.timeout_ms / 1000, release,
                   now + ahead)
        if msg.sender.name != self.node:
            # A step of this node's clock moves a run from another manager (follow_clock);
            # not one this node sent as manager: its due time is this very wall clock's.
            job.note_clock(self._wall(), self._now())
        if log.isEnabledFor(logging.DEBUG):  # per run: DEBUG, off the hot path at INFO
            log.debug("executing task=%s slot=%d term=%d run=%s", msg.task, msg.slot, msg.term,
                      msg.run_id, extra={"task": msg.task, "slot": msg.slot, "run": msg.run_id})
        if msg.task not in self.defs:
            self._reply(job, "error", None, f"task {msg.task!r} is not loaded on {self.node}")
            return
        if self.deaths.held and (why := self.deaths.holding(msg.task, now)):
            self._reply(job, "refused", None, f"not started: {why}", 0.0)
            return
        if self.failed:  # (until the agent has started leaving: then it refuses them itself)
            self._reply(job, "refused", None,
                        f"not started: the worker pool of {self.node} is gone ({self.failed})",
                        0.0)
            return
        self.queue.add(job, now)
        self._pump(now)

    def _pump(self, now: float) -> None:
        """Idle workers take the runs that may go now, the earliest start first (a run due
        now before one that waits for its due time; otherwise in arrival order)."""
        queue = self.queue
        if not queue:
            return
        queue.release(now)
        for worker in self.workers.values():
            if worker.identity is not None and worker.job is None:
                while (job := queue.pop_ready()) is not None and (
                        self._refused_stale(job) or self._refused_held(job, now)):
                    pass
                if job is None:
                    return
                if not self._start(worker, job, now):
                    queue.push_back(job)  # for the next idle worker

    def _refused_stale(self, job: _Job) -> bool:
        """Refuse a queued run that may no longer start (it waited for a worker past its
        deadline, or more than one interval past its due time); True if it was."""
        job.follow_clock(self._wall(), self._now())  # (clerk._runqueue: a step of our clock)
        msg = job.msg
        d = self.defs[msg.task]
        why = too_late(self._wall() * 1000, msg.due_ms, msg.deadline_ms, d.interval,
                       "reached a worker")
        if not why:
            return False
        self._refuse_stale(job, why)
        return True

    def _refused_held(self, job: _Job, now: float) -> bool:
        """Refuse a queued run whose task killed a worker since it was queued (its hold began
        meanwhile: clerk._workerdeaths); True if it was."""
        why = self.deaths.holding(job.msg.task, now) if self.deaths.held else ""
        if why:
            self._reply(job, "refused", None, f"not started: {why}", 0.0)
        return bool(why)

    def _refuse_stale(self, job: _Job, why: str) -> None:
        if self._on_stale is not None:
            self._on_stale(job.msg, why)
        self._reply(job, "refused", None, f"stale: {why}", 0.0)

    def _start(self, worker: Worker, job: _Job, now: float) -> bool:
        """Hand ``job`` to ``worker``; False if its link broke (the job is not taken)."""
        assert worker.identity is not None
        try:
            send_msg(worker.identity, RUN, self._run_body(job.msg, job.as_came))
        except LinkClosed as exc:
            log.warning("worker %s (pid %s) did not take a run: %s", worker.child, worker.pid,
                        exc)
            self._drop_link(worker.identity)
            return False
        job.wid = worker.wid
        job.started = now
        worker.job = job
        return True

    def _run_body(self, msg: Execute, came: Execute | None = None) -> bytes:
        """A RUN's body: the array of ``RUN_FIELDS`` (clerk._workerlink), written in one
        step: the task's fields (``task``, ``target``, ``node``, ``timezone``,
        ``interval_ms``) are encoded once per definition, the run's str quoted and its ints
        and bool written as JSON writes them (a value of another type goes through the
        encoder). ``slot_due_ms`` is the due time as the manager sent it when this node
        moved the run's times (clerk._clockskew), else as it ``came`` (before a step of
        this node's clock moved it: clerk._runqueue), else ``due_ms``. The worker checks
        ``deadline_ms`` and ``interval_ms`` again as the run would start (clerk._lead)."""
        d = self.defs[msg.task]
        tail = self._run_tail.get(msg.task)
        if tail is None or tail[0] is not d:
            text = _DUMPS([msg.task, d.target, self.node, d.timezone, d.interval])
            tail = self._run_tail[msg.task] = (d, text[1:-1])
        values: tuple[Any, ...] = (msg.run_id, msg.slot, msg.term, msg.due_ms,
                                   msg.deadline_ms, msg.init)
        run_id, slot, term, due, deadline, init = values
        if (type(run_id) is str and type(slot) is int and type(term) is int
                and type(due) is int and type(deadline) is int and type(init) is bool):
            run_id, init = _quote(run_id), "true" if init else "false"
        else:
            run_id, slot, term, due, deadline, init = (_DUMPS(v) for v in values)
        sent = self._sent_due(msg.run_id) if self._sent_due is not None else None
        if sent is None and came is not None:
            sent = came.due_ms
        slot_due = due if sent is None else _DUMPS(sent)
        return (f"[{run_id}, {slot}, {term}, {_DUMPS(msg.state)}, {init}, {due}, {deadline}, "
                f"{tail[1]}, {slot_due}]").encode()

    def expire(self, now: float) -> None:
        """Kill runs past their timeout; time out runs that never got a worker."""
        for job in self.queue.expired(now):
            self._reply(job, "timeout", None, "no free worker before the timeout")
        for worker in self.workers.values():
            running = worker.job
            if running is None or now < running.deadline:
                continue
            if not self._still_running(worker, running):
                continue
            log.warning("task=%s slot=%d run past its %d ms timeout: killing worker %s "
                        "(pid %s) and its process tree", running.msg.task, running.msg.slot,
                        running.msg.timeout_ms, worker.child, worker.pid)
            self._replace_worker(worker)
            self._reply(running, "timeout", None, f"killed after {running.msg.timeout_ms} ms")
        self._check_capacity()
        self._pump(now)

    def _still_running(self, worker: Worker, running: _Job) -> bool:
        """Is ``running`` still in ``worker``'s hands once its link is read? A loop turn that
        came late (a long turn elsewhere, a stall) may find a run past its deadline whose
        worker wrote its DONE in time: that DONE waits unread in the link, and killing the
        worker would report a run that ended as a timeout and lose its state."""
        link = worker.identity
        reader = self._readers.get(link.fileno()) if link is not None else None
        if reader is None:
            return True  # no link to read (it broke): the run cannot answer any more
        self._on_link(reader)  # its DONE (if there) ends the run; the end of the link drops it
        return worker.job is running

    def _check_capacity(self) -> None:
        """Tell the node when it gains or loses its last live worker (after the first ready).
        A pool gone for good (``failed``) is no capacity, workers still up or not: it starts
        no run any more (``submit`` refuses them), so the node withdraws its tasks until it
        has left, and the manager sends their runs elsewhere."""
        if self._on_ready is not None or self._on_capacity is None:
            return  # not every worker has said ready yet: the node is not announced anyway
        capable = not self.failed and any(w.identity is not None for w in self.workers.values())
        if capable != self._capable:
            self._capable = capable
            self._on_capacity(capable)

    def next_deadline(self) -> float:
        """The next kill or queue timeout, or the next release of a held run."""
        # Every loop turn asks: O(workers) plus the queue's heads, however many wait.
        best = self.queue.next_deadline()
        for w in self.workers.values():
            job = w.job
            if job is not None and job.deadline < best:
                best = job.deadline
        return best

    def has_run(self, run_id: str) -> bool:
        """Is this run queued or running here?"""
        return self.queue.has_run(run_id) or any(
            w.job is not None and w.job.msg.run_id == run_id for w in self.workers.values())

    def runs_in_flight(self) -> list[Execute]:
        """The EXECUTEs queued or running here (read only): what this node's OFFER says is
        in flight on it (clerk._offerruns)."""
        return [job.as_came or job.msg for job in self.queue] + [
            w.job.as_came or w.job.msg for w in self.workers.values() if w.job is not None]

    def busy(self) -> bool:
        return bool(self.queue) or any(w.job is not None for w in self.workers.values())

    def _reply(self, job: _Job, outcome: str, state: Any, error: str,
               duration_ms: float | None = None) -> None:
        msg = job.msg
        ended = self._ended
        ended[msg.run_id] = None
        if len(ended) > ENDED_KEPT:
            ended.popitem(last=False)
        me, term = self.me()
        if duration_ms is None:  # no word from the worker: time since the run came in, or
            # since its due time for one sent ahead (clerk._lead)
            duration_ms = max(0.0, (self._now() - max(job.received, job.start)) * 1000)
        result = Result(me, term, msg.task, msg.run_id, msg.slot, outcome,
                        state if outcome == "ok" else None, duration_ms, error)
        self.send_result(result, job.reply_to)

    def close(self) -> None:
        self._stop_pool()
        for conn in list(self._links.values()):
            conn.close()
        self._links.clear()
        self._readers.clear()
        self._listener.close()
        self._events_r.close()
        self._events_w.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def stats(self) -> dict[str, Any]:
        return {"executed": self.executed, "queued": len(self.queue),
                "held": self.queue.held_count,
                "busy_workers": sum(w.job is not None for w in self.workers.values()),
                "workers": len(self.workers), "restarts": self.restarts,
                "duplicates": self.duplicates, "malformed": self.malformed,
                "stray_dones": self.stray_dones, "died_in_run": self.deaths.in_run,
                "died_idle": self.deaths.idle, "held_back": self.deaths.refused}
