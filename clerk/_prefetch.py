"""Pipelining: a busy worker is sent its next run while it still holds (or runs) its current one.

Under load every worker of a node has several runs queued behind it (sent ``dispatch_lead``
ahead, :mod:`clerk._lead`). Without pipelining each of them costs the worker two wake-ups (the
run arrives, then its due time) and puts the agent's turn on its path (the DONE read, then the
next run written). So the executor (:mod:`clerk._executor`) writes a busy worker's next run into
its link at once; after its DONE the worker reads it from its socket's buffer without sleeping.

Rules (:class:`Prefetch`, a base of :class:`clerk._executor.Executor`):

* **Idle workers first.** A run goes ahead to a busy worker only when no worker is idle, and
  at most ``prefetch`` (``PREFETCH_DEPTH``) runs wait in one worker's link.
* **Only behind short runs, never ahead of time.** A worker is sent a run ahead only while
  every run it holds is of a task whose last run on this node took at most
  ``PREFETCH_SHORT_MS`` and none has been going longer than that; and only a run that starts
  (its due time) no earlier than the worker is expected to be free. A run due now is never
  put behind one that waits for its due time; a run of a task not yet seen here, or a long
  one, is never put behind anything. A run whose body is over ``PREFETCH_MAX_BYTES`` (a big
  state) is not sent ahead: it waits for an idle worker as before.
* **Held is held.** A run sent ahead is a run in flight on its worker for everything else:
  ``has_run`` (RUN_QUERY), ``runs_in_flight`` (OFFER), ``busy`` (a leaving node waits for
  it), status (``executor.holding``). A worker's DONE makes its next run the one it runs:
  the kill timer then watches that run (its timeout counts from its due time, as for any
  queued run).
* **Not lost, never run twice.** A worker runs the runs in its link in order, and starts one
  only after it wrote the DONE of the one before. When a worker is killed (past a timeout, a
  reply out of step) the runs waiting in its link are *detached*: the agent keeps reading
  that link until its end (the tree killed). A DONE of a detached run is its result; a DONE
  of the run before it means the worker may have started it. At the end of the link the
  first run not answered fails if its worker may have started it ("not run again": at most
  once), and every other goes back to the queue for another worker (or, past its deadline or
  more than one interval late, is refused as stale, as any run that reaches a worker too
  late). A worker that exits by itself has answered all it will: its link is read to the
  end and the runs waiting there are queued again at once. Counted in stats: ``requeued``,
  ``prefetch_lost``.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clerk._runqueue import Job, RunQueue
from clerk._workerlink import RUN, LinkClosed, Reader, send_ahead

if TYPE_CHECKING:
    from clerk._messages import Execute
    from clerk._workerreplies import Worker

__all__ = ["PREFETCH_DEPTH", "PREFETCH_MAX_BYTES", "PREFETCH_SHORT_MS", "Detached", "Prefetch"]

log = logging.getLogger("clerk.executor")

#: How many runs at most wait in one busy worker's link (0: no pipelining).
PREFETCH_DEPTH = 1
#: A run is sent ahead only behind runs of tasks whose last run here took at most this.
PREFETCH_SHORT_MS = 5.0
#: A run's body over this is not sent ahead (a Unix socket takes a message this small whole).
PREFETCH_MAX_BYTES = 16 << 10


@dataclass(eq=False)
class Detached:
    """Runs that wait in the link of a worker being killed (see the module docstring)."""

    link: socket.socket | None  # None: its link already ended
    #: The run whose DONE means the worker may go on to the first of ``jobs``.
    after: str
    jobs: list[Job] = field(default_factory=list)
    #: May the worker have started ``jobs[0]``?
    started: bool = False
    why: str = ""


class Prefetch:
    """The executor's pipelining (see the module docstring)."""

    workers: dict[int, Worker]
    queue: RunQueue
    _links: dict[int, socket.socket]
    _readers: dict[int, Reader]
    _now: Callable[[], float]
    _prefetch_depth: int
    _last_ms: dict[str, float]
    _detached: dict[int, Detached]
    requeued: int
    prefetch_lost: int
    sent_ahead: int

    if TYPE_CHECKING:  # written by the executor
        def _reply(self, job: Job, outcome: str, state: Any, error: str,
                   duration_ms: float | None = None) -> None: ...
        def _refused_stale(self, job: Job) -> bool: ...
        def _run_body(self, msg: Execute) -> bytes: ...
        def _pump(self, now: float) -> None: ...
        def _drop_link(self, conn: socket.socket, eof: bool = True) -> None: ...
        def _finish(self, job: Job, outcome: Any, state: Any, duration: Any,
                    error: Any) -> None: ...

    # --- sending ahead ------------------------------------------------------------------------

    def _free_at(self, worker: Worker, now: float) -> float:
        """When ``worker`` is expected to be done with what it holds (``inf``: do not send it
        anything ahead)."""
        job = worker.job
        if job is None or worker.identity is None or len(worker.prefetched) >= \
                self._prefetch_depth:
            return math.inf
        short = PREFETCH_SHORT_MS / 1000
        if now - max(job.start, job.started) > short:
            return math.inf  # going longer than a short run: it may go on for long
        end = now
        last_ms = self._last_ms
        for held in (job, *worker.prefetched):
            last = last_ms.get(held.msg.task)
            if last is None or last > PREFETCH_SHORT_MS:
                return math.inf
            end = max(end, held.start) + last / 1000
        return end

    def _send_ahead(self, now: float) -> None:
        """Busy workers take queued runs ahead (the module docstring's rules), each the ready
        run that starts first, the worker expected free first taking it."""
        queue = self.queue
        while queue:
            best, free = None, math.inf
            for worker in self.workers.values():
                at = self._free_at(worker, now)
                if at < free:
                    best, free = worker, at
            if best is None:
                return
            while (job := queue.pop_ready()) is not None and self._refused_stale(job):
                pass
            if job is None:
                return
            body = self._run_body(job.msg) if job.start >= free else b""
            if not body or len(body) > PREFETCH_MAX_BYTES or not self._write_ahead(best, job,
                                                                                   body):
                queue.push_back(job)
                return
            job.wid = best.wid
            job.started = now
            best.prefetched.append(job)
            self.sent_ahead += 1

    def _write_ahead(self, worker: Worker, job: Job, body: bytes) -> bool:
        link = worker.identity
        assert link is not None
        try:
            return send_ahead(link, RUN, body)
        except LinkClosed as exc:  # it took part of it and then nothing: the link is broken
            log.warning("worker %s (pid %s) did not take a run sent ahead: %s", worker.child,
                        worker.pid, exc)
            self._drop_link(link, eof=False)
            return False

    def _promote(self, worker: Worker, now: float) -> Job | None:
        """``worker`` answered its run: the next run in its link (if any) is the one it runs."""
        if not worker.prefetched:
            worker.job = None
            return None
        job = worker.job = worker.prefetched.pop(0)
        job.started = now
        return job

    # --- losing a worker with runs in its link ----------------------------------------------

    def _detach(self, worker: Worker, after: str, started: bool, why: str) -> None:
        """``worker`` is being killed (its ``identity`` not yet cleared): the runs waiting in
        its link wait for that link's end (see the module docstring)."""
        jobs, worker.prefetched = worker.prefetched, []
        if not jobs:
            return
        link = worker.identity
        if link is None or link.fileno() < 0 or link.fileno() not in self._links:
            self._settle(Detached(None, after, jobs, started, why))
            return
        self._detached[link.fileno()] = Detached(link, after, jobs, started, why)

    def _requeue_prefetched(self, worker: Worker, why: str) -> None:
        """``worker`` ended and its link was read to the end: the runs still waiting in it
        never started: queued again."""
        jobs, worker.prefetched = worker.prefetched, []
        if jobs:
            self._settle(Detached(None, "", jobs, False, why))

    def _detached_done(self, identity: socket.socket, run: Any, outcome: Any, state: Any,
                       duration: Any, error: Any) -> bool:
        """A DONE on the link of a worker being killed: True if it answered one of the runs
        sent ahead to it (answered here)."""
        entry = self._detached.get(identity.fileno())
        if entry is None:
            return False
        if run == entry.after:
            entry.started = True  # (that run was answered already: a timeout)
            return False
        if entry.jobs and run == entry.jobs[0].msg.run_id:
            job = entry.jobs.pop(0)
            entry.after, entry.started = run, True
            self._finish(job, outcome, state, duration, error)
            return True
        return False

    def _link_ended(self, fd: int) -> None:
        """The end of a link: its detached runs (if any) are settled."""
        entry = self._detached.pop(fd, None)
        if entry is not None:
            self._settle(entry)

    def _settle(self, entry: Detached) -> None:
        """Fail the first run if its worker may have started it; queue the others again."""
        jobs = entry.jobs
        if jobs and entry.started:
            job = jobs.pop(0)
            self.prefetch_lost += 1
            self._reply(job, "error", None,
                        f"its worker was stopped ({entry.why}) after it may have started "
                        f"this run, which was sent to it ahead: not run again")
        for job in jobs:
            self.requeued += 1
            log.info("task=%s slot=%d run=%s sent ahead to a worker that is gone (%s): "
                     "queued again", job.msg.task, job.msg.slot, job.msg.run_id, entry.why)
            job.wid = None
            if not self._refused_stale(job):
                self.queue.push_back(job)
        if jobs:
            self._pump(self._now())

    # --- reading ------------------------------------------------------------------------------

    def _detached_runs(self) -> list[Job]:
        return [job for entry in self._detached.values() for job in entry.jobs]

    def holding(self) -> dict[str, list[dict[str, Any]]]:
        """What each worker holds: its run, then the runs waiting in its link (status)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for worker in self.workers.values():
            if worker.job is None:
                continue
            out[worker.child] = [
                {"task": job.msg.task, "slot": job.msg.slot, "run": job.msg.run_id,
                 "ahead": i > 0}
                for i, job in enumerate((worker.job, *worker.prefetched))]
        for entry in self._detached.values():
            out.setdefault("(a worker being replaced)", []).extend(
                {"task": job.msg.task, "slot": job.msg.slot, "run": job.msg.run_id,
                 "ahead": True} for job in entry.jobs)
        return out
