"""A test process that dies without closing its LocalCluster leaves no node behind.

pytest-timeout's thread method ends a hung test with ``os._exit``: no ``__exit__``, no
``close()``. The nodes are armed with PR_SET_PDEATHSIG, so they die with the test process, and
each node's own watchdog takes its agent and workers with it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import psutil
import pytest

from supervisor.testing import wait_until

pytestmark = pytest.mark.timeout(60)

CHILD = """
import json, os, sys
from clerk.testing import LocalCluster
c = LocalCluster(2)
c.__enter__()
c.wait_for_manager()
pids = [p for n in c.names for p in c.pids(n)]
print(json.dumps({"pids": pids, "dir": str(c.dir)}), flush=True)
os._exit(1)
"""


def test_nodes_die_with_a_test_process_that_exits_without_close() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=45, check=False)
    assert out.returncode == 1, out.stderr
    child = json.loads(out.stdout.strip().splitlines()[-1])
    pids = child["pids"]
    assert len(pids) >= 4, pids  # two nodes, each with at least an agent

    def gone() -> bool:
        return not [p for p in pids if psutil.pid_exists(p)
                    and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    try:
        wait_until(gone, timeout=15)
    finally:
        for p in pids:
            try:
                psutil.Process(p).kill()
            except psutil.Error:
                pass
        # The cluster's directory is what a process that died without close() leaves: ours
        # to remove (one was left behind per suite run).
        shutil.rmtree(child["dir"], ignore_errors=True)
