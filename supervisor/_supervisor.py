"""Erlang/OTP-style supervisors for OS processes: the semantics, then the API.

Children
    A supervisor starts its children left to right (``start()`` returns when all have
    started) and stops them right to left. A child is an OS process: a Python callable
    (``start=func`` or ``start="module:function"``, run as ``func(*args, **kwargs)`` in a
    fresh interpreter), an external ``command=[...]``, or a nested :class:`Supervisor`
    (``type="supervisor"``), which runs in a process of its own. Children inherit the
    environment (plus ``env``); their stdin is ``/dev/null``. A child id never contains
    ``/``: ``"pool/worker-1"`` names the child ``worker-1`` of the nested supervisor
    ``pool``, and every method taking a child id accepts such a path.

Output
    Children write to the supervisor's own stdout/stderr, unless their spec names
    ``stdout``/``stderr`` files or the supervisor has a ``logs`` directory (then
    ``<logs>/<id>.out`` and ``<id>.err``). Files are written by the supervisor, which
    reads the child's pipes, and rotated by size (``max_bytes``, ``backups``; see
    :mod:`supervisor._output`). With ``label_output=True`` (the default for trees run from
    a file) each line a Python worker writes through ``sys.stdout`` or ``sys.stderr``
    starts with ``[<full id>] ``; embedders keep their children's lines as written.

Reload
    :meth:`Supervisor.reload` applies a new configuration as OTP's release upgrade does
    (:mod:`supervisor._reload`): new children started, removed ones terminated with their
    ``shutdown``, changed ones restarted with the new spec, unchanged ones untouched;
    nested supervisors are compared inside. The restart strategy and intensity take the
    new values.

Exit reasons
    ``normal``: exit code 0 (a Python child returned or called ``sys.exit(0)``).
    ``shutdown``: the supervisor terminated it, or it died of SIGTERM (the OS analogue of
    an Erlang exit with reason ``shutdown``), or it exited with a code its spec lists in
    ``shutdown_exits`` (``{shutdown, Term}``: not worth a restart). ``abnormal``: any other
    exit code or signal (an exception in a Python child exits with code 1 after printing its
    traceback), or a failed start (e.g. command not found). A failed *restart* is handled
    as an immediate abnormal exit of that child, so it counts towards the restart intensity
    (OTP's ``try_again``); a failed start in ``start()`` stops the supervisor (``START_FAILED``).

Restart types (``restart=``)
    ``permanent`` (default): always restarted. ``transient``: restarted only after an
    abnormal exit. ``temporary``: never restarted; its spec is removed when it ends, and
    also when a sibling's failure takes it down under one_for_all/rest_for_one.
    A transient child that is not restarted keeps its spec (status ``terminated``).

Strategies (``strategy=``)
    ``one_for_one`` (default): restart only the child that ended.
    ``one_for_all``: stop all other running children right to left (temporary ones are
    removed), then start all children left to right (OTP also starts the ones that were
    not running).
    ``rest_for_one``: stop the children started after the failed one, right to left, then
    start the failed child and those after it, left to right.

Restart intensity (``intensity=1``, ``period=5``, OTP's defaults)
    Every restart decision is counted. If more than ``intensity`` restarts happen within
    ``period`` seconds, the supervisor gives up: it terminates all children right to left
    and stops with :attr:`ShutdownReason.INTENSITY`. ``wait()`` raises
    :class:`RestartIntensityError` naming the child whose exit was one too many, ``run()``
    returns 1, and a nested supervisor exits with code 1, which its parent sees as an
    abnormal exit (escalation up the tree). With ``intensity=0`` the first exit that
    calls for a restart makes the supervisor give up.

Shutdown (``shutdown=``)
    ``"brutal_kill"``: SIGKILL. An int: SIGTERM, then SIGKILL if it has not exited after
    that many milliseconds (default 5000 for workers). ``"infinity"``: SIGTERM and wait
    as long as it takes (default for supervisor children). A worker's SIGTERM goes to its
    whole process tree (its process group plus every descendant, as systemd does); a
    nested supervisor gets SIGTERM alone and stops its own children in order. Either way,
    once the child has exited, whatever is left of its tree is SIGKILLed: a child's
    descendants never outlive it. The same holds when a child exits by itself.

Significant children and ``auto_shutdown``
    ``significant=True`` marks a transient or temporary child (never a permanent one) whose
    end, when it is *not* restarted and was not caused by the supervisor, stops the
    supervisor: with ``auto_shutdown="any_significant"`` at once, with
    ``"all_significant"`` once no significant child runs; with ``"never"`` (default)
    significant children are rejected. The stop reason is
    :attr:`ShutdownReason.AUTO_SHUTDOWN` (an orderly stop: ``run()`` returns 0).

No orphans
    If the supervisor's process dies, even by SIGKILL, everything it started dies within
    milliseconds, by two independent means. (1) Each child asks Linux for
    ``PR_SET_PDEATHSIG=SIGKILL`` first thing (through ``prctl``; it survives ``exec`` of a
    command), so the kernel kills it when the supervisor's loop thread ends. (2) Each child
    leads its own process group, and a tiny watchdog process (one per supervisor, in its
    own session) is told each group id over a pipe; when the pipe reaches EOF because the
    supervisor died, it SIGKILLs every group still listed, which catches grandchildren
    too. A nested supervisor does the same for its own children. Only a descendant that
    leaves its process group (``setsid``, daemonizing) *and* whose parent died first can
    escape.

Logging
    Through ``logging.getLogger("supervisor")``: every start and restart (INFO, with child
    id and pid), every exit with its reason (INFO; WARNING when abnormal), giving up on
    intensity (ERROR). Nested supervisors log from their own process to stderr, at the
    parent's level, if the parent process has logging configured.

Events for embedders (``on_event=``)
    A callable receiving an :class:`Event` (``start``, ``restart``, ``exit`` with its
    :class:`ExitReason`, and finally ``shutdown``) from the loop thread. It must be quick
    and must not call the supervisor's API (that raises: the loop would wait on itself).
    Exceptions it raises are logged and ignored. To kill a hung worker and start a fresh
    one: ``terminate_child(id)`` (its tree is ended, honouring ``shutdown``; not counted
    as a restart) then ``restart_child(id)``.

Threads and processes
    A top-level supervisor runs one loop thread in the caller's process; every API
    method is thread-safe and reaches that loop through a socket pair (one request, one
    reply). The loop waits in epoll on the control socket and on a pidfd per child, so a
    crash is noticed at once without polling. Children are started with ``subprocess``
    (fork+exec done in C) as fresh interpreters, never with a bare ``fork()`` of a
    process that may run other threads (e.g. ZeroMQ's); see the README for the numbers.
    Output files are written by a second thread (see Output); ``supervisor tree.toml``
    adds a third that answers the control socket by calling this API.
    A supervisor runs once: after it stopped, build a new one.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import FrameType
from typing import Any

from supervisor._errors import (
    ChildStartError,
    InvalidSpecError,
    NotRunningError,
    RestartIntensityError,
    SupervisorError,
)
from supervisor._loop import Loop, LoopConfig
from supervisor._output import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES
from supervisor._reload import spec_key
from supervisor._spec import ChildSpec, check_rotation
from supervisor._types import (
    AUTO_SHUTDOWNS,
    STRATEGIES,
    AutoShutdown,
    ChildInfo,
    Event,
    ReloadResult,
    ShutdownInfo,
    ShutdownReason,
    Strategy,
)
from supervisor._wire import recv_msg, send_msg

__all__ = ["Supervisor"]

log = logging.getLogger("supervisor")
#: ``run()`` waits for the stop in slices this long (s), so a SIGTERM the kernel delivered to
#: another thread of ours still runs its handler (Python runs handlers in the main thread,
#: between bytecodes only).
SIGNAL_CHECK_S = 0.1

_running: weakref.WeakSet[Supervisor] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop supervisors still running when the interpreter exits, in an orderly way."""
    for sup in list(_running):
        try:
            sup.stop()
        except Exception:
            pass


