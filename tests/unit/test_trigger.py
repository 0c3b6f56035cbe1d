"""A trigger (``Scheduler.trigger``, :mod:`clerk._operator`) asks the task's ``nodes()`` once.

``nodes()`` is user code: it may be slow (each call past the manager's budget is an overrun,
counted and warned about: :mod:`clerk._nodes_guard`) or not deterministic (a random subset).
A trigger used to ask it twice, once to decide and once more in the dispatch: two overruns for
one run, and a second answer that could disagree with the first (none left: the trigger raised
``IndexError`` in the manager's loop after counting a skip).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from clerk._nodes_guard import NodesGuard
from clerk._schedule import Scheduler
from clerk._tasks import Task, TaskDef
from tests.unit.test_offer_wait_skips import _waiting
from tests.unit.test_schedule import IV, NODES, K, due, sched, started


class CountingNodes(Task):
    """A task whose ``nodes()`` counts its calls and answers the first node only."""

    calls: ClassVar[int] = 0

    def execute(self, state: Any) -> Any:
        return state

    def nodes(self, members: list[str]) -> list[str]:
        CountingNodes.calls += 1
        return sorted(members)[:1]


def test_a_trigger_asks_a_tasks_nodes_once() -> None:
    calls: list[list[str]] = []

    def nodes(d: TaskDef, members: list[str]) -> list[str]:
        calls.append(list(members))
        return members

    s = started(sched(nodes_filter=nodes), due("t", K) - 0.1)
    dispatch, error = s.trigger("t", due("t", K) + 0.2, NODES)
    assert error == "" and dispatch is not None
    assert calls == [sorted(NODES)]


def test_the_run_goes_where_the_one_answer_said_even_if_nodes_would_change_its_mind() -> None:
    """A ``nodes()`` that picks a random subset: the first answer is the run's. Before: the
    second call answered none, the dispatch counted the run as skipped and the trigger
    raised ``IndexError``."""
    answers = iter([["b"], [], [], []])

    def fickle(d: TaskDef, members: list[str]) -> list[str]:
        return next(answers)

    s = started(sched(nodes_filter=fickle), due("t", K) - 0.1)
    dispatch, error = s.trigger("t", due("t", K) + 0.2, NODES)
    assert error == "" and dispatch is not None and dispatch.node == "b"
    assert s.records["t"].counts["skipped"] == 0


def test_a_trigger_through_the_managers_guard_calls_the_tasks_nodes_once() -> None:
    """The manager's real path: ``Task.nodes()`` through :class:`NodesGuard` (a helper thread,
    within the budget)."""
    target = f"{CountingNodes.__module__}:{CountingNodes.__qualname__}"
    d = TaskDef(name="t", target=target, interval=60 * IV, timeout=500)
    guard = NodesGuard({"t": CountingNodes}, budget_s=5.0)
    try:
        s = Scheduler([d], random.Random(1), guard)
        s.activate(due("t", K, 60 * IV) - 0.1, graceful=False)
        CountingNodes.calls = 0
        dispatch, error = s.trigger("t", due("t", K, 60 * IV) + 0.2, NODES)
        assert error == "" and dispatch is not None and dispatch.node == "a"
        assert CountingNodes.calls == 1
        assert guard.overruns["t"] == 0
    finally:
        guard.close()


def test_a_trigger_while_the_manager_waits_for_offers_is_refused_not_raised() -> None:
    """A manager that took over from its replica (``stale``) or its data directory holds a run
    of a task with a state until the members' OFFERs came. Its dispatch skipped it; the
    trigger, which checked only a task without a state, then raised ``IndexError`` in the
    manager's loop. Now it is refused with the reason, and nothing is counted."""
    new, _, _ = _waiting()
    rec = new.records["t"]
    assert rec.has_state
    skipped = rec.counts["skipped"]
    wall = due("t", K + 2) + 0.1
    dispatch, error = new.trigger("t", wall, NODES)
    assert dispatch is None
    assert error == ("task 't': this manager waits for the members' states (OFFER) before it "
                     "runs a task: try again in a moment")
    assert rec.counts["skipped"] == skipped and rec.running is None
    for node in NODES:
        new.offer_from(node)
    dispatch, error = new.trigger("t", wall + 0.01, NODES)
    assert error == "" and dispatch is not None and dispatch.state == {"n": 1}



def test_a_trigger_of_a_task_this_node_has_but_does_not_announce_yet_says_not_loaded_yet(
) -> None:
    """Right after a node starts, before its workers are up, no live member announces its own
    task, so the scheduler holds it as "gone": a trigger then said "no longer loaded", as for a
    task removed from every member's set. The node's own task whose workers are starting
    (``loading_here``) is "not loaded yet: try again" (on main: "no longer loaded")."""
    s = started(sched(), due("t", K) - 0.1)
    s.loading_here = frozenset({"t"})  # as TaskRunner sets it until its workers are ready
    s.update_defs({}, due("t", K))  # what the live members announce: nothing yet
    assert "t" in s.gone
    dispatch, error = s.trigger("t", due("t", K) + 0.2, {"a": ()})
    assert dispatch is None
    assert error == ("task 't' is not loaded yet (no live member announces it: this node's "
                     "workers are starting): try again in a moment")
    s.loading_here = frozenset()  # its workers are up: it announces the task
    s.update_defs({"t": s.defs["t"]}, due("t", K) + 0.3)
    dispatch, error = s.trigger("t", due("t", K) + 0.4, {"a": ("t",)})
    assert error == "" and dispatch is not None and dispatch.node == "a"


def test_a_trigger_of_a_task_removed_from_every_members_set_says_no_longer_loaded() -> None:
    """A task no live member announces that is not this node's own (a rolling deploy removed
    it; this node's set does not have it either): "no longer loaded", not "try again"."""
    s = started(sched(), due("t", K) - 0.1)
    s.loading_here = frozenset({"other"})  # this node's own set, without "t"
    s.update_defs({}, due("t", K))
    dispatch, error = s.trigger("t", due("t", K) + 0.2, {"a": ()})
    assert dispatch is None
    assert error == "task 't' is no longer loaded by any live member"
