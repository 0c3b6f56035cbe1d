"""A trigger asks the task's ``nodes()`` once (:mod:`clerk._operator`), on a real node.

``nodes()`` is user code that runs on the manager (:mod:`clerk._nodes_guard`); a trigger used
to call it twice, once to decide and once more in the dispatch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import clerk
from clerk.testing import free_ports, wait_until
from tests.integration.cluster_helpers import present
from tests.integration.cluster_tasks import Counter, CountsNodesCalls
from tests.integration.task_helpers import counter_lines

pytestmark = pytest.mark.timeout(60)

ROOT = str(Path(__file__).resolve().parents[2])
#: Its sitecustomize holds a node's workers until a file exists (CLERK_TEST_WORKER_GATE).
GATE_SITE = Path(__file__).parent / "worker_site"


def test_a_trigger_calls_the_tasks_nodes_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "nodes.log"
    calls.touch()
    monkeypatch.setenv("CLERK_TEST_NODES_LOG", str(calls))  # (the node's processes inherit it)
    log = tmp_path / "runs.log"
    # Disabled: no scheduled run asks nodes() (a trigger runs a disabled task all the same).
    tasks = [clerk.task(CountsNodesCalls, name="counted", interval=60_000, enabled=False,
                        args={"log": str(log)})]
    (port,) = free_ports(1)
    with clerk.Node(name="solo@127.0.0.1", port=port, insecure=True, workers=1,
                    tasks=tasks) as node:
        # Until its workers are ready a node announces no task: the task is "gone" meanwhile.
        wait_until(lambda: (st := node.status())["manager"] == "solo@127.0.0.1" and [
            row["gone_since"] for row in st["tasks"]] == [None], timeout=15)
        run = present(wait_until(lambda: _trigger(node), timeout=15))
        assert run["node"] == "solo@127.0.0.1"
        wait_until(lambda: len(counter_lines(log)) == 1, timeout=10)
        assert calls.read_text().splitlines() == ["solo@127.0.0.1"]


def _trigger(node: clerk.Node) -> dict[str, object] | None:
    """The trigger's answer, or None while the new manager cannot take it yet."""
    try:
        return node.trigger("counted")
    except clerk.ControlError as exc:
        if "try again" in str(exc):
            return None
        raise


@pytest.mark.timeout(150)
def test_a_trigger_before_the_nodes_workers_are_up_says_not_loaded_yet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node announces its tasks only once every worker is up: until then its own task is
    "gone" to its scheduler. A trigger sent then (the node is the manager at once; its
    workers take ~0.3-0.6 s more to start here) was refused as "no longer loaded by any live
    member", as for a task removed from the set, and not to be tried again (this test failed
    on main: ControlError with that text). Now: "not loaded yet ... try again"; once the
    workers are up the same trigger runs. The workers are held down (``worker_site``) until the
    refusal is seen: the test used to depend on hitting that window after ``start()``, and
    under load the node could be the manager only once its workers were up."""
    gate = tmp_path / "workers-may-start"
    monkeypatch.setenv("CLERK_TEST_WORKER_GATE", str(gate))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(GATE_SITE), ROOT, *sys.path]))
    log = tmp_path / "runs.log"
    tasks = [clerk.task(Counter, name="c", interval=60_000, enabled=False,
                        args={"log": str(log)})]
    (port,) = free_ports(1)
    refusals: list[str] = []
    node = clerk.Node(name="solo@127.0.0.1", port=port, insecure=True, workers=6, tasks=tasks)
    # Up to 60 s to answer: starting a node took 8-12 s at load 8 on this 2-core machine,
    # past start()'s default 10 s (its workers held or not).
    node.start(timeout=60)
    try:
        def trigger() -> dict[str, object] | None:
            try:
                return node.trigger("c")
            except clerk.ControlError as exc:
                refusals.append(str(exc))
                if "try again" in str(exc):
                    return None
                raise

        # The manager, its workers held: the task is not loaded yet, whatever the load.
        wait_until(lambda: node.status()["manager"] == "solo@127.0.0.1", timeout=20)
        assert trigger() is None, "a trigger ran with no worker up"
        assert "task 'c' is not loaded yet" in refusals[-1] and "try again" in refusals[-1], \
            refusals
        gate.touch()
        run = present(wait_until(trigger, timeout=20, interval=0.02))
        assert run["node"] == "solo@127.0.0.1"
        wait_until(lambda: len(counter_lines(log)) == 1, timeout=10)
    finally:
        node.stop()
    assert not [r for r in refusals if "no longer loaded" in r], refusals
