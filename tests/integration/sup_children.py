"""Child functions run by the supervisor tests in fresh processes.

Every child appends ``<event> <id> <pid>`` lines to a log file (``O_APPEND`` writes of
one short line are atomic), so tests can check the order in which children really
started and stopped, and which pids ever existed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def note(log: str, event: str, child_id: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {child_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_log(log: str) -> list[tuple[str, str, int]]:
    try:
        with open(log) as f:
            return [(e, c, int(p)) for e, c, p in (line.split() for line in f if line.strip())]
    except FileNotFoundError:
        return []


def _forever() -> None:
    while True:
        signal.pause()


def worker(log: str, child_id: str) -> None:
    """Log start; on SIGTERM log stop and exit 0; SIGUSR1 -> exit 0 (normal exit);
    SIGUSR2 -> raise (abnormal exit, exit code 1)."""

    def on_term(signum, frame):
        note(log, "stop", child_id)
        sys.exit(0)

    def on_usr1(signum, frame):
        sys.exit(0)

    def on_usr2(signum, frame):
        raise RuntimeError("asked to crash")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGUSR2, on_usr2)
    note(log, "start", child_id)
    _forever()


def plain(log: str, child_id: str) -> None:
    """Log start, then sleep; SIGTERM kills it by default (reason: shutdown)."""
    note(log, "start", child_id)
    _forever()


def stubborn(log: str, child_id: str, delay: float = -1.0) -> None:
    """Ignore SIGTERM (delay < 0), or exit ``delay`` seconds after receiving it."""

    def on_term(signum, frame):
        note(log, "term", child_id)
        if delay >= 0:
            time.sleep(delay)  # a slow, orderly shutdown
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    note(log, "start", child_id)
    _forever()


def with_grandchild(log: str, child_id: str, escape: bool = False) -> None:
    """Start a grandchild (SIGTERM-proof) in our process group and, with ``escape``, one in
    a session of its own (out of our process group); they log as ``<id>.gc``/``.gc2``."""
    note(log, "start", child_id)
    code = (
        "import os,signal,sys;sys.path.insert(0,%r);import sup_children as s;"
        "s.note(%r,'start',%r);signal.signal(signal.SIGTERM,signal.SIG_IGN);s._forever()"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.Popen([sys.executable, "-c", code % (here, log, child_id + ".gc")])
    if escape:
        subprocess.Popen(
            [sys.executable, "-c", code % (here, log, child_id + ".gc2")],
            start_new_session=True,
        )
    _forever()


def exit_now(code: int = 0) -> None:
    sys.exit(code)


def crash_now() -> None:
    raise ValueError("boom")


def return_now() -> str:
    return "done"


def chatter(interval: float) -> None:
    """Print 1, 2, 3, ... to stdout, one line every ``interval`` seconds, forever."""
    i = 0
    while True:
        i += 1
        print(i)
        time.sleep(interval)


def say(text: str) -> None:
    """Print ``text`` to stdout and ``text`` + " (err)" to stderr, then wait for SIGTERM."""
    print(text)
    print(text + " (err)", file=sys.stderr)
    _forever()


def blocked_signals(path: str) -> None:
    """Write the numbers of the signals this process started with blocked, one line."""
    blocked = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    with open(path + ".tmp", "w") as f:
        f.write(" ".join(map(str, blocked)))
    os.replace(path + ".tmp", path)
    _forever()
