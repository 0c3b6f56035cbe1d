"""First code run in every child process and in the watchdog (run as a script, by path).

This file is executed as ``__main__`` by a fresh interpreter and must not import the
``supervisor`` package before it has to (a worker never does), so that a child starts
as fast as the interpreter allows. Three modes:

``_boot.py <payload-fd>``
    A Python child: read the pickled payload from the pipe, arm PR_SET_PDEATHSIG, set
    ``sys.path`` to the supervisor's, then call the target. Exit code 0 when it returns,
    its own code on ``SystemExit``, 1 (after printing the traceback) on an exception.
    A worker's ``sys.stdout``/``sys.stderr`` are line-buffered, so a file or ``ctl tail
    -f`` sees a line as soon as it is written, and with ``label_lines`` (trees run from a
    file) every line starts with the worker's full id in brackets: ``[pool/worker-1] ...``.

``_boot.py --exec <supervisor-pid> <program> <args>...``
    An external command: arm PR_SET_PDEATHSIG (it survives ``execve``), then exec it.

``_boot.py --watchdog``
    The no-orphans watchdog where there is no ``/bin/sh`` (elsewhere the same rules run as
    a shell script, ``_spawn.WATCHDOG_SH``, in a tenth of the memory): reads ``+<pgid>`` /
    ``-<pgid>`` lines on stdin from the supervisor; when stdin reaches EOF (the supervisor
    closed it or died, even by SIGKILL) it SIGKILLs every process group still listed, then
    exits.
"""

from __future__ import annotations

import os
import sys

# Imports are kept to the minimum on the child's path (``signal`` and ``pickle`` pull in
# ``enum`` and ``re``: several ms): the C ``_pickle`` and plain numbers do.
PR_SET_PDEATHSIG = 1
SIGKILL = 9


def arm_parent_death_signal(expected_parent: int) -> None:
    """Ask Linux to SIGKILL us when the thread that started us dies; exit if it already
    has (the supervisor can die between our fork and this call)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog still covers us
        pass
    if os.getppid() != expected_parent:
        os._exit(70)


def watchdog() -> None:
    """Kill the listed process groups once the supervisor is gone (stdin EOF)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    pending = b""
    while True:
        try:
            data = os.read(0, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line[1:].isdigit():  # only numbers (as the shell version: _spawn.py)
                continue
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    for pgid in groups:
        try:
            os.killpg(pgid, SIGKILL)
        except OSError:
            pass


def exec_command(argv: list[str]) -> None:
    """``--exec <pid> program args...``: arm the death signal, then become the program."""
    arm_parent_death_signal(int(argv[0]))
    try:
        os.execvp(argv[1], argv[1:])
    except OSError as exc:
        sys.stderr.write(f"supervisor: cannot exec {argv[1]!r}: {exc}\n")
        os._exit(127)


class LabelledStream:
    """A text stream that puts ``[label] `` before every line written to ``inner``."""

    def __init__(self, inner: object, label: str) -> None:
        self._inner = inner
        self._prefix = f"[{label}] "
        self._at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines):
            if line and (i > 0 or self._at_line_start):
                line = self._prefix + line
            out.append(line)
        self._at_line_start = text.endswith("\n")
        self._inner.write("\n".join(out))  # type: ignore[attr-defined]
        return len(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def setup_output(label: str | None) -> None:
    """Line-buffer stdout/stderr; with a ``label``, prefix each line with ``[label]``."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            continue
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
        if label:
            setattr(sys, name, LabelledStream(stream, label))


def run_python_child(payload_fd: int) -> None:
    """Run the pickled target; map its outcome to an exit code."""
    import _pickle as pickle

    with os.fdopen(payload_fd, "rb") as f:
        payload = pickle.load(f)
    arm_parent_death_signal(payload["ppid"])
    sys.path[:] = payload["path"]
    child_id = payload["id"]
    if payload["kind"] != "supervisor":
        setup_output((payload["label"] or child_id) if payload["label_lines"] else None)
    try:
        target, args, kwargs = pickle.loads(payload["blob"])
        if isinstance(target, str):
            import importlib

            module_name, _, qualname = target.partition(":")
            obj = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            target = obj
        if payload["kind"] == "supervisor":
            code = target._run_nested(payload)
        else:
            target(*args, **kwargs)
            code = 0
    except SystemExit:
        raise
    except BaseException:
        import traceback

        sys.stderr.write(f"supervisor: child {child_id!r} (pid {os.getpid()}) crashed:\n")
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def main(argv: list[str]) -> None:
    """Dispatch on the mode (see the module docstring)."""
    if argv[0] == "--watchdog":
        watchdog()
    elif argv[0] == "--exec":
        exec_command(argv[1:])
    else:
        run_python_child(int(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
