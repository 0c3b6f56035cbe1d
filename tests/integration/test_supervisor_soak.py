"""Soak: 500 crash-restart cycles end with no zombie, no leaked fd, flat memory."""

import os
import signal
import threading

import psutil
import pytest

from supervisor import ChildSpec, Supervisor
from supervisor.testing import wait_until

CYCLES = 500
WARMUP = 50


def crash_and_wait(sup, cid):
    (old,) = [c.pid for c in sup.which_children() if c.id == cid]
    os.kill(old, signal.SIGKILL)
    return wait_until(
        lambda: next(c.pid for c in sup.which_children() if c.id == cid) not in (None, old),
        timeout=10,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_500_crash_restart_cycles(fd_count):
    me = psutil.Process()
    sup = Supervisor(
        [
            ChildSpec(id="crashy", command=["sleep", "1000"], shutdown="brutal_kill"),
            ChildSpec(id="steady", command=["sleep", "1000"]),
        ],
        intensity=10 * CYCLES,
        period=60,
    )
    sup.start()
    try:
        steady = sup.which_children()[1].pid
        for _ in range(WARMUP):
            crash_and_wait(sup, "crashy")
        fds, rss, threads = len(os.listdir("/proc/self/fd")), me.memory_info().rss, \
            threading.active_count()
        for _ in range(CYCLES - WARMUP):
            crash_and_wait(sup, "crashy")
        zombies = [p.pid for p in me.children(recursive=True)
                   if p.status() == psutil.STATUS_ZOMBIE]
        assert zombies == []
        assert len(os.listdir("/proc/self/fd")) == fds
        assert threading.active_count() == threads
        growth = me.memory_info().rss - rss
        assert growth < 4 * 1024 * 1024, f"RSS grew by {growth} bytes"
        assert sup.which_children()[1].pid == steady
        assert sup.count_children()["active"] == 2
    finally:
        sup.stop()
    assert len(os.listdir("/proc/self/fd")) == fd_count
    assert [p for p in me.children(recursive=True)] == []
