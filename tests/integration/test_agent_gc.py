"""The agent process's garbage collector (clerk._gcpolicy) on a real node: what survives a
collection is frozen, so the interpreter never starts a generation-1 or a full collection
(the ones that walked the whole task table), and status reports the pauses."""

from __future__ import annotations

from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter

pytestmark = pytest.mark.timeout(120)


def test_an_agent_freezes_what_survives_and_reports_its_pauses(tmp_path: Path) -> None:
    tasks = [clerk.task(Counter, name="c", interval=100, args={"log": str(tmp_path / "c")})]
    tasks += [clerk.task(Counter, name=f"f{i:03d}", interval=3_600_000, enabled=False,
                         args={"log": str(tmp_path / "f")}) for i in range(300)]
    with LocalCluster(1, tasks=tasks) as cluster:
        manager = cluster.wait_for_manager(timeout=60)

        def collected() -> dict | None:
            st = cluster.status(manager)
            gc = st.get("gc")
            runs = next(r for r in st["tasks"] if r["name"] == "c")["runs"]["ok"]
            return gc if gc and gc["collections"][0] >= 20 and runs >= 5 else None

        gc = wait_until(collected, timeout=60, interval=0.5,
                        message=lambda: f"status: {cluster.status(manager).get('gc')}")
        assert gc is not None
        # Only young collections, each followed by a freeze: none over what piled up.
        assert gc["collections"][1] == gc["collections"][2] == 0, gc
        assert gc["freezes"] >= gc["collections"][0], gc
        assert gc["pause_ms_max"][0] > 0 and gc["reclaims"] == 0
