"""CI's short run of ``tools/chaos.py`` (issue 9): about 60 s of faults on 5 real nodes in
network namespaces. Runs only as root with ``ip netns``; anywhere else it is skipped, saying
why. A run already holding the machine's chaos lock for longer than we wait is a skip too.

What it enforces is :data:`CI_ENFORCED` (override with ``CLERK_CHAOS_ENFORCE``, comma
separated; the seed with ``CLERK_CHAOS_SEED``): only the invariants main meets every time.
With issue 9's parts A and B on main, four runs of 120-150 s met ``heal-loss`` in every heal;
``full-stop`` failed once (a full SIGTERM lost the update of a run dispatched as the SIGTERMs
went out), ``late`` once (238 ms at load 14), so they stay out until that is fixed; ``twice``,
``heal-time`` and ``kill-idle`` held on main with part B, add them once they keep holding.
``heal-loss`` at seed 9 failed in 2 of 9 runs (CI once) as a misreading of the tool: the
heal's winner ran two slots from its own state before the other side's table came (~400 ms)
and then merged and kept it, but nothing ran after the merge inside the 3 s window, so the
window's runs read as the outcome (``tools/_chaos_analysis._settled`` now lets the first run
after the window decide). Every run's nodes get a temporary directory of their own, removed at
the end (the test checks it).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from _chaos_net import PREFIX, cleanup, unavailable  # type: ignore[import-not-found]  # noqa: E402
from chaos import LOCK_FILE  # type: ignore[import-not-found]  # noqa: E402

#: The checks CI enforces today (see the module docstring).
CI_ENFORCED = ("unhealed", "dead", "heal-loss")
SECONDS = 60
#: How long to wait for another chaos run on this machine to finish before skipping.
LOCK_WAIT_S = 60

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SECONDS + LOCK_WAIT_S + 240)]


def test_cleanup_removes_a_crashed_runs_namespaces_and_processes() -> None:
    why = unavailable()
    if why is not None:
        pytest.skip(f"chaos cleanup test SKIPPED: {why}")
    with open(LOCK_FILE, "a") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:  # never tear down a chaos run in progress
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip("chaos cleanup test SKIPPED: a chaos run holds the lock")
                time.sleep(0.5)
        ns = f"{PREFIX}n1"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        left = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"])
        try:
            deadline = time.monotonic() + 10
            while str(left.pid) not in subprocess.run(["ip", "netns", "pids", ns],
                                                      capture_output=True, text=True).stdout:
                assert time.monotonic() < deadline, "the leftover never entered its namespace"
                time.sleep(0.02)
            removed = cleanup()
            assert removed == [f"namespace {ns} (1 processes killed)"]
            assert left.wait(timeout=10) == -9
            assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                            text=True).stdout
        finally:
            if left.poll() is None:
                left.kill()
                left.wait()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_the_short_chaos_run_keeps_the_enforced_invariants(tmp_path: Path) -> None:
    why = unavailable()
    if why is not None:
        pytest.skip(f"chaos tool short run SKIPPED: {why}")
    enforce = os.environ.get("CLERK_CHAOS_ENFORCE", ",".join(CI_ENFORCED))
    seed = os.environ.get("CLERK_CHAOS_SEED", "9")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "chaos.py"), "--seconds", str(SECONDS),
         "--seed", seed, "--check", "--enforce", enforce, "--json",
         "--workdir", str(tmp_path), "--wait-lock", str(LOCK_WAIT_S)],
        capture_output=True, text=True, timeout=SECONDS + LOCK_WAIT_S + 200)
    if proc.returncode == 3:
        pytest.skip(f"chaos tool short run SKIPPED: another chaos run held the lock: "
                    f"{proc.stderr.strip()}")
    print(proc.stderr)  # the fault log, shown by pytest when the test fails
    report = json.loads((tmp_path / "report.json").read_text())
    print(json.dumps({k: v for k, v in report.items() if k != "faults_log"}, indent=1))
    assert proc.returncode == 0, f"violated: {report['violations']}"
    assert report["violations"] == [] and report["enforced"] == enforce.split(",")
    # The run really exercised the cluster: faults happened and the task kept running.
    assert report["faults"] >= 3, report["faults_log"]
    assert report["runs"] >= SECONDS * 1000 / 200 / 2
    assert report["slots"] > 0 and report["heals"], "no partition was healed"
    # Nothing of the run is left: no namespace, no link, no process.
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert PREFIX not in left
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert PREFIX not in links
    # Nor the nodes' temporary directory, with the socket directories (clerk-log-*,
    # clerk-workers-*) that the final SIGKILL of every node leaves in it.
    assert not Path(report["tmpdir"]).exists(), report["tmpdir"]
