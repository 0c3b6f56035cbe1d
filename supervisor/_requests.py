"""The requests a supervisor's loop serves, from its own API and from a parent supervisor.

Rules:

* A request is ``(op, args)``, answered by ``("ok", value)`` or ``("err", exception)``;
  it is handled by ``_op_<op>`` in the loop thread, in arrival order, between child exits.
* A child id with a ``/`` (``"pool/worker-1"``) names a child of a nested supervisor: the
  request goes to the nested supervisor ``pool`` over the channel its process was started
  with, and its answer comes back. The parent's loop waits for it, as an OTP call to a
  supervisor does. Ids in answers and errors are full paths from the top.
* Reload (:mod:`supervisor._reload`) is applied here, in one request, so no child exit
  interleaves with it: stop the removed children and the changed ones (right to left),
  take the new flags and order, start the new and changed ones (left to right), then
  recurse into nested supervisors. A child whose spec is equal but whose output the new
  flags move elsewhere (``logs``, rotation, ``label_output``) counts as changed. A child
  that fails to start is handled like a failed restart (an abnormal exit, counted against
  the restart intensity).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor._errors import (
    ChildNotFoundError,
    ChildStartError,
    ChildStateError,
    InvalidSpecError,
    NotRunningError,
    SupervisorError,
)
from supervisor._intensity import RestartIntensity
from supervisor._output import Target
from supervisor._reload import plan_reload
from supervisor._spawn import Spawned
from supervisor._spec import ChildSpec, NestedSupervisor
from supervisor._types import (
    AutoShutdown,
    ChildInfo,
    Event,
    EventKind,
    ExitReason,
    ReloadResult,
    ShutdownInfo,
    ShutdownReason,
    Strategy,
)
from supervisor._wire import recv_msg, send_msg

__all__ = ["Child", "LoopConfig", "Requests"]

log = logging.getLogger("supervisor")

# Requests whose first argument is a child id and may be routed to a nested supervisor.
_ROUTED = {"terminate_child", "restart_child", "delete_child", "child_info"}


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
    path: str = ""  # "" at the top; "pool" for the nested supervisor child "pool"
    logs: str | None = None
    max_bytes: int = 0
    backups: int = 0
    label_output: bool = False
    parent_ctl: socket.socket | None = None  # a nested supervisor's channel to its parent

    def full_id(self, child_id: str) -> str:
        return f"{self.path}/{child_id}" if self.path else child_id

    def output(self, spec: ChildSpec) -> tuple[Target | None, Target | None]:
        """Where a child's stdout and stderr go (``None``: the supervisor's own output)."""
        if spec.is_supervisor:
            return None, None
        out, err = spec.output_files
        if self.logs is not None:
            out = out or os.path.join(self.logs, f"{spec.id}.out")
            err = err or os.path.join(self.logs, f"{spec.id}.err")
        max_bytes = spec.max_bytes or self.max_bytes
        backups = self.backups if spec.backups is None else spec.backups
        return (
            None if out is None else Target(out, max_bytes, backups),
            None if err is None else Target(err, max_bytes, backups),
        )

    def runs_as(self, spec: ChildSpec) -> tuple[object, ...]:
        """What the supervisor's own flags decide about how a child runs (its output, and
        the labels of a Python worker's lines): a reload that changes it restarts the child."""
        python_worker = spec.command is None and not spec.is_supervisor
        return self.output(spec), self.label_output if python_worker else None


@dataclass(eq=False)  # identity: a child is the same child across restarts
class Child:
    spec: ChildSpec
    proc: Spawned | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: ExitReason | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def running(self) -> bool:
        return self.proc is not None


