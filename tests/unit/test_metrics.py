"""The metric families a scrape exposes, from fake sources (the live scrape is an integration
test): names, labels, units, and values read from the table and the loop's counters."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from clerk._metrics import (
    DURATION_BUCKETS,
    LATENESS_BUCKETS,
    LoopTurns,
    NodeMetrics,
    Sources,
    _families,
)
from clerk._schedule import Scheduler, pack_table, unpack_table
from tests.unit.test_schedule import K, due, run_ok, started, tdef


def scrape(src: Sources) -> dict[str, float]:
    class _C:
        def collect(self) -> Any:
            return _families(src)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_C())  # type: ignore[arg-type]
    out = {}
    for line in generate_latest(reg).decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_families_names_labels_and_values() -> None:
    s = started(Scheduler([tdef("t"), tdef("u")], random.Random(1)), due("t", K) - 0.1)
    for k in range(K, K + 3):
        run_ok(s, k, state={"k": k})
    s.set_paused("u", True, "a", 1.0)
    node = NodeMetrics(["t", "u"])
    node.observe_run("t", 12.0, 3.0)
    node.observe_run("t", 700.0, None)  # a triggered run: no lateness
    node.elections_started, node.members_alive, node.executes_stale = 2, 3, 1
    m = scrape(Sources(node=node, is_manager=lambda: True, term=lambda: 7,
                       bad_frames=lambda: Counter({"json": 4}), worker_restarts=lambda: 5,
                       table=lambda: unpack_table(pack_table(s.table())),
                       replica_refused=lambda: (6, 2), clock_offset=lambda: -2.0015))
    assert m["clerk_node_clock_offset_seconds"] == -2.0015
    assert m['clerk_task_runs_total{outcome="ok",task="t"}'] == 3
    assert m['clerk_task_runs_total{outcome="error",task="t"}'] == 0
    assert m['clerk_task_skipped_slots_total{task="t"}'] == 0
    assert m['clerk_task_paused{task="u"}'] == 1 and m['clerk_task_paused{task="t"}'] == 0
    assert m['clerk_task_state_bytes{task="t"}'] == s.state_bytes("t") > 0
    assert m['clerk_task_duration_seconds_count{task="t"}'] == 2
    assert m['clerk_task_duration_seconds_sum{task="t"}'] == 0.712
    assert m['clerk_task_start_lateness_seconds_count{task="t"}'] == 1
    assert m[f'clerk_task_start_lateness_seconds_bucket{{le="{LATENESS_BUCKETS[0]}",task="t"}}'
             ] == 0
    assert m['clerk_task_start_lateness_seconds_bucket{le="0.005",task="t"}'] == 1
    assert m["clerk_node_is_manager"] == 1 and m["clerk_node_term"] == 7
    assert m["clerk_node_members_alive"] == 3
    assert m["clerk_node_elections_started_total"] == 2
    assert m["clerk_node_executes_stale_total"] == 1
    assert m["clerk_node_worker_restarts_total"] == 5
    assert m['clerk_node_bad_frames_total{reason="json"}'] == 4
    assert m["clerk_node_replica_refused_total"] == 6
    assert m["clerk_node_replica_refused_hist_total"] == 2


def test_a_follower_without_a_table_yet_exposes_node_metrics_only() -> None:
    m = scrape(Sources(node=NodeMetrics([]), is_manager=lambda: False, term=lambda: 0,
                       bad_frames=Counter, worker_restarts=lambda: 0, table=lambda: None))
    assert m["clerk_node_is_manager"] == 0
    assert not any(k.startswith("clerk_task_runs_total") for k in m)
    assert "clerk_node_clock_offset_seconds" not in m  # no estimate: no gauge


def test_the_loops_longest_turn_since_start_since_a_status_read_and_since_a_scrape() -> None:
    t = LoopTurns()
    for busy in (0.002, 0.5, 0.01):
        if busy > t.floor:  # as the loop calls it
            t.note(busy)
    assert (t.longest, t.since_status, t.since_scrape) == (0.5, 0.5, 0.5)
    assert t.take_status() == 0.5 and t.since_status == 0.0 and t.floor == 0.0
    for busy in (0.003, 0.02, 0.001):
        if busy > t.floor:
            t.note(busy)
    assert t.take_status() == 0.02 and t.longest == 0.5
    assert t.take_scrape() == 0.5  # its own window: status reads did not reset it
    assert t.take_scrape() == 0.0
    node = NodeMetrics([])
    node.turns.note(0.25)
    src = Sources(node=node, is_manager=lambda: False, term=lambda: 0, bad_frames=Counter,
                  worker_restarts=lambda: 0, table=lambda: None)
    m = scrape(src)
    assert m["clerk_node_loop_turn_max_seconds"] == 0.25
    assert m["clerk_node_loop_turn_recent_max_seconds"] == 0.25
    node.turns.note(0.125)
    m = scrape(src)
    assert m["clerk_node_loop_turn_max_seconds"] == 0.25
    assert m["clerk_node_loop_turn_recent_max_seconds"] == 0.125
    assert scrape(src)["clerk_node_loop_turn_recent_max_seconds"] == 0.0


def test_observe_run_buckets_clamps_and_adds_tasks() -> None:
    """What ``observe_run`` (inlined, once per result on the manager) records: seconds in
    the first bucket they fit (a bound is inclusive), negative or NaN times as 0, no lateness
    for a run without one, and histograms for a task announced after the start."""
    node = NodeMetrics(["t"])
    node.observe_run("t", 10.0, 2.0)  # 0.01 s: the first duration bound; 0.002 s: lateness's
    node.observe_run("t", -5.0, float("nan"))
    node.observe_run("t", 400_000.0, None)  # past the last bound: +Inf
    node.observe_run("new", 60.0, 1000.0)
    d, lt = node.duration["t"], node.lateness["t"]
    assert d.counts == [2] + [0] * (len(DURATION_BUCKETS) - 1) + [1]
    assert d.total == pytest.approx(0.01 + 400.0)
    assert lt.counts == [2] + [0] * len(LATENESS_BUCKETS)
    assert lt.total == pytest.approx(0.002)
    assert node.duration["new"].counts[DURATION_BUCKETS.index(0.1)] == 1
    assert node.lateness["new"].counts[LATENESS_BUCKETS.index(2.0)] == 1
