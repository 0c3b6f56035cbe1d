"""The process layer: start a child, wait for it, end its whole process tree, and the
no-orphans watchdog. No supervision logic lives here.

Every child is started with ``subprocess`` (fork+exec done in C, so it is safe in a
multithreaded parent such as a ZeroMQ node) as a fresh interpreter running
``_boot.py``, in a process group of its own. See the package docstring for why.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil

from supervisor._errors import ChildStartError
from supervisor._spec import HELD_SIGNALS, ChildSpec

__all__ = [
    "HAVE_PIDFD",
    "Spawned",
    "Watchdog",
    "command_problem",
    "kill_tree",
    "process_tree",
    "signal_tree",
    "spawn",
    "wait_exited",
]

BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")
HAVE_PIDFD = hasattr(os, "pidfd_open") and sys.platform.startswith("linux")


@dataclass
class Spawned:
    """A started child process: ``pidfd`` becomes readable when it exits (-1 without
    pidfd support)."""

    proc: subprocess.Popen[bytes]
    pidfd: int
    channel: socket.socket | None = None  # a nested supervisor's control channel

    @property
    def pid(self) -> int:
        return self.proc.pid


_setpriv: list[str] | None = None


def _pdeathsig_prefix() -> list[str]:
    """The argv prefix that arms PR_SET_PDEATHSIG before exec'ing a command.

    util-linux's ``setpriv --pdeathsig KILL`` does it in about a millisecond; without it
    (not Linux, or util-linux < 2.33) a ``python -I -S _boot.py --exec`` wrapper does the
    same for ~15 ms more per start (see tools/bench_start_method.py).
    """
    global _setpriv
    if _setpriv is None:
        _setpriv = [sys.executable, "-I", "-S", BOOT, "--exec", "{ppid}"]
        path = shutil.which("setpriv")
        if path is not None and sys.platform.startswith("linux"):
            probe = subprocess.run(
                [path, "--pdeathsig", "KILL", "--", "true"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                _setpriv = [path, "--pdeathsig", "KILL", "--"]
    return [part.replace("{ppid}", str(os.getpid())) for part in _setpriv]


def _open_pidfd(pid: int) -> int:
    if not HAVE_PIDFD:
        return -1
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1


def _log_level_for_children() -> int | None:
    """Pass our log level to nested supervisors only if logging is configured here."""
    if logging.getLogger().handlers or logging.getLogger("supervisor").handlers:
        return logging.getLogger("supervisor").getEffectiveLevel()
    return None


def command_problem(spec: ChildSpec) -> str | None:
    """Why ``spec.command`` cannot run (not found, not executable), or ``None``.

    A program with a ``/`` is looked up relative to the child's ``cwd``; a bare name on
    the ``PATH`` the child will see (its ``env`` may change it).
    """
    if spec.command is None:
        return None
    program = spec.command[0]
    if os.sep in program:
        full = os.path.join(spec.cwd or "", program)
        if not os.path.exists(full):
            return f"command not found: {program!r}"
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            return f"command is not executable: {program!r}"
        return None
    path = (spec.env or {}).get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(program, path=path) is None:
        if shutil.which(program, mode=os.F_OK, path=path) is not None:
            return f"command is not executable: {program!r} (on PATH)"
        return f"command not found: {program!r} (not on PATH)"
    return None


def spawn(
    spec: ChildSpec,
    *,
    stdout: int | None = None,
    stderr: int | None = None,
    label: str = "",
    label_lines: bool = False,
) -> Spawned:
    """Start ``spec``'s process; for a supervisor child, wait until it has started its
    own children. Raises :class:`ChildStartError` if it cannot start.

    ``stdout``/``stderr`` are file descriptors for the child's output (``None``: ours);
    ``label`` is its full id (``pool/worker-1``): a nested supervisor's path, and with
    ``label_lines`` what a Python worker puts before each line it writes.
    """
    env = None
    if spec.env:
        env = dict(os.environ)
        env.update(spec.env)
    common: dict[str, object] = {
        # In a process group of its own a child reading the terminal would be stopped by
        # SIGTTIN: give it /dev/null. stdout/stderr are ours unless files were asked for.
        "stdin": subprocess.DEVNULL,
        "stdout": stdout,
        "stderr": stderr,
        "process_group": 0,
        "close_fds": True,
        "env": env,
        "cwd": spec.cwd,
    }
    if spec.command is not None:
        problem = command_problem(spec)
        if problem is not None:
            raise ChildStartError(spec.id, problem)
        argv = _pdeathsig_prefix() + list(spec.command) + [str(a) for a in spec.args]
        try:
            proc = subprocess.Popen(argv, **common)  # type: ignore[call-overload]
        except OSError as exc:
            raise ChildStartError(spec.id, repr(exc)) from exc
        return Spawned(proc, _open_pidfd(proc.pid))
    return _spawn_python(spec, common, label or spec.id, label_lines)


def _spawn_python(
    spec: ChildSpec, common: dict[str, object], label: str, label_lines: bool
) -> Spawned:
    try:
        blob = pickle.dumps((spec.start, spec.args, spec.kwargs))
    except Exception as exc:  # e.g. a nested Supervisor with an unpicklable on_event
        raise ChildStartError(spec.id, f"cannot pickle its start for a new process: {exc}") from exc
    payload_r, payload_w = os.pipe()
    ready_r = ready_w = -1
    channel: socket.socket | None = None
    child_end: socket.socket | None = None
    if spec.is_supervisor:
        ready_r, ready_w = os.pipe()
        channel, child_end = socket.socketpair()
    payload = pickle.dumps(
        {
            "path": list(sys.path),
            "ppid": os.getpid(),
            "id": spec.id,
            "label": label,
            "label_lines": label_lines,
            "ctl_fd": -1 if child_end is None else child_end.fileno(),
            "kind": "supervisor" if spec.is_supervisor else "call",
            "blob": blob,
            "ready_fd": ready_w,
            "log_level": _log_level_for_children(),
        }
    )
    fds = (payload_r,) if child_end is None else (payload_r, ready_w, child_end.fileno())
    # Not -S: the child must see the same import machinery as the parent, including what
    # site-packages' .pth files install (editable installs add a meta path finder, not a
    # sys.path entry, so copying sys.path alone is not enough).
    argv = [sys.executable, BOOT, str(payload_r)]
    try:
        # hold_signals: blocked in this thread while it forks, so the child (mask inherited
        # through fork and exec) starts with them blocked (ChildSpec); this thread's mask is
        # restored at once (a signal for this process meanwhile goes to another thread, or
        # waits here until then).
        held = (signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
                if spec.hold_signals else None)
        try:
            proc = subprocess.Popen(argv, pass_fds=fds, **common)  # type: ignore[call-overload]
        except OSError as exc:
            raise ChildStartError(spec.id, repr(exc)) from exc
        finally:
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        os.close(payload_r)
        payload_r = -1
        if ready_w >= 0:
            os.close(ready_w)
            ready_w = -1
        if child_end is not None:
            child_end.close()
            child_end = None
        try:
            with os.fdopen(payload_w, "wb") as f:
                payload_w = -1
                f.write(payload)
        except BrokenPipeError:
            pass  # it died before reading: its exit is reported like any other
        spawned = Spawned(proc, _open_pidfd(proc.pid), channel)
        if ready_r >= 0 and not _wait_ready(ready_r, spawned):
            proc.wait()
            if spawned.pidfd >= 0:
                os.close(spawned.pidfd)
            raise ChildStartError(
                spec.id, f"nested supervisor exited during start (code {proc.returncode})"
            )
        channel = None  # handed over
        return spawned
    finally:
        for sock in (channel, child_end):
            if sock is not None:
                sock.close()
        for fd in (payload_r, payload_w, ready_r, ready_w):
            if fd >= 0:
                os.close(fd)


def _wait_ready(ready_r: int, spawned: Spawned) -> bool:
    """Block until the nested supervisor writes its ready byte (True) or closes the pipe
    without it, i.e. exits (False)."""
    while True:
        try:
            data = os.read(ready_r, 1)
        except InterruptedError:
            continue
        return data == b"R"


def wait_exited(spawned: Spawned, timeout: float | None) -> bool:
    """Wait until the process has exited (is a zombie or gone); False on timeout.
    Does not reap it, so its pid (and process group id) cannot be reused meanwhile."""
    if spawned.pidfd >= 0:
        poller = select.poll()
        poller.register(spawned.pidfd, select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return bool(poller.poll(ms))
    # No pidfd (not Linux): peek without reaping, by waitid(WNOWAIT) or the zombie state.
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while True:
        if _has_exited(spawned.pid):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _has_exited(pid: int) -> bool:
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def process_tree(pid: int) -> list[psutil.Process]:
    """All live descendants of ``pid`` (empty if it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def signal_tree(pgid: int, procs: list[psutil.Process], sig: int) -> None:
    """Send ``sig`` to the process group and to every process of ``procs`` that left it
    (once each; psutil checks each one is still the same process, so a reused pid is
    never hit)."""
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for p in procs:
        try:
            if os.getpgid(p.pid) != pgid:
                p.send_signal(sig)
        except (psutil.Error, OSError):
            pass


# How long kill_tree waits for a SIGKILLed descendant to die (SIGKILL cannot be caught; only
# a process stuck in the kernel, e.g. on a dead NFS mount, takes longer).
_KILL_WAIT = 1.0


def kill_tree(pgid: int, procs: list[psutil.Process]) -> None:
    """SIGKILL whatever is left of a child's tree and wait (up to 1 s) until it is dead.

    A zombie counts as dead: a grandchild orphaned by the child is reparented to init (or
    a subreaper), and an init that does not reap promptly (some containers' does not)
    must not cost every stop a whole second.
    """
    signal_tree(pgid, procs, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT
    delay = 0.0005
    pending = list(procs)
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if _alive(p)]
        if pending:
            time.sleep(delay)
            delay = min(delay * 2, 0.02)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


#: The watchdog as a POSIX shell script: the rules of ``_boot.py --watchdog`` (``+<pgid>`` /
#: ``-<pgid>`` lines on stdin; at EOF, SIGKILL every group still listed), in a process of
#: ~0.3 MiB instead of a Python interpreter's ~4 MiB (PSS). Every supervisor has one, and a
#: Clerk node runs two (its own and its agent's): 7-8 MiB of a node's ~55. ``set -f``: no
#: globbing of the list; only digits are taken; SIGINT is ignored, as in the Python version.
WATCHDOG_SH = """set -f
trap '' INT
g=' '
while IFS= read -r l; do
  case $l in
    +*[!0-9]*|-*[!0-9]*) ;;
    +?*) g="$g${l#+} " ;;
    -?*) x=${l#-}
         case $g in *" $x "*) g="${g%% $x *} ${g#* $x }" ;; esac ;;
  esac
done
for p in $g; do kill -9 -"$p" 2>/dev/null; done
"""
#: The shell that runs it; without one, the Python watchdog (``_boot.py --watchdog``).
WATCHDOG_SHELL = "/bin/sh"


def watchdog_argv(shell: str | None = WATCHDOG_SHELL) -> list[str]:
    """The watchdog's command: the shell script when ``shell`` exists, else Python. Both
    carry ``--watchdog`` (tools tell the watchdog from other processes by it)."""
    if shell is not None and os.access(shell, os.X_OK):
        return [shell, "-c", WATCHDOG_SH, "supervisor-watchdog", "--watchdog"]
    return [sys.executable, "-I", "-S", BOOT, "--watchdog"]


class Watchdog:
    """A tiny process that SIGKILLs the listed process groups when we die (see _boot.py).

    It lives in its own session, so neither a terminal's Ctrl-C nor our own group
    signals reach it, and notices our death through EOF on its stdin pipe.
    """

    def __init__(self, argv: list[str] | None = None) -> None:
        self._argv = argv
        self._proc: subprocess.Popen[bytes] | None = None
        self._w = -1

    def start(self) -> None:
        r, w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                self._argv or watchdog_argv(),
                stdin=r,
                close_fds=True,
                start_new_session=True,
            )
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self._w = w

    def _send(self, line: str) -> None:
        if self._w >= 0:
            try:
                os.write(self._w, line.encode())
            except OSError:
                pass

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Let it exit (nothing left to kill) and reap it."""
        if self._w >= 0:
            os.close(self._w)
            self._w = -1
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
