"""A node restarted on a data directory whose snapshot holds a number that is not finite (a
damaged or hand-edited ``tasks.json``) keeps every other task's state: only the state holding it
is dropped (that task starts again from its init), with a WARNING naming the file, the task and
the field (clerk._store, ``_row_texts``). Real node processes; the unit tests of the reader are
tests/unit/test_store_finite.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_tasks import Counter
from tests.integration.task_helpers import CounterLine, counter_lines

pytestmark = pytest.mark.timeout(120)


def _count_at_least(log: Path, n: int, after: float = 0.0) -> list[CounterLine]:
    """The lines of runs started after ``after``, once the last of them counted ``n``."""
    def reached() -> list[CounterLine] | None:
        ls = [x for x in counter_lines(log) if x.started > after]
        return ls if ls and ls[-1].count >= n else None

    got = wait_until(reached, timeout=30,
                     message=lambda: f"{log.name} stuck: {counter_lines(log)[-3:]}")
    assert got is not None
    return got


def test_a_state_not_finite_on_disk_costs_only_that_task_its_state(tmp_path: Path) -> None:
    kept, bad = tmp_path / "kept.log", tmp_path / "bad.log"
    tasks = [clerk.task(Counter, name="kept", interval=200, args={"log": str(kept)}),
             clerk.task(Counter, name="bad", interval=200, args={"log": str(bad)})]
    with LocalCluster(1, tasks) as cluster:
        (n1,) = cluster.names
        data = cluster.data_path(n1)
        assert data is not None
        _count_at_least(kept, 3)
        _count_at_least(bad, 3)
        assert cluster.stop(n1) == 0  # graceful: every count on disk
        stopped = max(x.started for x in counter_lines(kept) + counter_lines(bad))
        last_kept = counter_lines(kept)[-1].count
        snapshot = data / "tasks.json"
        doc = json.loads(snapshot.read_text())
        assert doc["table"]["tasks"]["bad"]["state"]["count"] >= 3
        doc["table"]["tasks"]["bad"]["state"]["count"] = "<not finite>"
        snapshot.write_text(json.dumps(doc).replace('"<not finite>"', "NaN"))

        cluster.start(n1)
        after = _count_at_least(kept, last_kept + 2, after=stopped)
        assert after[0].count == last_kept + 1, "the good state goes on where it stopped"
        again = _count_at_least(bad, 1, after=stopped)
        assert again[0].count == 1, "the damaged state starts again from its init"
        text = cluster.log(n1)
        assert "WARNING" in text and str(snapshot) in text and "task 'bad'" in text
        assert "state.count: nan" in text
        assert cluster.stop(n1) == 0
        table = json.loads(snapshot.read_text())["table"]["tasks"]
        assert table["kept"]["state"]["count"] >= last_kept + 2, "kept on disk, not emptied"
        assert table["bad"]["state"]["count"] >= 1
