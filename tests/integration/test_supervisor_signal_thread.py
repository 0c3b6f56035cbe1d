"""SIGTERM to ``python -m supervisor`` stops the tree whichever of its threads the kernel
delivers it to. Python runs signal handlers in the main thread only, between bytecodes: a main
thread blocked in one endless wait never ran the handler of a SIGTERM delivered to the loop or
control thread, and the tree ignored it (about 1 time in 20). Here the signal is sent to each
non-main thread on purpose (``tgkill``), so the case is hit every time."""

from __future__ import annotations

import ctypes
import os
import platform
import signal

import pytest

from tests.integration.sup_tree import Tree
from tests.integration.test_supervisor_ctl import ALL, TREE

pytestmark = pytest.mark.timeout(120)

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine())


def tgkill(pid: int, tid: int, signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid})")


@pytest.mark.skipif(SYS_TGKILL is None, reason="tgkill's number unknown on this machine")
def test_sigterm_to_a_non_main_thread_stops_the_tree(tmp_path) -> None:
    tried = 0
    for i in range(3):
        (tmp_path / str(i)).mkdir()
        tree = Tree(tmp_path / str(i), TREE)
        proc = tree.start()
        try:
            tree.wait_up(ALL)
            threads = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task"))
            others = [t for t in threads if t != proc.pid]
            assert others, threads  # the loop and the control server run in threads
            tgkill(proc.pid, others[i % len(others)], signal.SIGTERM)
            tried += 1
            assert proc.wait(timeout=15) == 0, tree.stderr()
            assert "stop requested by signal" in tree.stderr()
        finally:
            tree.stop()
    assert tried == 3
