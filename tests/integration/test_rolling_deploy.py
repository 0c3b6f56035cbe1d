"""Rolling deploys on real nodes: the manager schedules what any live member has loaded, one
rule settles disagreements, a task nobody has any more stops (issue 12)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import present
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import counter_lines, task_row

pytestmark = pytest.mark.timeout(120)


def test_a_task_only_a_follower_has_runs_and_stops_when_it_leaves(tmp_path: Path) -> None:
    log = tmp_path / "new.log"
    old_a = clerk.task(Counter, name="a", interval=1000, args={"log": str(tmp_path / "a.log")})
    new_a = clerk.task(Counter, name="a", interval=500, args={"log": str(tmp_path / "a.log")})
    new = clerk.task(Counter, name="new", interval=200, args={"log": str(log)})
    names = [f"n{i}@127.0.0.1" for i in (1, 2, 3)]
    node_tasks: dict[str, Sequence[clerk.TaskDef]] = {
        names[0]: [old_a], names[1]: [old_a, new], names[2]: [new_a]}
    with LocalCluster(3, node_tasks=node_tasks, start=False) as cluster:
        # n1 first: it is the manager (a joiner never deposes a healthy one) and it has not
        # loaded "new"; then the others, as a deploy would bring them.
        cluster.start(names[0])
        assert cluster.wait_for_manager(timeout=20, names=names[:1]) == names[0]
        cluster.start(names[1])
        cluster.start(names[2])
        manager = cluster.wait_for_manager(timeout=20)
        assert manager == names[0]
        wait_until(lambda: len(counter_lines(log)) >= 5, timeout=20,
                   message=lambda: cluster.log(manager)[-3000:])
        assert {line.node for line in counter_lines(log)} == {names[1]}  # where it is loaded
        # A run writes its line before its result reaches the manager: wait for the count.
        wait_until(lambda: task_row(cluster.status(manager), "new")["runs"]["ok"] >= 5,
                   timeout=10, message=lambda: str(task_row(cluster.status(manager), "new")))
        # The members disagree on "a": status shows both definitions, one of them chosen,
        # once n3 announced its tasks (its workers ready: it may come after n2's runs).

        def both_announced() -> tuple[dict, list] | None:
            st = cluster.status(manager)
            variants = task_row(st, "a").get("definitions") or []
            nodes = sorted(n for v in variants for n in v["nodes"])
            return (st, variants) if nodes == sorted(names) else None

        st, variants = present(wait_until(
            both_announced, timeout=20,
            message=lambda: str(task_row(cluster.status(manager), "a"))))
        row = task_row(st, "new")
        assert row["loaded_here"] is False and row["next_due"] and row["gone_since"] is None
        assert row["runs"]["error"] == 0
        assert sorted((v["definition"]["interval"], v["nodes"]) for v in variants) == [
            (500, [names[2]]), (1000, [names[0], names[1]])]
        assert sum(v["chosen"] for v in variants) == 1
        chosen = next(v for v in variants if v["chosen"])["definition"]["interval"]
        assert task_row(st, "a")["interval_ms"] == chosen
        assert "task=new is loaded by a live member: scheduling it" in cluster.log(manager)

        # The only node with "new" leaves: the task stops, and status says since when.
        assert cluster.stop(names[1]) == 0
        wait_until(lambda: task_row(cluster.status(manager), "new")["gone_since"], timeout=20,
                   message=lambda: str(task_row(cluster.status(manager), "new")))
        runs = len(counter_lines(log))
        a_ok = task_row(cluster.status(manager), "a")["runs"]["ok"]
        # Three more runs of "a" (>= 1.5 s, over 7 slots of "new"): "new" ran no more.
        wait_until(lambda: task_row(cluster.status(manager), "a")["runs"]["ok"] >= a_ok + 3,
                   timeout=20)
        assert len(counter_lines(log)) == runs
        row = task_row(cluster.status(manager), "new")
        assert row["next_due"] is None and row["runs"]["error"] == 0
        assert "task=new is no longer loaded by any live member: stopped" in cluster.log(manager)