class Requests:
    """The loop's request handlers (mixed into ``Loop``, which provides the rest)."""

    config: LoopConfig
    children: list[Child]
    intensity: RestartIntensity
    _pending: deque[tuple[Child, ExitReason]]

    def _start(self, child: Child, kind: EventKind) -> int:
        raise NotImplementedError

    def _terminate(self, child: Child) -> None:
        raise NotImplementedError

    def _shutdown(self, info: ShutdownInfo) -> None:
        raise NotImplementedError

    def _find(self, child_id: str) -> Child | None:
        return next((c for c in self.children if c.id == child_id), None)

    def _handle_control(self, sock: socket.socket) -> None:
        request = recv_msg(sock)
        if request is None:  # the Supervisor object (or our parent) is gone: stop
            self._shutdown(ShutdownInfo(ShutdownReason.STOPPED, detail="control closed"))
            return
        op, args = request
        try:
            if op in _ROUTED and "/" in args[0]:
                value = self._forward(args[0], op, args[1:])
            else:
                value = getattr(self, "_op_" + op)(*args)
            reply: tuple[str, Any] = ("ok", value)
        except SupervisorError as exc:
            reply = ("err", exc)
        except Exception as exc:
            log.exception("%s: control request %r failed", self.config.name, op)
            reply = ("err", SupervisorError(f"{op} failed: {exc!r}"))
        try:
            send_msg(sock, reply)
        except OSError:
            pass  # the caller went away
        except Exception:  # an answer that does not pickle
            send_msg(sock, ("err", SupervisorError(str(reply[1]))))

    def _ask_nested(self, child: Child, op: str, args: tuple[object, ...]) -> Any:
        """Send a request to the nested supervisor ``child`` and return its answer."""
        channel = child.proc.channel if child.proc is not None else None
        if channel is None:
            raise NotRunningError(
                f"nested supervisor {self.config.full_id(child.id)!r} is not running"
            )
        try:
            send_msg(channel, (op, args))
            reply = recv_msg(channel)
        except OSError:
            reply = None
        if reply is None:
            raise NotRunningError(f"nested supervisor {self.config.full_id(child.id)!r} stopped")
        status, value = reply
        if status == "err":
            raise value
        return value

    def _forward(self, path: str, op: str, rest: tuple[object, ...]) -> Any:
        head, _, tail = path.partition("/")
        child = self._get(head)
        if not child.spec.is_supervisor:
            raise ChildNotFoundError(
                f"no child {self.config.full_id(path)!r} "
                f"({self.config.full_id(head)!r} is not a supervisor)"
            )
        return self._ask_nested(child, op, (tail, *rest))

    def _get(self, child_id: str) -> Child:
        child = self._find(child_id)
        if child is None:
            known = ", ".join(self.config.full_id(c.id) for c in self.children) or "none"
            raise ChildNotFoundError(f"no child {self.config.full_id(child_id)!r} (known: {known})")
        return child

    # ---------------------------------------------------------------- requests

    def _op_stop(self) -> None:
        self._shutdown(ShutdownInfo(ShutdownReason.STOPPED))

    def _info(self, c: Child, recursive: bool) -> ChildInfo:
        nested: tuple[ChildInfo, ...] = ()
        if recursive and c.spec.is_supervisor and c.running:
            try:
                nested = tuple(self._ask_nested(c, "which_children", (True,)))
            except NotRunningError:
                pass
        out, err = self.config.output(c.spec)
        return ChildInfo(
            id=self.config.full_id(c.id) if recursive else c.id,
            pid=c.proc.pid if c.proc else None,
            type="supervisor" if c.spec.is_supervisor else "worker",
            status="running" if c.running else "terminated",
            restart=c.spec.restart,
            uptime=None if c.started_at is None else self.config.clock() - c.started_at,
            restarts=c.restarts,
            last_exit=c.last_exit,
            stdout=None if out is None else out.path,
            stderr=None if err is None else err.path,
            children=nested,
        )

    def _op_which_children(self, recursive: bool = False) -> list[ChildInfo]:
        return [self._info(c, recursive) for c in self.children]

    def _op_child_info(self, child_id: str) -> ChildInfo:
        return self._info(self._get(child_id), True)

    def _op_count_children(self) -> dict[str, int]:
        sups = sum(1 for c in self.children if c.spec.is_supervisor)
        return {
            "specs": len(self.children),
            "active": sum(1 for c in self.children if c.running),
            "supervisors": sups,
            "workers": len(self.children) - sups,
        }

    def _op_start_child(self, spec: ChildSpec) -> int:
        existing = self._find(spec.id)
        if existing is not None:
            state = "already_started" if existing.running else "already_present"
            raise ChildStateError(f"child {self.config.full_id(spec.id)!r}: {state}")
        if spec.significant and self.config.auto_shutdown == "never":
            raise InvalidSpecError(
                spec.id, "significant", True, "not allowed with auto_shutdown='never'"
            )
        child = Child(spec)
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
            raise ChildStateError(f"child {self.config.full_id(child_id)!r} is running")
        return self._start(child, "restart")

    def _op_delete_child(self, child_id: str) -> None:
        child = self._get(child_id)
        if child.running:
            raise ChildStateError(f"child {self.config.full_id(child_id)!r} is running")
        self.children.remove(child)

    def _op_ping(self) -> int:
        return os.getpid()

    def _op_reload(self, flags: dict[str, Any], specs: tuple[ChildSpec, ...]) -> ReloadResult:
        cfg = self.config
        full = cfg.full_id
        plan = plan_reload([c.spec for c in self.children], specs)
        new_cfg = dataclasses.replace(cfg, **flags)
        old = {c.id: c for c in self.children}
        new_by_id = {s.id: s for s in specs}
        moved = {  # same spec, but the new flags send its output elsewhere
            cid for cid in plan.unchanged
            if cfg.runs_as(old[cid].spec) != new_cfg.runs_as(new_by_id[cid])
        }  # fmt: skip
        if moved:
            plan = dataclasses.replace(
                plan,
                restart=tuple(s.id for s in specs if s.id in moved or s.id in plan.restart),
                unchanged=tuple(cid for cid in plan.unchanged if cid not in moved),
            )
        for cid in plan.stop:
            self._terminate(old[cid])
        was_running = {cid: old[cid].running for cid in plan.restart}
        for child in reversed(self.children):
            if child.id in was_running:
                self._terminate(child)
        self.config = new_cfg
        if (cfg.intensity, cfg.period) != (self.config.intensity, self.config.period):
            self.intensity = RestartIntensity(self.config.intensity, self.config.period)
        children: list[Child] = []
        for spec in specs:
            child = old.get(spec.id) or Child(spec)
            child.spec = spec
            children.append(child)
        self.children = children
        stopped = set(plan.stop)
        self._pending = deque(p for p in self._pending if p[0].id not in stopped)
        restarted: list[str] = []
        failed: list[str] = []
        for child in children:
            fresh = child.id in plan.start
            if not (fresh or was_running.get(child.id)):
                continue
            try:
                self._start(child, "start" if fresh else "restart")
                if not fresh:
                    restarted.append(full(child.id))
            except ChildStartError as exc:
                log.error("%s: reload: child %r failed to start: %s", cfg.name, child.id, exc)
                failed.append(full(child.id))
                self._pending.append((child, ExitReason("abnormal", detail=exc.detail)))
        result = ReloadResult(
            started=tuple(full(c) for c in plan.start if full(c) not in failed),
            stopped=tuple(full(c) for c in plan.stop),
            restarted=tuple(restarted),
            unchanged=tuple(full(c) for c in plan.unchanged),
            failed=tuple(failed),
        )
        for cid in plan.nested:
            child = old[cid]
            sub = child.spec.start
            if not child.running or not isinstance(sub, NestedSupervisor):
                continue  # a stopped nested supervisor starts with its new spec
            try:
                inner: ReloadResult = self._ask_nested(
                    child, "reload", (sub._reload_flags(), sub.children)
                )
            except SupervisorError as exc:  # it stopped meanwhile: its exit is handled
                log.error("%s: reload of nested supervisor %r failed: %s", cfg.name, cid, exc)
                inner = ReloadResult(failed=(full(cid),))
            result = ReloadResult(
                *(getattr(result, f.name) + getattr(inner, f.name)
                  for f in dataclasses.fields(ReloadResult))
            )  # fmt: skip
        log.info("%s: reloaded: %s", cfg.name, result)
        return result
