"""The worker pool's lifecycle (split out of :mod:`clerk._executor`): the supervisor of the
worker processes, a worker's start in the place of one that died or was killed (on a helper
thread, so the loop keeps heartbeating), the pauses between tries of a start that fails
(``START_RETRY_PAUSES``), and the give-up when a worker id would stay without a process.

:class:`WorkerPool` is a base of :class:`clerk._executor.Executor` and works on its state (the
pool ``workers``, the events socket to its loop); what becomes of a death or a give-up (the
runs it held, the ones queued) is the executor's (``_on_worker_events``, ``_give_up``).
Supervisor events and helper threads reach the loop as JSON lines over the events socket.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from clerk._workerreplies import Worker
from supervisor import ChildNotFoundError, ChildSpec, Event, NotRunningError, Supervisor

__all__ = ["KILLED_FROM_OUTSIDE", "START_RETRY_PAUSES", "WorkerPool"]

log = logging.getLogger("clerk.executor")  # (the executor's: one logger for the pool)

#: A worker that could not be started is tried again after each of these pauses (s); then the
#: pool gives up. Both ways a start fails: ``start_child`` raises (in the place of one killed
#: past a timeout or one that died: WorkerPool._replace), or the process it started exits
#: before its READY (a site hook that fails, a broken interpreter: WorkerPool._start_failed).
START_RETRY_PAUSES = (0.1, 0.5, 1.5)

#: A worker ended by one of these before its READY was killed from outside (the OOM killer, an
#: operator, a chaos tool), not unable to start: an idle death (replaced at once, counted by
#: the pool's intensity as before), not a failed start. A failed start is the worker's own
#: exit (a code, or a crash such as SIGSEGV or SIGABRT), the only evidence that starting one
#: again would fail the same way (``start_gave_up``, EXIT_CANNOT_START).
KILLED_FROM_OUTSIDE = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


class WorkerPool:
    """The worker processes of one node: started, replaced, given up on (see the module
    docstring)."""

    node: str
    workers: dict[int, Worker]
    restarts: int
    _log: tuple[str, str | None]
    _endpoint: str
    _events_w: Any
    sup: Supervisor
    #: The pool gave up because a worker could not be started (its own exits before READY,
    #: or ``start_child`` raising, each ``len(START_RETRY_PAUSES) + 1`` times in a row): with
    #: no worker ever ready, the agent exits EXIT_CANNOT_START (clerk._agent), not retried.
    start_gave_up: bool

    if TYPE_CHECKING:  # written by the executor
        def _check_capacity(self) -> None: ...
        def _give_up(self, why: str, *, pool_gone: bool) -> None: ...

    def _start_pool(self, workers: int) -> None:
        """Start the supervisor of ``workers`` worker processes (``self.workers``)."""
        self._killers: list[threading.Thread] = []
        self._closing = threading.Event()  # close() began: _replace retries no more
        self._generation = 0
        self.start_gave_up = False
        self.sup = Supervisor(
            [self._spec(w.child, w.wid) for w in self.workers.values()],
            # (Its intensity counts restarts, and it makes none: the children are temporary.)
            strategy="one_for_one", intensity=max(10, 5 * workers), period=60,
            name=f"{self.node} workers", on_event=self._hook,
        )
        self.sup.start()

    def _stop_pool(self) -> None:
        """Stop starting workers (a retry pause ends at once), then stop the supervisor."""
        self._closing.set()
        for killer in self._killers:
            killer.join(timeout=5)
        try:
            self.sup.stop()
        except Exception:  # already stopped (e.g. gave up)
            pass

    def _spec(self, child: str, wid: int) -> ChildSpec:
        return ChildSpec(id=child, start="clerk._worker:main",
                         args=(self._endpoint, wid, self.node, *self._log, child),
                         restart="temporary", shutdown="brutal_kill")

    # --- supervisor events (called on the supervisor's thread: hand off through a socket) ---

    def _hook(self, event: Event) -> None:
        if event.kind == "shutdown":
            # The worker supervisor stopped: by close() (ok), or it gave up (its restart
            # intensity, a child it could not start): the pool is gone for good.
            if event.info is not None and not event.info.ok:
                self._send_event({"kind": "gave up", "pool_gone": True,
                                  "reason": f"worker supervisor gave up: {event.info}"})
            return
        if event.kind != "exit" or event.child_id is None:
            return
        self._send_event({"kind": event.kind, "child": event.child_id, "pid": event.pid,
                          "reason": str(event.reason) if event.reason else "",
                          "signal": event.reason.signal if event.reason else None})

    def _send_event(self, ev: dict[str, Any]) -> None:
        """To the loop (from another thread), through the events socket."""
        try:
            self._events_w.send(json.dumps(ev).encode() + b"\n")
        except OSError:
            pass

    def _replace_worker(self, worker: Worker) -> None:
        """Kill ``worker``'s whole process tree and start a new one in its place; the run it
        held (if any) is the caller's to answer. The worker takes no run meanwhile."""
        worker.job = None
        worker.identity = None
        child = worker.child
        worker.pid = None  # its exit event is ours, not a crash
        worker.said_ready = False
        # Off the loop: killing a tree waits for it to be gone (up to a second when a
        # grandchild lingers as a zombie), and the agent must keep heartbeating meanwhile
        # or its followers depose it. The new worker says ready when it is up.
        self._generation += 1
        self.restarts += 1
        worker.child = f"worker-{worker.wid}-{self._generation}"
        self._start_thread(child, worker)

    def _restart_worker(self, worker: Worker, pause: float = 0.0) -> None:
        """Start a new worker in the place of ``worker``, whose process ended (a temporary
        child: the supervisor has dropped it already), after ``pause`` seconds."""
        worker.pid = None
        worker.said_ready = False
        self._generation += 1
        self.restarts += 1
        worker.child = f"worker-{worker.wid}-{self._generation}"
        self._start_thread(None, worker, pause)

    def _start_failed(self, worker: Worker, child: str, pid: Any, reason: Any) -> float | None:
        """``worker``'s process ``child`` exited before its READY: a start that failed (as
        one whose ``start_child`` raised, in ``_replace``). The pause before the next try
        (``START_RETRY_PAUSES``, by how many failed in a row), or None: that was the last
        try, and the pool gave up (``_give_up``, which the agent logs, once: not each try,
        a DEBUG line). A worker that starts (its READY) begins the count again."""
        worker.start_failures += 1
        tries = worker.start_failures
        if tries > len(START_RETRY_PAUSES):
            self.start_gave_up = True
            self._check_capacity()
            self._give_up(f"could not start a worker: its process exited before it was "
                          f"ready, {tries} times in a row (the last: {child}, pid {pid}: "
                          f"{reason})", pool_gone=False)
            return None
        pause = START_RETRY_PAUSES[tries - 1]
        log.debug("worker %s (pid %s) exited before it was ready: %s (try %d of %d); the next "
                  "in %.1f s", child, pid, reason, tries, len(START_RETRY_PAUSES) + 1, pause)
        return pause

    def _start_thread(self, old: str | None, worker: Worker, pause: float = 0.0) -> None:
        killer = threading.Thread(target=self._replace,
                                  args=(old, worker.child, worker.wid, pause),
                                  name=f"start {worker.child}", daemon=True)
        self._killers = [t for t in self._killers if t.is_alive()] + [killer]
        killer.start()

    def _replace(self, old: str | None, new: str, wid: int, first: float = 0.0) -> None:
        """Start a fresh worker, then kill the old one's whole tree (on a helper thread).

        The new one first, as a new child: ending the old tree can take the supervisor a
        while, and runs that arrive meanwhile should not wait for it. Neither a start nor a
        terminate counts against the restart intensity. A start that fails (the system out
        of processes or memory, for one) ends the old tree at once (the run it held was
        answered ``timeout``: it must not go on through the pauses, and its processes free
        what the start lacked), then is tried again after each of ``START_RETRY_PAUSES``;
        after the last, that worker id would stay without a process for good: the pool gives
        up (``_give_up``, on the loop). A supervisor that is not running (it gave up, or
        ``close``) is not retried: its shutdown says so. ``old`` None: there is none to end
        (it died; a temporary child's spec goes with it). ``first``: seconds to wait first
        (the one before another try of a start that failed: ``_start_failed``)."""
        if first > 0 and self._closing.wait(first):
            return
        old_gone = old is None
        for pause in (*START_RETRY_PAUSES, None):
            try:
                self.sup.start_child(self._spec(new, wid))
                break
            except NotRunningError:
                break
            except Exception as exc:
                if old is not None and not old_gone:
                    self._remove(old)
                    old_gone = True
                if pause is None:
                    log.error("could not start %s: %s (tried %d times)", new, exc,
                              len(START_RETRY_PAUSES) + 1)
                    self._send_event({"kind": "gave up", "pool_gone": False,
                                      "cannot_start": True,
                                      "reason": f"could not start {new}: {exc}"})
                    break
                log.warning("could not start %s: %s (again in %.1f s)", new, exc, pause)
                if self._closing.wait(pause):
                    break
        if old is not None and not old_gone:
            self._remove(old)

    def _remove(self, old: str) -> None:
        """End the worker child ``old`` (its whole tree); a temporary child's spec goes with
        it (one that died meanwhile is gone already)."""
        try:
            self.sup.terminate_child(old)
        except ChildNotFoundError:
            pass
        except Exception as exc:
            log.error("could not remove %s: %s", old, exc)

