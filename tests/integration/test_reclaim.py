"""A manager that claims again (an ELECTION above its term reaches it) right after it
dispatched a short task's run that this time runs long (clerk._reclaim): it keeps the run in
flight, sends no slot beside it and applies its result.

On a busy cluster (eight no-op tasks every 100 ms beside it) the dispatch's rows wait for the
next round (25 ms gap); the run itself sends the ELECTION as it starts, a millisecond or two
after its dispatch. Main passes this too: its reload forgot the run, but the claim then waits
for the members' OFFERs, which list their runs in flight (clerk._offerruns). It checks the
runner's path (no reload at a claim again) with real nodes: the new term, no overlap, the
count continued, no conflict.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import busy_naps, per_node_tasks
from tests.integration.reclaim_tasks import ReclaimsLongOnN1, ReclaimsLongOnN2, ReclaimsLongOnN3
from tests.integration.task_helpers import task_row
from tests.integration.test_takeover_offered_runs import (
    check_long_run_kept,
    rows_of,
    wait_after_long,
)

pytestmark = pytest.mark.timeout(120)

LONG_S = 2.0


def test_a_claim_again_right_after_a_dispatch_keeps_the_run(tmp_path: Path) -> None:
    classes = {"n1": ReclaimsLongOnN1, "n2": ReclaimsLongOnN2, "n3": ReclaimsLongOnN3}
    files, tasks = per_node_tasks(tmp_path, classes, "long", ("log", "long", "elect"),
                                  LONG_S, interval=100, timeout=10_000)
    with LocalCluster(3, tasks=[*tasks, *busy_naps()], dispatch_lead=0, workers=2,
                      insecure=True) as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        follower = next(n for n in cluster.names if n != manager)
        short = follower.split("@")[0]
        name, log = f"long-{short}", Path(files[short]["log"])
        wait_until(lambda: len(rows_of(log)) >= 5, timeout=20)
        term = cluster.status(manager)["term"]
        Path(files[short]["elect"]).write_text(f"{cluster.address(manager)} {term}")
        Path(files[short]["long"]).touch()  # its next run makes the manager claim again

        rows = wait_after_long(log, LONG_S)
        st = cluster.status(manager)
        assert st["manager"] == manager and st["term"] > term, (term, st["term"])
        check_long_run_kept(rows, LONG_S, task_row(st, name))
