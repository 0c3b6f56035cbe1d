"""A stall of the node's loop shows up as its longest busy turn, in the status
(``transport.turn_ms_max``, ``turn_ms_max_recent``) and in the Prometheus metrics
(``clerk_node_loop_turn_max_seconds``, ``..._recent_max_seconds``): real node processes, and
the test-only stall hook of ``tests/integration/stall_tasks.py``."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

import clerk
from clerk.testing import LocalCluster, wait_until
from tests.integration.stall_tasks import Idle, stall

pytestmark = pytest.mark.timeout(90)
STALL_S = 1.0


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in text.splitlines()
                                        if line.startswith("clerk_node_loop_turn"))}


def test_a_stalled_loop_turn_shows_in_the_status_and_the_metrics(stall_dir: Path) -> None:
    tasks = [clerk.task(Idle, name="idle", interval=3_600_000)]
    with LocalCluster(1, tasks=tasks, metrics=True) as cluster:
        (name,) = cluster.names
        cluster.wait_for_manager(timeout=20)
        url = cluster.metrics_url(name)
        cluster.status(name)  # the status's window of recent turns opens here
        scrape(url)  # and the scrape's
        request = stall(stall_dir, name, STALL_S)
        wait_until(lambda: not request.exists(), timeout=10, message="the stall not taken")
        st = wait_until(lambda: cluster.status(name, timeout=5)["transport"], timeout=10)
        assert st["turn_ms_max"] >= STALL_S * 1000, st
        assert st["turn_ms_max_recent"] >= STALL_S * 1000, st
        again = cluster.status(name)["transport"]  # a new window: the stall was before it
        assert again["turn_ms_max"] == st["turn_ms_max"], again
        assert again["turn_ms_max_recent"] < STALL_S * 1000, again
        m = scrape(url)  # status reads do not reset the scrape's window
        assert m["clerk_node_loop_turn_max_seconds"] >= STALL_S, m
        assert m["clerk_node_loop_turn_recent_max_seconds"] >= STALL_S, m
        m = scrape(url)
        assert m["clerk_node_loop_turn_max_seconds"] >= STALL_S, m
        assert m["clerk_node_loop_turn_recent_max_seconds"] < STALL_S, m
