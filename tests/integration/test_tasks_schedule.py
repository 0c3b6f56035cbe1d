"""Scheduling on a real 3-node cluster: the grid, fairness, state, nodes(), enabled, instant,
and what ``clerk status --json`` shows. One cluster runs all of these tasks side by side."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import present
from tests.integration.cluster_tasks import Counter, PinnedCounter
from tests.integration.task_helpers import counter_lines, due, median, task_row

pytestmark = pytest.mark.timeout(90)

IV = 100  # ms


@dataclass
class Setup:
    cluster: LocalCluster
    dir: Path
    manager: str

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    d = tmp_path_factory.mktemp("tasks")
    tasks = [
        clerk.task(Counter, name="grid", interval=IV, args={"log": str(d / "grid.log")}),
        clerk.task(PinnedCounter, name="pinned", interval=IV,
                   args={"log": str(d / "pinned.log")}),
        clerk.task(Counter, name="off", interval=IV, enabled=False, instant=True,
                   args={"log": str(d / "off.log")}),
        clerk.task(Counter, name="once", interval=None, instant=True,
                   args={"log": str(d / "once.log")}),
    ]
    with LocalCluster(3, tasks=tasks) as cluster:
        yield Setup(cluster, d, cluster.wait_for_manager(timeout=15))


def wait_runs(s: Setup, name: str, n: int, timeout: float) -> list:
    return wait_until(lambda: (rows := counter_lines(s.log(name)))[n - 1:] and rows,
                      timeout=timeout, message=lambda: f"{name}: fewer than {n} runs")


def test_runs_arrive_at_the_interval_and_start_on_the_grid(setup: Setup) -> None:
    rows = wait_runs(setup, "grid", 40, timeout=20)[:40]
    slots = [r.slot for r in rows]
    assert slots == sorted(set(slots)), "one run per slot, in order"
    late = [r.started - due("grid", IV, r.slot) for r in rows]
    assert min(late) > -0.002, "no run starts before its slot"
    assert median(late) < 0.03, late
    assert sum(x < IV / 1000 for x in late) >= 0.9 * len(late), late
    # Runs arrive at the interval: few slots are skipped between the first and the last.
    assert len(slots) >= 0.85 * (slots[-1] - slots[0] + 1)
    gaps = [b.started - a.started for a, b in zip(rows, rows[1:], strict=False)]
    assert 0.08 < median(gaps) < 0.12, gaps


def test_state_threads_through_runs(setup: Setup) -> None:
    rows = wait_runs(setup, "grid", 20, timeout=20)
    assert [r.count for r in rows] == list(range(1, len(rows) + 1))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_over_100_runs_every_node_runs_a_fair_share(setup: Setup) -> None:
    # Count from the first run after which every node has run once: while the cluster forms
    # (a node still joining, not yet acknowledged) fewer nodes are eligible, which is right
    # but is not what fairness is about. Seen in CI: 46/40/14 over the first 100 runs.
    names = set(setup.cluster.names)

    def formed_at(rows: list) -> int | None:
        seen: set[str] = set()
        for i, r in enumerate(rows):
            seen.add(r.node)
            if seen == names:
                return i + 1
        return None

    def enough() -> list | None:
        rows = counter_lines(setup.log("grid"))
        start = formed_at(rows)
        return rows[start:start + 100] if start is not None and len(rows) >= start + 100 \
            else None

    rows = present(wait_until(enough, timeout=60, message="fewer than 100 runs after forming"))
    share = Tally(r.node for r in rows)
    assert set(share) == set(setup.cluster.names), share
    # Binomial(100, 1/3): mean 33, sd 4.7; 15 is almost 4 sd below.
    assert min(share.values()) >= 15, share


def test_nodes_filter_is_obeyed(setup: Setup) -> None:
    rows = wait_runs(setup, "pinned", 15, timeout=20)
    # nodes() has a 20 ms budget (README): past it, that run may go to any member that has the
    # task, and the manager counts it. On a loaded machine the helper thread can be that late
    # (a first call, or members that changed while the cluster formed: no answer asked ahead),
    # so a run elsewhere is allowed exactly as often as an overrun was counted, on any node
    # that was manager. Without the filter two runs in three would land elsewhere, uncounted.
    elsewhere = [r for r in rows if r.node != "n2@127.0.0.1"]
    if elsewhere:
        overruns = sum(task_row(setup.cluster.status(n), "pinned")["nodes_overruns"]
                       for n in setup.cluster.names)
        assert len(elsewhere) <= overruns, (elsewhere, overruns)
    assert [r.count for r in rows] == list(range(1, len(rows) + 1))


def test_disabled_never_runs_and_instant_runs_once(setup: Setup) -> None:
    wait_runs(setup, "grid", 20, timeout=20)
    assert not setup.log("off").exists()
    once = counter_lines(setup.log("once"))
    assert len(once) == 1 and once[0].count == 1
    st = setup.cluster.status(setup.manager)
    assert task_row(st, "off")["runs"] == dict.fromkeys(
        ("ok", "error", "timeout", "skipped", "refused"), 0)
    assert task_row(st, "off")["next_due"] is None
    assert task_row(st, "once")["runs"]["ok"] == 1
    assert task_row(st, "once")["next_due"] is None


def test_clerk_status_json_shows_counters_last_run_next_due_and_node_runs(setup: Setup) -> None:
    wait_runs(setup, "grid", 10, timeout=20)
    c = setup.cluster
    cmd = [sys.executable, "-m", "clerk", "status", "--join", c.address(setup.manager),
           "--cookie-file", str(c.cookie_file), "--json"]
    before = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    st = json.loads(out)
    grid = task_row(st, "grid")
    assert set(grid["runs"]) >= {"ok", "error", "timeout", "skipped"}
    assert grid["runs"]["ok"] >= 10 and grid["runs"]["error"] == 0
    last = grid["last_run"]
    assert set(last) >= {"node", "slot", "duration_ms", "outcome", "error"}
    assert last["node"] in c.names and last["outcome"] == "ok" and last["error"] == ""
    assert 0 <= last["duration_ms"] < 1000
    next_due = datetime.fromisoformat(grid["next_due"])  # ISO 8601 with the offset
    assert next_due.utcoffset() is not None
    assert before - 2 < next_due.timestamp() < time.time() + 2 * IV / 1000
    per_node = {m["name"]: m["runs"] for m in st["members"]}
    assert set(per_node) == set(c.names)
    assert sum(per_node.values()) == sum(st["node_runs"].values()) >= 10
    assert per_node["n2@127.0.0.1"] >= task_row(st, "pinned")["runs"]["ok"] > 0
