"""A node whose agent cannot start exits 1 within seconds, the agent's error in its log, and
does not start agent after agent: its task workers cannot start at all (each try paced by
START_RETRY_PAUSES, then the pool gives up once), or building the agent raises.

On main the first looped for good: each fresh agent took ~10 s to give up on its workers (10
deaths, replaced at once, each logged), longer than the node's restart intensity (3 in 10 s)
counts, so the node never gave up (still up after 60 s); the second restarted the agent 3
times, a traceback each, before the intensity ended it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clerk.testing import free_ports

pytestmark = pytest.mark.timeout(120)

SITE = Path(__file__).parent / "worker_site"
ROOT = str(Path(__file__).resolve().parents[2])


def _run_node(tmp_path: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str,
                                                                            float]:
    """Run one node with a task until it exits (or ``timeout``: then it is stopped, and the
    code is None); its exit code, its log and how long it ran."""
    port, = free_ports(1)
    config = tmp_path / "clerk.toml"
    config.write_text(f'[node]\nname = "n1@127.0.0.1"\nport = {port}\ninsecure = true\n'
                      f'workers = 2\n\n[[task]]\nname = "count"\n'
                      f'task = "tests.integration.cluster_tasks:Counter"\ninterval = 500\n'
                      f'args = {{log = "{tmp_path / "log"}"}}\n')
    path = os.pathsep.join([str(SITE), ROOT, *sys.path])
    log = tmp_path / "node.log"
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "clerk.node", "--config", str(config),
                                 "--no-data-dir"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env, "PYTHONPATH": path}, cwd=ROOT)
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = None
    return code, log.read_text(), time.monotonic() - start


def test_a_node_whose_workers_cannot_start_exits_1(tmp_path: Path) -> None:
    doom = tmp_path / "doom"
    doom.touch()
    code, text, took = _run_node(tmp_path, {"CLERK_TEST_WORKER_DOOM": str(doom)}, 60)
    assert code == 1, (code, took, text)
    assert "restarted child 'agent'" not in text, text
    assert text.count("cannot start its task workers: could not start a worker: its process "
                      "exited before it was ready, 4 times in a row") == 1, text
    assert "node could not start its agent or its task workers" in text, text
    # Bounded: 4 tries of each of the 2 workers, not one per death until an intensity.
    assert text.count("workers: started child 'worker-") <= 8, text


def test_a_node_whose_agent_cannot_be_built_exits_1(tmp_path: Path) -> None:
    code, text, took = _run_node(tmp_path, {"CLERK_TEST_AGENT_FAIL": "1"}, 60)
    assert code == 1, (code, took, text)
    assert "restarted child 'agent'" not in text, text
    assert text.count("cannot start: test: CLERK_TEST_AGENT_FAIL is set (not retried)") == 1, \
        text
    assert "node could not start its agent or its task workers" in text, text
