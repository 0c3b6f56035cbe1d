"""A member that leaves with a run still going past ``LEAVE_WAIT`` and a result no manager
acknowledged (review6).

README ("A member that left keeps its results"): a member that leaves exits once a manager
acknowledged its results, or 10 s after its leave (``LEAVE_ACK_WAIT``), and a result no
manager took by then is logged as a WARNING (task, slot, run, state) and counted: "never
silently". ``TaskRunner._ready_to_leave`` returned True at ``LEAVE_WAIT`` (5 s) whenever a
run was still in flight, without asking ``left_results_taken``: such a member exited at 5 s
and its unacknowledged results went with it, neither logged nor counted (the simulator's
``exits_at`` keeps the node until ``LEAVE_ACK_WAIT_S`` then, and counts them).

Two real nodes. The member holds a run of a task in flight (``HeldCounterOnN*``, held while
a file exists), and the next run of a second task kills the manager (``kill -9``), asks its
own node to leave and ends ok 1 s later: no manager is left to acknowledge that result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import (
    HeldCounterOnN1,
    HeldCounterOnN2,
    LeavesMidRunOnN1,
    LeavesMidRunOnN2,
)
from tests.integration.task_helpers import lines
from tests.integration.test_takeover_offered_runs import rows_of

pytestmark = pytest.mark.timeout(120)


def test_a_member_leaving_with_a_run_past_leave_wait_still_reports_its_lost_result(
        tmp_path: Path) -> None:
    leavers = {"n1": LeavesMidRunOnN1, "n2": LeavesMidRunOnN2}
    helds = {"n1": HeldCounterOnN1, "n2": HeldCounterOnN2}
    files: dict[str, dict[str, Any]] = {
        n: {"log": str(tmp_path / f"log-{n}"), "long": str(tmp_path / f"long-{n}"),
            "kill": str(tmp_path / f"kill-{n}"), "sleep": 1.0} for n in leavers}
    held: dict[str, dict[str, Any]] = {
        n: {"log": str(tmp_path / f"held-{n}"), "hold": str(tmp_path / f"hold-{n}"),
            "max_s": 40} for n in helds}
    tasks = [clerk.task(cls, name=f"leaver-{n}", interval=200, timeout=20_000, args=files[n])
             for n, cls in leavers.items()]
    tasks += [clerk.task(cls, name=f"held-{n}", interval=200, timeout=60_000, args=held[n])
              for n, cls in helds.items()]
    with LocalCluster(2, tasks=tasks, dispatch_lead=0, workers=2) as cluster:
        try:
            manager = cluster.wait_for_manager(timeout=15)
            member = next(n for n in cluster.names if n != manager)
            short = member.split("@")[0]
            log, held_log = Path(files[short]["log"]), Path(held[short]["log"])
            wait_until(lambda: len(rows_of(log)) >= 2, timeout=20)
            # A run of held-<member> in flight (and held) from now on.
            Path(held[short]["hold"]).touch()
            starts = len([p for p in lines(held_log) if p and p[0] == "start"])
            wait_until(lambda: len([p for p in lines(held_log) if p and p[0] == "start"])
                       > starts, timeout=10, interval=0.01)
            # Its next leaver run kills the manager, makes its node leave, ends ok 1 s later.
            Path(files[short]["kill"]).write_text(" ".join(map(str, cluster.pids(manager))))
            Path(files[short]["long"]).touch()
            wait_until(lambda: not cluster.running(manager), timeout=10, interval=0.01)
            cluster.kill(manager)  # (reaped)
            # The leaver's run ends ok ~1 s after the leave; the held run is still going.
            wait_until(lambda: any(r.ended - r.started >= 0.9 for r in rows_of(log)),
                       timeout=15)
            wait_until(lambda: not cluster.running(member), timeout=30)
            text = cluster.log(member)
            assert f"task=held-{short}" in text and "still going after" in text, text[-3000:]
            # The leaver's result, which nobody acknowledged: not silently gone.
            assert "that no manager acknowledged within 10 s" in text \
                and f"task=leaver-{short}" in text.split("that no manager acknowledged")[0][
                    -200:], text[-3000:]
        finally:
            for n in helds:
                Path(held[n]["hold"]).unlink(missing_ok=True)
