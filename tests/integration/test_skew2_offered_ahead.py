"""skew2, real processes: a crash takeover by a node whose clock is 4 s ahead of the dead
manager's, where only a member's OFFER shows the run in flight (the dead manager's table
never replicated its dispatch: test_takeover_offered_runs's set-up). The OFFER carries the
old manager's times; the new manager moves them into its own time base
(``Scheduler.adopt_run(as_sent=True)``), so the run is not timed out early and no slot goes
beside it. Before, only the 1 s grace covered the 4 s: the new manager timed the 5.5 s run
(timeout 6 s) out while it still ran and sent the next slots beside it. Also: the new
manager's status shows the run's deadline in its own time base (not 4 s early).

The set-up is a race the test does not control: the long run kills the manager as it
starts, and the manager's next replication round (at most ``REPLICATE_GAP_S``, 25 ms, after
the dispatch of a task whose runs are short) must not have left before. On a loaded machine
the EXECUTE's way to n3's worker and into the task's code can outlast that gap: n2's replica
then holds the dispatch, and n2 adopts the run from its table (moved by its offset too:
review13), not from the OFFER. Before, the test then waited 10 s for an ``offered`` row that
never came and failed, while the run was kept (CI at 0884f73; about one run in five here
beside three CPU burners and a second copy of the test). Each cluster asserts the same
guarantee whichever way the run came; one whose replica held the dispatch did not test the
OFFER's way, so the test starts another cluster while its budget allows, and is skipped,
saying so, if none got there.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import SuddenlyLongOnN3, busy_naps, per_node_tasks
from tests.integration.task_helpers import task_row
from tests.integration.test_takeover_offered_runs import (
    check_long_run_kept,
    rows_of,
    wait_after_long,
)

pytestmark = pytest.mark.timeout(150)

LONG_S = 5.5
AHEAD_S = 4.0
#: Another cluster starts only if one more as long as the longest so far still ends within
#: this many seconds of the test's start (its timeout is 150 s; a cluster takes ~13 s on a
#: quiet machine, 20-45 s beside three CPU burners and a second copy of this test).
BUDGET_S = 135.0


def _crash_takeover(tmp_path: Path) -> dict[str, Any]:
    """One cluster: n1 manages, n3's long run kills it, n2 (4 s ahead) takes over. Asserts
    that n2 keeps the run (no run beside it, its result applied) with its deadline in n2's
    time base; returns n2's row of the run as first seen in flight (``offered``: only n3's
    OFFER showed it; else n2's replica held its dispatch)."""
    files, tasks = per_node_tasks(tmp_path, {"n3": SuddenlyLongOnN3}, "long",
                                  ("log", "long", "kill"), LONG_S, interval=100,
                                  timeout=6_000)
    # n1 manages (priority 2); n2 (priority 1, 4 s ahead) takes over; n3 holds the run.
    with LocalCluster(3, tasks=[*tasks, *busy_naps()], dispatch_lead=0, workers=2,
                      priorities=[2, 1, 0], start=False,
                      node_env={"n2@127.0.0.1": {
                          "CLERK_TEST_CLOCK_OFFSET_S": str(AHEAD_S)}}) as cluster:
        cluster.start("n1@127.0.0.1")  # the manager: the others join it
        manager = cluster.wait_for_manager(timeout=30, names=["n1@127.0.0.1"])
        assert manager == "n1@127.0.0.1"
        cluster.start("n2@127.0.0.1")
        cluster.start("n3@127.0.0.1")
        log = Path(files["n3"]["log"])
        wait_until(lambda: len(rows_of(log)) >= 5, timeout=20)
        # n2 corrects by its estimate before the crash (its ahead_ms at the takeover).
        wait_until(lambda: (cluster.status("n2@127.0.0.1", timeout=2).get("clock") or {})
                   .get("corrected") is True, timeout=20)
        Path(files["n3"]["kill"]).write_text(" ".join(map(str, cluster.pids(manager))))
        Path(files["n3"]["long"]).touch()  # its next run kills the manager and runs long
        wait_until(lambda: not cluster.running(manager), timeout=10, interval=0.01)
        cluster.kill(manager)  # (reaped)
        new = cluster.wait_for_manager(timeout=15)
        assert new == "n2@127.0.0.1"

        # While the long run goes: the new manager's row shows it in flight (from n3's
        # OFFER, or from its replica), with a deadline in its own time base (its clock reads
        # AHEAD_S more than time.time()). A takeover from a replica dispatches nothing
        # before every live member's OFFER is in: the first run it shows is the long one.
        def in_flight() -> dict[str, Any] | None:
            run = task_row(cluster.status(new, timeout=3), "long-n3").get("running")
            return run or None
        run = wait_until(in_flight, timeout=10, interval=0.1)
        assert run is not None
        now_new = (time.time() + AHEAD_S) * 1000
        assert run["deadline"] > now_new, (run, now_new)
        rows = wait_after_long(log, LONG_S)
        check_long_run_kept(rows, LONG_S, task_row(cluster.status(new), "long-n3"))
    # Its deadline as the new manager shows it: the old manager's (the slot's due time, when
    # the run started, + the 6 s timeout) + AHEAD_S + the 1 s grace; before, max(that
    # deadline, the takeover) + 1 s on the new clock, ~4 s earlier.
    long = next(r for r in rows if r.ended - r.started >= LONG_S * 0.9)
    assert run["slot"] == long.slot, (run, long)
    want = (long.started + 6.0 + AHEAD_S + 1.0) * 1000
    assert abs(run["deadline"] - want) < 300, (run["deadline"] - want, run)
    return run


def test_an_offered_run_is_kept_by_a_new_manager_4_s_ahead(tmp_path: Path) -> None:
    began = time.monotonic()
    replicated: list[dict[str, Any]] = []
    longest = 0.0
    for attempt in itertools.count(1):
        started = time.monotonic()
        here = tmp_path / f"cluster{attempt}"
        here.mkdir()
        run = _crash_takeover(here)
        print(f"cluster {attempt} ({time.monotonic() - started:.0f} s): the new manager's "
              f"run {'from the OFFER' if run.get('offered') else 'from its replica'}: {run}")
        if run.get("offered"):
            return
        replicated.append(run)  # its replica held the dispatch: kept, but not by the OFFER
        longest = max(longest, time.monotonic() - started)
        if time.monotonic() - began + longest > BUDGET_S:
            pytest.skip(f"the set-up did not happen in {attempt} cluster(s): each time the "
                        f"new manager's replica held the long run's dispatch (the replication "
                        f"round left before the run killed the manager: a loaded machine), so "
                        f"the run was kept from its table, not from the OFFER: {replicated}")