class Supervisor:
    """A supervisor of OS processes with OTP's semantics (see :mod:`supervisor`).

    Args:
        children: child specs, in start order.
        strategy: ``"one_for_one"`` (default), ``"one_for_all"`` or ``"rest_for_one"``.
        intensity: restarts allowed within ``period`` (default 1; 0 = never restart).
        period: the sliding window in seconds (default 5).
        auto_shutdown: ``"never"`` (default), ``"any_significant"``, ``"all_significant"``.
        name: used in logs and events (default ``"supervisor"``, or the child id when
            nested).
        on_event: called from the loop thread with each :class:`Event`.
        clock: monotonic seconds, for the restart intensity (injectable for tests).
        logs: a directory for the output files of children that name none
            (``<id>.out``, ``<id>.err``); default: the supervisor's own output.
        max_bytes: rotate an output file before it grows past this (default 10 MiB).
        backups: rotated files kept per output file (default 5; 0 truncates).
        label_output: start every line a Python worker writes with ``[<full id>] ``
            (default False; trees run from a file default to True).

    Raises:
        InvalidSpecError: before anything starts, naming the field (and child).
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        intensity: int = 1,
        period: float = 5,
        auto_shutdown: AutoShutdown = "never",
        name: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        logs: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        label_output: bool = False,
    ) -> None:
        specs = tuple(children)
        if logs is not None and (not isinstance(logs, str) or not logs):
            raise InvalidSpecError(None, "logs", logs, "must be a directory path")
        if not isinstance(label_output, bool):
            raise InvalidSpecError(None, "label_output", label_output, "must be True or False")
        check_rotation(
            max_bytes,
            backups,
            lambda name, problem: InvalidSpecError(
                None, name, {"max_bytes": max_bytes, "backups": backups}[name], problem
            ),
            allow_none=False,
        )
        if strategy not in STRATEGIES:
            raise InvalidSpecError(None, "strategy", strategy, f"must be one of {STRATEGIES}")
        if isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0:
            raise InvalidSpecError(None, "intensity", intensity, "must be an int >= 0")
        if isinstance(period, bool) or not isinstance(period, int | float) or not period > 0:
            raise InvalidSpecError(None, "period", period, "must be a number of seconds > 0")
        if auto_shutdown not in AUTO_SHUTDOWNS:
            raise InvalidSpecError(
                None, "auto_shutdown", auto_shutdown, f"must be one of {AUTO_SHUTDOWNS}"
            )
        if on_event is not None and not callable(on_event):
            raise InvalidSpecError(None, "on_event", on_event, "must be callable")
        seen: set[str] = set()
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise InvalidSpecError(None, "children", spec, "every child must be a ChildSpec")
            if spec.id in seen:
                raise InvalidSpecError(spec.id, "id", spec.id, "duplicate child id")
            seen.add(spec.id)
            if spec.significant and auto_shutdown == "never":
                raise InvalidSpecError(
                    spec.id, "significant", True, "not allowed with auto_shutdown='never'"
                )
        self.children = specs
        self.strategy: Strategy = strategy
        self.intensity = intensity
        self.period = period
        self.auto_shutdown: AutoShutdown = auto_shutdown
        self.name = name
        self.on_event = on_event
        self.logs = logs
        self.max_bytes = max_bytes
        self.backups = backups
        self.label_output = label_output
        self._clock = clock
        self._path = ""  # "pool" when running as the nested child "pool"
        self._parent_ctl: socket.socket | None = None
        self._lock = threading.Lock()
        self._state = "new"
        self._ctl: socket.socket | None = None
        self._wake: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop_thread_id: int | None = None
        self._done: Future[ShutdownInfo] = Future()
        self._signalled = False

    def __repr__(self) -> str:
        ids = ", ".join(s.id for s in self.children)
        return (
            f"Supervisor(name={self.name!r}, strategy={self.strategy!r}, "
            f"intensity={self.intensity}, period={self.period}, children=[{ids}], "
            f"state={self._state!r})"
        )

    # A nested supervisor is sent to its own process as its configuration only.
    def __getstate__(self) -> dict[str, Any]:
        state = self._reload_flags()
        state.update(children=self.children, name=self.name, on_event=self.on_event)
        return state

    def _reload_flags(self) -> dict[str, Any]:
        """The flags :meth:`reload` takes over (everything but the children and hooks)."""
        return {
            "strategy": self.strategy,
            "intensity": self.intensity,
            "period": self.period,
            "auto_shutdown": self.auto_shutdown,
            "logs": self.logs,
            "max_bytes": self.max_bytes,
            "backups": self.backups,
            "label_output": self.label_output,
        }

    def _tree_key(self) -> tuple[object, ...]:
        """The configuration as a comparable value (for reload's spec comparison)."""
        flags = tuple(sorted(self._reload_flags().items()))
        return (self.name, flags, tuple(spec_key(s) for s in self.children))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the loop and the children, left to right; return when all have started.

        Raises:
            ChildStartError: a child could not start; the ones already started were
                stopped and the supervisor is stopped (``START_FAILED``).
            SupervisorError: the supervisor was already started.
        """
        with self._lock:
            if self._state != "new":
                raise SupervisorError(f"supervisor {self._display_name} was already started")
            self._state = "running"
            ctl_client, ctl_loop = socket.socketpair()
            wake_client, wake_loop = socket.socketpair()
            wake_client.setblocking(False)
            self._ctl, self._wake = ctl_client, wake_client
        started: Future[None] = Future()
        config = LoopConfig(
            name=self._display_name,
            children=self.children,
            strategy=self.strategy,
            intensity=self.intensity,
            period=self.period,
            auto_shutdown=self.auto_shutdown,
            on_event=self.on_event,
            clock=self._clock,
            path=self._path,
            logs=self.logs,
            max_bytes=self.max_bytes,
            backups=self.backups,
            label_output=self.label_output,
            parent_ctl=self._parent_ctl,
        )
        loop = Loop(config, ctl_loop, wake_loop, started, self._done)

        def run_loop() -> None:
            # Set by the loop thread itself, before any hook can run: assigning it after
            # start() returned raced with the first "start" event, and an API call from that
            # hook then waited on its own thread forever instead of being refused.
            self._loop_thread_id = threading.get_ident()
            loop.run()

        self._thread = threading.Thread(
            target=run_loop, name=f"supervisor:{self._display_name}", daemon=True
        )
        self._thread.start()
        _running.add(self)
        try:
            started.result()
        except BaseException:
            self._thread.join()
            self._finish()
            raise

    def stop(self) -> None:
        """Terminate the children right to left (honouring each ``shutdown``) and stop.

        Returns once everything is down. Idempotent; a no-op if never started.
        """
        if self._state == "new":
            with self._lock:
                if self._state == "new":
                    self._state = "stopped"
                    return
        if not self._done.done():
            try:
                self._call("stop")
            except NotRunningError:
                pass
        self._join()

    def wait(self, timeout: float | None = None) -> ShutdownInfo:
        """Block until the supervisor has stopped and say why.

        Returns:
            The :class:`ShutdownInfo` of an orderly stop (``STOPPED``/``AUTO_SHUTDOWN``).

        Raises:
            RestartIntensityError: it gave up (``info`` names the child and its exit).
            ChildStartError: a child failed to start during :meth:`start`.
            SupervisorError: its loop crashed (a bug; the children were killed).
            TimeoutError: still running after ``timeout`` seconds.
            NotRunningError: never started.
        """
        if self._state == "new":
            raise NotRunningError(f"supervisor {self._display_name} was never started")
        info = self._done.result(timeout)
        self._join()
        if info.reason is ShutdownReason.INTENSITY:
            raise RestartIntensityError(info)
        if info.reason is ShutdownReason.START_FAILED:
            raise ChildStartError(info.child_id or "?", info.detail, info)
        if info.reason is ShutdownReason.CRASHED:
            raise SupervisorError(f"supervisor {self._display_name} crashed: {info.detail}")
        return info

    def run(self) -> int:
        """``start()`` then ``wait()``, with SIGTERM/SIGINT doing an orderly ``stop()``
        (when called from the main thread). Returns 0 after an orderly stop, 1 if the
        supervisor gave up or a child failed to start."""
        return self._run(on_started=None)

    def _run(self, on_started: Callable[[], None] | None) -> int:
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            try:
                self.start()
            except ChildStartError as exc:
                log.error("%s: %s", self._display_name, exc)
                return 1
            if self._signalled:  # SIGTERM/SIGINT arrived while the children were starting
                self.stop()
            if on_started is not None:
                on_started()
            try:
                while True:
                    # In slices: the kernel may deliver SIGTERM to any of our threads, and
                    # Python runs the handler in the main thread only when it next runs
                    # bytecode; blocked in one endless wait it never did (a tree that
                    # ignored its SIGTERM, about 1 time in 20).
                    try:
                        info = self.wait(SIGNAL_CHECK_S)
                        break
                    except TimeoutError:
                        continue
            except SupervisorError as exc:
                log.error("%s: gave up: %s", self._display_name, exc)
                return 1
            return info.exit_code
        finally:
            for prev_signum, handler in previous.items():
                signal.signal(prev_signum, handler)

    def _run_nested(self, boot: dict[str, Any]) -> int:
        """Body of a nested supervisor's process (called by ``_boot.py`` with its payload:
        the ready pipe, the log level, its full id and the channel to its parent)."""
        ready_fd: int = boot["ready_fd"]
        log_level: int | None = boot["log_level"]
        self._path = boot["label"]
        if boot["ctl_fd"] >= 0:
            self._parent_ctl = socket.socket(fileno=boot["ctl_fd"])
        if log_level is not None:
            logging.basicConfig(
                level=logging.WARNING,
                format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
            )
            logging.getLogger("supervisor").setLevel(log_level)

        def ready() -> None:
            os.write(ready_fd, b"R")
            os.close(ready_fd)

        return self._run(on_started=ready)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only async-signal-friendly work here: a flag and one non-blocking send.
        self._signalled = True
        wake = self._wake
        if wake is not None:
            try:
                wake.send(bytes([signum]))
            except OSError:
                pass

    # ---------------------------------------------------------------- children

    def which_children(self, recursive: bool = False) -> list[ChildInfo]:
        """One :class:`ChildInfo` per child spec, in start order. With ``recursive``,
        a running nested supervisor's rows are in its ``children`` and every id is a full
        path (``"pool/worker-1"``)."""
        result: list[ChildInfo] = self._call("which_children", recursive)
        return result

    def reload(self, new: Supervisor) -> ReloadResult:
        """Apply ``new``'s configuration (children, strategy, intensity, output) to this
        running tree, as an OTP release upgrade does (see :mod:`supervisor`).
        ``new`` is only read (never started); build it with the same code or file.

        Raises:
            InvalidSpecError: ``new`` is not a :class:`Supervisor`; nothing changed.
        """
        if not isinstance(new, Supervisor):
            raise InvalidSpecError(None, "new", new, "must be a Supervisor")
        result: ReloadResult = self._call("reload", new._reload_flags(), new.children)
        return result

    def count_children(self) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}`` counts, as in OTP."""
        result: dict[str, int] = self._call("count_children")
        return result

    def start_child(self, spec: ChildSpec) -> int:
        """Add ``spec`` at the end and start it; return its pid.

        Raises:
            ChildStateError: a child with this id exists (``already_started`` /
                ``already_present``).
            ChildStartError: it could not start (the spec is not kept).
            InvalidSpecError: it is significant but ``auto_shutdown`` is ``never``.
        """
        if not isinstance(spec, ChildSpec):
            raise InvalidSpecError(None, "spec", spec, "must be a ChildSpec")
        pid: int = self._call("start_child", spec)
        return pid

    def terminate_child(self, child_id: str) -> None:
        """Stop a child honouring its ``shutdown`` (not restarted, not counted as a
        restart). A temporary child's spec is then removed; others stay ``terminated``
        until :meth:`restart_child` or :meth:`delete_child`. No-op if not running."""
        self._call("terminate_child", child_id)

    def restart_child(self, child_id: str) -> int:
        """Start a terminated child again; return its new pid.

        Raises:
            ChildNotFoundError: no such child. ChildStateError: it is running.
            ChildStartError: it could not start.
        """
        pid: int = self._call("restart_child", child_id)
        return pid

    def delete_child(self, child_id: str) -> None:
        """Forget a terminated child's spec.

        Raises:
            ChildNotFoundError: no such child. ChildStateError: it is running.
        """
        self._call("delete_child", child_id)

    # ---------------------------------------------------------------- plumbing

    @property
    def _display_name(self) -> str:
        return self.name or "supervisor"

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and the end of the loop."""
        return self._state == "running" and not self._done.done()

    def _call(self, op: str, *args: object) -> Any:
        if threading.get_ident() == self._loop_thread_id:
            raise SupervisorError(
                f"{op}() called from the supervisor's own loop thread (an on_event hook?): "
                "it would wait on itself; call it from another thread"
            )
        with self._lock:
            ctl = self._ctl
            if self._state != "running" or ctl is None or self._done.done():
                raise NotRunningError(f"supervisor {self._display_name} is not running")
            try:
                send_msg(ctl, (op, args))
                reply = recv_msg(ctl)
            except OSError:
                reply = None
        if reply is None:
            raise NotRunningError(f"supervisor {self._display_name} stopped")
        status, value = reply
        if status == "err":
            raise value
        return value

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._state = "stopped"
            for sock in (self._ctl, self._wake):
                if sock is not None:
                    sock.close()
            self._ctl = self._wake = None
        _running.discard(self)
