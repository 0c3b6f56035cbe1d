"""The supervisor's loop: one thread that owns the children, their pidfds and the control
socket. It waits in ``select`` (epoll) on child pidfds and on the control socket, asks the
pure cores (``_strategy``, ``_intensity``) what to do, and does it through ``_spawn``.

Only this thread touches the children; other threads talk to it through the control
socket (one length-prefixed pickled request, one reply) and learn its end through the
``done`` future. Terminating a child blocks the loop, exactly as in OTP: requests and other
exits wait until it is done, then are handled in order.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from supervisor._errors import (
    ChildStartError,
    SupervisorError,
)
from supervisor._intensity import RestartIntensity
from supervisor._output import OutputPump, Target
from supervisor._requests import Child, LoopConfig, Requests
from supervisor._spawn import (
    HAVE_PIDFD,
    Watchdog,
    kill_tree,
    process_tree,
    signal_tree,
    spawn,
    wait_exited,
)
from supervisor._strategy import ChildView, on_child_exit
from supervisor._types import (
    Event,
    EventKind,
    ExitReason,
    ShutdownInfo,
    ShutdownReason,
)

__all__ = ["Loop", "LoopConfig"]

log = logging.getLogger("supervisor")


@dataclass
class Loop(Requests):
    """One supervisor's state and loop; :meth:`run` is the body of its thread."""

    config: LoopConfig
    ctl: socket.socket
    wake: socket.socket
    started: Future[None]
    done: Future[ShutdownInfo]
    children: list[Child] = field(default_factory=list)
    info: ShutdownInfo | None = None
    _pending: deque[tuple[Child, ExitReason]] = field(default_factory=deque)
    pump: OutputPump | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        self.intensity = RestartIntensity(cfg.intensity, cfg.period)
        self.sel = selectors.DefaultSelector()
        self.watchdog = Watchdog()
        self.thread_id = threading.get_ident()
        self.wake.setblocking(False)

    # ---------------------------------------------------------------- main body

    def run(self) -> None:
        """Start the children left to right, then serve until the supervisor stops."""
        self.thread_id = threading.get_ident()
        info = ShutdownInfo(ShutdownReason.CRASHED, detail="loop ended unexpectedly")
        try:
            self.watchdog.start()
            self.sel.register(self.ctl, selectors.EVENT_READ, "ctl")
            self.sel.register(self.wake, selectors.EVENT_READ, "wake")
            if self.config.parent_ctl is not None:
                self.sel.register(self.config.parent_ctl, selectors.EVENT_READ, "parent")
            if self._start_initial_children():
                self.started.set_result(None)
                self._serve()
            info = self.info or info
        except BaseException as exc:
            log.exception("%s: supervisor loop crashed; killing all children", self.config.name)
            info = ShutdownInfo(ShutdownReason.CRASHED, detail=repr(exc))
            for child in reversed(self.children):
                self._kill_now(child)
            if not self.started.done():
                self.started.set_exception(SupervisorError(f"supervisor crashed: {exc!r}"))
        finally:
            self._close()
            self._emit(Event("shutdown", self.config.name, info=info))
            self.done.set_result(info)

    def _start_initial_children(self) -> bool:
        for spec in self.config.children:
            child = Child(spec)
            self.children.append(child)
            try:
                self._start(child, "start")
            except ChildStartError as exc:
                self.children.remove(child)
                self.info = ShutdownInfo(
                    ShutdownReason.START_FAILED,
                    child.id,
                    ExitReason("abnormal", detail=exc.detail),
                    detail=exc.detail,
                )
                log.error(
                    "%s: child %r failed to start: %s", self.config.name, child.id, exc.detail
                )
                self._stop_all()
                exc.info = self.info
                self.started.set_exception(exc)
                return False
        return True

    def _serve(self) -> None:
        poll_interval = None if HAVE_PIDFD else 0.05
        while self.info is None:
            timeout = 0 if self._pending else poll_interval
            for key, _ in self.sel.select(timeout):
                if self.info is not None:
                    break
                if key.data == "ctl":
                    self._handle_control(self.ctl)
                elif key.data == "parent":
                    assert self.config.parent_ctl is not None
                    self._handle_control(self.config.parent_ctl)
                elif key.data == "wake":
                    self._handle_wake()
                else:
                    # Re-check: handling an earlier event may have replaced this child,
                    # and its new pidfd can reuse the old number.
                    child = key.data
                    proc = child.proc
                    if proc is not None and proc.pidfd == key.fd and wait_exited(proc, 0):
                        self._child_exited(child)
            if not HAVE_PIDFD:
                for child in list(self.children):
                    if self.info is None and child.proc is not None:
                        if child.proc.proc.poll() is not None:
                            self._child_exited(child)
            while self._pending and self.info is None:
                child, reason = self._pending.popleft()
                if child in self.children and not child.running:
                    self._decide(child, reason)

    def _close(self) -> None:
        self.sel.close()
        self.watchdog.close()
        if self.pump is not None:
            self.pump.stop()
        for sock in (self.ctl, self.wake, self.config.parent_ctl):
            if sock is None:
                continue
            try:
                sock.close()
            except OSError:
                pass

    # ---------------------------------------------------------------- child exits

    def _child_exited(self, child: Child) -> None:
        assert child.proc is not None
        pid, reason = self._reap(child, by_supervisor=False)
        log.log(
            logging.INFO if reason.kind != "abnormal" else logging.WARNING,
            "%s: child %r (pid %d) exited: %s",
            self.config.name,
            child.id,
            pid,
            reason,
        )
        self._emit(Event("exit", self.config.name, child.id, pid, reason))
        self._decide(child, reason)

    def _decide(self, child: Child, reason: ExitReason) -> None:
        cfg = self.config
        views = [
            ChildView(c.id, c.spec.restart, c.running, c.spec.significant) for c in self.children
        ]
        decision = on_child_exit(cfg.strategy, cfg.auto_shutdown, views, child.id, reason.kind)
        if decision.restart and not self.intensity.record(cfg.clock()):
            log.error(
                "%s: reached max restart intensity (more than %d restarts in %g s), "
                "shutting down; last exit: child %r: %s",
                cfg.name,
                cfg.intensity,
                cfg.period,
                child.id,
                reason,
            )
            self._shutdown(ShutdownInfo(ShutdownReason.INTENSITY, child.id, reason))
            return
        if decision.restart and len(decision.actions) > 1:
            log.info(
                "%s: %s: restarting %s after child %r exited",
                cfg.name,
                cfg.strategy,
                [a.child_id for a in decision.actions if a.op == "start"],
                child.id,
            )
        for action in decision.actions:
            target = self._find(action.child_id)
            if target is None:
                continue
            if action.op == "stop":
                self._terminate(target)
            elif action.op == "remove":
                self.children.remove(target)
            else:
                try:
                    self._start(target, "restart")
                except ChildStartError as exc:
                    log.error("%s: restarting child %r failed: %s", cfg.name, target.id, exc.detail)
                    self._pending.append((target, ExitReason("abnormal", detail=exc.detail)))
        if decision.auto_shutdown:
            log.info(
                "%s: significant child %r ended (%s): auto_shutdown=%s, shutting down",
                cfg.name,
                child.id,
                reason,
                cfg.auto_shutdown,
            )
            self._shutdown(ShutdownInfo(ShutdownReason.AUTO_SHUTDOWN, child.id, reason))

    # ---------------------------------------------------------------- start / stop

    def _start(self, child: Child, kind: EventKind) -> int:
        out, err = self.config.output(child.spec)
        pipes: list[tuple[int, int, Target]] = []  # (read end, write end, target)
        try:
            if out is not None or err is not None:
                if self.pump is None:
                    self.pump = OutputPump(self.config.name)
                for target in (out, err):
                    if target is not None and all(t.path != target.path for *_, t in pipes):
                        try:
                            self.pump.open(target)
                        except OSError as exc:
                            raise ChildStartError(
                                child.id, f"cannot open {target.path}: {exc.strerror}"
                            ) from None
                        pipes.append((*os.pipe(), target))
            fds = {t.path: w for _, w, t in pipes}
            spawned = spawn(
                child.spec,
                stdout=None if out is None else fds[out.path],
                stderr=None if err is None else fds[err.path],
                label=self.config.full_id(child.id),
                label_lines=self.config.label_output,
            )
        except BaseException:
            for r, w, _ in pipes:
                os.close(r)
                os.close(w)
            raise
        for r, w, target in pipes:
            os.close(w)
            assert self.pump is not None
            self.pump.attach(r, target)
        child.proc = spawned
        child.started_at = self.config.clock()
        if kind == "restart":
            child.restarts += 1
        self.watchdog.add(spawned.pid)
        if spawned.pidfd >= 0:
            self.sel.register(spawned.pidfd, selectors.EVENT_READ, child)
        verb = "started" if kind == "start" else "restarted"
        log.info("%s: %s child %r (pid %d)", self.config.name, verb, child.id, spawned.pid)
        self._emit(Event(kind, self.config.name, child.id, spawned.pid))
        return spawned.pid

    def _reap(self, child: Child, *, by_supervisor: bool) -> tuple[int, ExitReason]:
        """The child has exited (zombie): kill what is left of its process group while its
        pid still pins the group id, then reap it and forget its pidfd."""
        spawned = child.proc
        assert spawned is not None
        signal_tree(spawned.pid, [], signal.SIGKILL)
        returncode = spawned.proc.wait()
        self.watchdog.remove(spawned.pid)
        if spawned.pidfd >= 0:
            self.sel.unregister(spawned.pidfd)
            os.close(spawned.pidfd)
        if spawned.channel is not None:
            spawned.channel.close()
        child.proc = None
        child.started_at = None
        reason = ExitReason.from_returncode(returncode, by_supervisor=by_supervisor,
                                            shutdown_exits=tuple(child.spec.shutdown_exits))
        child.last_exit = reason
        return spawned.pid, reason

    def _terminate(self, child: Child) -> None:
        """Stop a running child honouring its ``shutdown``, and end its whole tree."""
        spawned = child.proc
        if spawned is None:
            return
        shutdown = child.spec.shutdown
        tree = process_tree(spawned.pid)
        if shutdown == "brutal_kill":
            signal_tree(spawned.pid, tree, signal.SIGKILL)
            wait_exited(spawned, None)
        else:
            if child.spec.is_supervisor:
                # It stops its own children in order; the rest of the tree is its job.
                spawned.proc.send_signal(signal.SIGTERM)
            else:
                signal_tree(spawned.pid, tree, signal.SIGTERM)
            timeout = None if shutdown == "infinity" else int(shutdown or 0) / 1000
            if not wait_exited(spawned, timeout):
                log.warning(
                    "%s: child %r (pid %d) did not stop within %s ms, killing it",
                    self.config.name,
                    child.id,
                    spawned.pid,
                    shutdown,
                )
                tree += process_tree(spawned.pid)
                signal_tree(spawned.pid, tree, signal.SIGKILL)
                wait_exited(spawned, None)
        tree += process_tree(spawned.pid)
        pid, reason = self._reap(child, by_supervisor=True)
        kill_tree(pid, tree)
        log.info("%s: child %r (pid %d) terminated: %s", self.config.name, child.id, pid, reason)
        self._emit(Event("exit", self.config.name, child.id, pid, reason))

    def _kill_now(self, child: Child) -> None:
        if child.proc is None:
            return
        try:
            tree = process_tree(child.proc.pid)
            signal_tree(child.proc.pid, tree, signal.SIGKILL)
            wait_exited(child.proc, None)
            pid, _ = self._reap(child, by_supervisor=True)
            kill_tree(pid, tree)
        except Exception:
            log.exception("%s: could not kill child %r", self.config.name, child.id)

    def _stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self._terminate(child)

    def _shutdown(self, info: ShutdownInfo) -> None:
        if self.info is not None:
            return
        self._stop_all()
        self.info = info
        level = logging.INFO if info.ok else logging.ERROR
        log.log(level, "%s: supervisor stopped: %s", self.config.name, info)

    def _emit(self, event: Event) -> None:
        hook = self.config.on_event
        if hook is None:
            return
        try:
            hook(event)
        except Exception:
            log.exception("%s: on_event hook raised (ignored)", self.config.name)

    # ---------------------------------------------------------------- control

    def _handle_wake(self) -> None:
        try:
            data = self.wake.recv(64)
        except BlockingIOError:
            return
        if data:
            log.info("%s: stop requested by signal", self.config.name)
        self._shutdown(ShutdownInfo(ShutdownReason.STOPPED))
