"""A rolling deploy with two builds in one cluster, on real nodes (review of ``rows2``: a
HEARTBEAT's table rows after its body to a member that announces ``RAW_ROWS_MARK``).

The build under test is this tree; the other is the tree at ``CLERK_OLD_BUILD`` (a checkout of
the previous build: the test is skipped without it). A node of the old build is started with
that tree first on its ``PYTHONPATH``.

Three nodes, a counter every 200 ms. n1 (new, highest priority) manages; n2 (new) and n3
(new, next in rank) follow. n3 restarts as the *old* build at once (SIGKILL, then started
again: it announced the mark, its successor does not). Then n1 is SIGKILLed: n3, whose
replica came from n1 since its restart, takes over, and the counter must go on from where n1
left it (no count twice, no start over). n1 comes back (new build) and follows the old
manager; n3 is SIGKILLed and n1 takes over from the replica the old build sent it: the
counter goes on again.

``tools/test`` (the CI's run) extracts the previous build itself (the commit
``tools/_old_build.py`` pins) and sets ``CLERK_OLD_BUILD``; where it cannot (no git, a
tarball, a shallow clone) the test is skipped with the reason. By hand, from the new tree:
``CLERK_OLD_BUILD=$(python3 tools/_old_build.py) pytest <this file>``, or
``CLERK_OLD_BUILD=/path/to/old/tree``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import CounterLine, counter_lines

OLD = os.environ.get("CLERK_OLD_BUILD", "")


def _no_old_build() -> str:
    """Why there is no old build to run (empty: there is one)."""
    if OLD and Path(OLD, "clerk").is_dir() and Path(OLD, "supervisor").is_dir():
        return ""
    if OLD:
        return f"CLERK_OLD_BUILD={OLD} holds no clerk/ and supervisor/ of another build"
    return ("no old build: " + (os.environ.get("CLERK_OLD_BUILD_WHY") or (
        "CLERK_OLD_BUILD is not set; tools/test sets it (tools/_old_build.py extracts the "
        "pinned commit from git), or by hand: CLERK_OLD_BUILD=$(python3 tools/_old_build.py) "
        "pytest tests/integration/test_review4_mixed_build.py")))


pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(bool(_no_old_build()), reason=_no_old_build())]


def _start(cluster: LocalCluster, name: str, old: bool) -> None:
    if not old:
        cluster.start(name)
        return
    # LocalCluster.start passes sys.path as the node's PYTHONPATH, and ``python -m`` puts
    # its working directory before it: both name the old tree.
    saved, cwd = list(sys.path), os.getcwd()
    sys.path.insert(0, OLD)
    os.chdir(OLD)
    try:
        cluster.start(name)
    finally:
        sys.path[:] = saved
        os.chdir(cwd)


def _said(cluster: LocalCluster, name: str, text: str) -> int:
    """How many times node ``name``'s log (all its starts) says ``text``."""
    return cluster.log(name).count(text)


#: SIGKILLs so far: (node, wall time). A run in flight on a killed node may have written its
#: line (the Counter writes it before it returns) and died before its result left: its count
#: is then produced again by the next run, rightly (a worker crash fails that run).
KILLS: list[tuple[str, float]] = []


def _kill(cluster: LocalCluster, name: str) -> None:
    KILLS.append((name, time.time()))
    cluster.kill(name)


def _void(line: CounterLine) -> bool:
    """The line of a run that was in flight on its node when that node was killed."""
    return any(line.node == node and at - 2.0 <= line.started <= at for node, at in KILLS)


def _counts(log: Path) -> list[int]:
    return [line.count for line in counter_lines(log)]


def _goes_on(log: Path, cluster: LocalCluster, manager: str, runs: int = 5) -> None:
    """``runs`` more runs under ``manager``; every count once (but a killed run's), each one
    more than the last."""
    before = len(_counts(log))
    wait_until(lambda: len(_counts(log)) >= before + runs, timeout=60, interval=0.05,
               message=lambda: cluster.log(manager)[-3000:])
    lines = counter_lines(log)
    counts = [line.count for line in lines]
    repeated = sorted({c for c in counts if counts.count(c) > 1})
    for c in repeated:
        twice = [line for line in lines if line.count == c]
        assert sum(not _void(line) for line in twice) <= 1, f"count {c} produced twice: {twice}"
    kept = [line.count for line in lines if not _void(line)]
    assert kept == sorted(kept), kept[-20:]


def test_a_member_restarted_as_the_old_build_takes_over_and_back(tmp_path: Path) -> None:
    KILLS.clear()
    log = tmp_path / "counter"
    task = clerk.task(Counter, name="count", interval=200, args={"log": str(log)})
    with LocalCluster(3, tasks=[task], priorities=[2, 0, 1], start=False) as cluster:
        n1, n2, n3 = cluster.names
        _start(cluster, n1, old=False)  # first: the manager (no preemption by joiners)
        assert cluster.wait_for_manager(timeout=30, names=[n1]) == n1
        _start(cluster, n2, old=False)
        _start(cluster, n3, old=False)
        assert cluster.wait_for_manager(timeout=30) == n1
        _goes_on(log, cluster, n1)
        def admitted() -> int:
            return (_said(cluster, n1, f"member {n3} added")
                    + _said(cluster, n1, f"member {n3} replaced"))

        seen, followed = admitted(), _said(cluster, n3, f"manager is {n1}")
        _kill(cluster, n3)
        _start(cluster, n3, old=True)
        # Admitted again by n1 (its new incarnation: no mark), and following it.
        wait_until(lambda: admitted() > seen
                   and _said(cluster, n3, f"manager is {n1}") > followed, timeout=60,
                   interval=0.1, message=lambda: cluster.log(n3)[-2000:])
        _goes_on(log, cluster, n1)
        _kill(cluster, n1)
        assert cluster.wait_for_manager(timeout=30, names=[n2, n3]) == n3
        _goes_on(log, cluster, n3)
        _start(cluster, n1, old=False)  # it follows the old manager (no preemption)
        wait_until(lambda: _said(cluster, n1, f"manager is {n3}") >= 1, timeout=60,
                   interval=0.1, message=lambda: cluster.log(n1)[-2000:])
        _goes_on(log, cluster, n3)
        _kill(cluster, n3)
        assert cluster.wait_for_manager(timeout=30, names=[n1, n2]) == n1
        _goes_on(log, cluster, n1)
