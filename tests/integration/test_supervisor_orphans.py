"""No orphans: SIGKILL the supervisor's process and every descendant it started,
grandchildren and nested supervisors' children included, is gone within 1 s."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from supervisor.testing import wait_until
from tests.integration.sup_children import read_log
from tests.integration.sup_harness import alive

pytestmark = pytest.mark.timeout(60)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TREE = """
    [[child]]
    id = "a"
    start = "tests.integration.sup_children:plain"
    args = ["{log}", "a"]

    [[child]]
    id = "g"
    start = "tests.integration.sup_children:with_grandchild"
    args = ["{log}", "g"]

    [[child]]
    id = "cmd"
    command = ["sh", "-c", "{sh}"]

    [[child]]
    id = "pool"
    [child.supervisor]
    [[child.supervisor.child]]
    id = "x"
    start = "tests.integration.sup_children:with_grandchild"
    args = ["{log}", "x"]
"""

SH = "echo start cmd $$ >> {log}; sleep 1000 & echo start cmd.gc $! >> {log}; wait"
EXPECTED = {"a", "g", "g.gc", "cmd", "cmd.gc", "x", "x.gc"}


@pytest.mark.parametrize("round_", range(2))
def test_sigkill_of_the_supervisor_leaves_no_process_behind(tmp_path, round_):
    log = str(tmp_path / "log")
    tree = tmp_path / "tree.toml"
    tree.write_text(textwrap.dedent(TREE.format(log=log, sh=SH.format(log=log))))
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", str(tree)], cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: {c for _, c, _ in read_log(log)} == EXPECTED,
                   message=lambda: f"log: {read_log(log)}")
        # Everything it started: the pids the children wrote, plus every descendant
        # (nested supervisor, watchdogs, the shell's children).
        pids = {pid for _, _, pid in read_log(log)}
        pids |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert len(pids) >= len(EXPECTED) + 3
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait()
        wait_until(lambda: not any(alive(p) for p in pids), timeout=1.0,
                   message=lambda: f"still alive: {[p for p in pids if alive(p)]}")
        assert time.monotonic() - killed_at < 1.0
    finally:
        proc.kill()
        proc.wait()
        for pid in pids if "pids" in locals() else ():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("shell", ["/bin/sh", None], ids=["shell", "python"])
def test_the_watchdog_kills_the_listed_groups_at_eof_and_spares_the_removed(shell):
    from supervisor._spawn import Watchdog, watchdog_argv

    argv = watchdog_argv(shell)
    assert ("-c" in argv) == (shell is not None) and "--watchdog" in argv
    groups = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(3)]
    dog = Watchdog(argv)
    try:
        dog.start()
        kept, *doomed = groups
        for g in groups:
            dog.add(g.pid)  # each leads its own group: pgid == pid
        dog.add(2**22 + 7)  # a group that does not exist is harmless
        dog._send("+12x\n-\n+\n")  # malformed lines are ignored
        dog.remove(kept.pid)
        time.sleep(0.2)  # lines in flight are read before EOF either way; not a wait for state
        assert all(g.poll() is None for g in groups)
        dog.close()  # EOF, as when the supervisor dies
        wait_until(lambda: all(g.poll() is not None for g in doomed), timeout=2.0)
        assert kept.poll() is None
    finally:
        for g in groups:
            g.kill()
            g.wait()
