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
import pickle
import selectors
import signal
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from supervisor._errors import (
    ChildNotFoundError,
    ChildStartError,
    ChildStateError,
    InvalidSpecError,
    SupervisorError,
)
from supervisor._intensity import RestartIntensity
from supervisor._spawn import (
    HAVE_PIDFD,
    Spawned,
    Watchdog,
    kill_tree,
    process_tree,
    signal_tree,
    spawn,
    wait_exited,
)
from supervisor._spec import ChildSpec
from supervisor._strategy import ChildView, on_child_exit
from supervisor._types import (
    AutoShutdown,
    ChildInfo,
    Event,
    EventKind,
    ExitReason,
    ShutdownInfo,
    ShutdownReason,
    Strategy,
)

__all__ = ["Loop", "LoopConfig", "recv_msg", "send_msg"]

log = logging.getLogger("supervisor")

_HEADER = struct.Struct("!I")


def send_msg(sock: socket.socket, obj: object) -> None:
    """Send one pickled, length-prefixed message (control socket, in-process only)."""
    data = pickle.dumps(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> Any:
    """Receive one message; ``None`` when the peer has closed the socket."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    body = _recv_exact(sock, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


@dataclass(frozen=True)
class LoopConfig:
    """Everything the loop needs from its :class:`Supervisor` (validated there)."""

    name: str
    children: tuple[ChildSpec, ...]
    strategy: Strategy
    intensity: int
    period: float
    auto_shutdown: AutoShutdown
    on_event: Callable[[Event], None] | None
    clock: Callable[[], float]


@dataclass(eq=False)  # identity: a child is the same child across restarts
class _Child:
    spec: ChildSpec
    proc: Spawned | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def running(self) -> bool:
        return self.proc is not None


@dataclass
class Loop:
    """One supervisor's state and loop; :meth:`run` is the body of its thread."""

    config: LoopConfig
    ctl: socket.socket
    wake: socket.socket
    started: Future[None]
    done: Future[ShutdownInfo]
    children: list[_Child] = field(default_factory=list)
    info: ShutdownInfo | None = None
    _pending: deque[tuple[_Child, ExitReason]] = field(default_factory=deque)

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
            child = _Child(spec)
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
                    self._handle_control()
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
        for sock in (self.ctl, self.wake):
            try:
                sock.close()
            except OSError:
                pass

    # ---------------------------------------------------------------- child exits

    def _child_exited(self, child: _Child) -> None:
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

    def _decide(self, child: _Child, reason: ExitReason) -> None:
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

    def _start(self, child: _Child, kind: EventKind) -> int:
        spawned = spawn(child.spec)
        child.proc = spawned
        self.watchdog.add(spawned.pid)
        if spawned.pidfd >= 0:
            self.sel.register(spawned.pidfd, selectors.EVENT_READ, child)
        verb = "started" if kind == "start" else "restarted"
        log.info("%s: %s child %r (pid %d)", self.config.name, verb, child.id, spawned.pid)
        self._emit(Event(kind, self.config.name, child.id, spawned.pid))
        return spawned.pid

    def _reap(self, child: _Child, *, by_supervisor: bool) -> tuple[int, ExitReason]:
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
        child.proc = None
        return spawned.pid, ExitReason.from_returncode(returncode, by_supervisor=by_supervisor)

    def _terminate(self, child: _Child) -> None:
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

    def _kill_now(self, child: _Child) -> None:
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

    def _find(self, child_id: str) -> _Child | None:
        return next((c for c in self.children if c.id == child_id), None)

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

    def _handle_control(self) -> None:
        request = recv_msg(self.ctl)
        if request is None:  # the Supervisor object is gone: stop like stop()
            self._shutdown(ShutdownInfo(ShutdownReason.STOPPED, detail="control closed"))
            return
        op, args = request
        try:
            reply: tuple[str, Any] = ("ok", getattr(self, "_op_" + op)(*args))
        except SupervisorError as exc:
            reply = ("err", exc)
        except Exception as exc:
            log.exception("%s: control request %r failed", self.config.name, op)
            reply = ("err", SupervisorError(f"{op} failed: {exc!r}"))
        try:
            send_msg(self.ctl, reply)
        except (pickle.PicklingError, TypeError, AttributeError):
            send_msg(self.ctl, ("err", SupervisorError(str(reply[1]))))
        except OSError:
            pass  # the caller went away

    def _op_stop(self) -> None:
        self._shutdown(ShutdownInfo(ShutdownReason.STOPPED))

    def _op_which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(
                c.id,
                c.proc.pid if c.proc else None,
                "supervisor" if c.spec.is_supervisor else "worker",
                "running" if c.running else "terminated",
            )
            for c in self.children
        ]

    def _op_count_children(self) -> dict[str, int]:
        sups = sum(1 for c in self.children if c.spec.is_supervisor)
        return {
            "specs": len(self.children),
            "active": sum(1 for c in self.children if c.running),
            "supervisors": sups,
            "workers": len(self.children) - sups,
        }

    def _get(self, child_id: str) -> _Child:
        child = self._find(child_id)
        if child is None:
            raise ChildNotFoundError(f"no child {child_id!r}")
        return child

    def _op_start_child(self, spec: ChildSpec) -> int:
        existing = self._find(spec.id)
        if existing is not None:
            state = "already_started" if existing.running else "already_present"
            raise ChildStateError(f"child {spec.id!r}: {state}")
        if spec.significant and self.config.auto_shutdown == "never":
            raise InvalidSpecError(
                spec.id, "significant", True, "not allowed with auto_shutdown='never'"
            )
        child = _Child(spec)
        pid = self._start(child, "start")
        self.children.append(child)
        return pid

    def _op_terminate_child(self, child_id: str) -> None:
        child = self._get(child_id)
        self._terminate(child)
        if child.spec.restart == "temporary":
            self.children.remove(child)

    def _op_restart_child(self, child_id: str) -> int:
        child = self._get(child_id)
        if child.running:
            raise ChildStateError(f"child {child_id!r} is running")
        return self._start(child, "restart")

    def _op_delete_child(self, child_id: str) -> None:
        child = self._get(child_id)
        if child.running:
            raise ChildStateError(f"child {child_id!r} is running")
        self.children.remove(child)

    def _op_ping(self) -> int:
        return os.getpid()
