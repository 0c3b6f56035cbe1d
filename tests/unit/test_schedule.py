"""The manager's pure Scheduler, driven with fake wall times and a seeded Random."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from clerk._schedule import TRANSIT_GRACE_MS, Scheduler, phase_ms
from clerk._tasks import TaskDef

NODES = {"a": ("t",), "b": ("t",), "c": ("t",)}
IV = 1000  # ms


def tdef(name: str = "t", interval: int | None = IV, *, timeout: int = 500,
         instant: bool = False, enabled: bool = True, args: Any = None) -> TaskDef:
    return TaskDef(name=name, target="x:Y", interval=interval, timeout=timeout,
                   instant=instant, enabled=enabled, args=args)


def due(name: str, slot: int, interval: int = IV) -> float:
    """Wall time (s) at which ``slot`` of ``name`` is due."""
    return (phase_ms(name, interval) + slot * interval) / 1000


K = 1_700_000  # a slot number far from the epoch (a realistic wall time)


def sched(*defs: TaskDef, seed: int = 1, nodes_filter: Any = None) -> Scheduler:
    return Scheduler(list(defs) or [tdef()], random.Random(seed), nodes_filter)


def started(s: Scheduler, at: float, graceful: bool = False) -> Scheduler:
    s.activate(at, graceful=graceful)
    return s


def run_ok(s: Scheduler, slot: int, state: Any = None, name: str = "t",
           members: Any = NODES) -> str:
    """Tick at ``slot``'s due time, expect one dispatch, answer ok; return the node."""
    ds, _ = s.tick(due(name, slot), members)
    assert [d.slot for d in ds] == [slot]
    fin = s.on_result(name, ds[0].run_id, ds[0].node, "ok", state, 1.0, "", due(name, slot) + 0.01)
    assert fin is not None and fin.outcome == "ok"
    return ds[0].node


# --- the grid -------------------------------------------------------------------------------------


def test_phase_is_stable_and_within_the_interval() -> None:
    assert phase_ms("t", IV) == phase_ms("t", IV)
    phases = {phase_ms(f"task{i}", IV) for i in range(50)}
    assert all(0 <= p < IV for p in phases)
    assert len(phases) > 40  # spread: tasks of one interval do not all fire together


def test_runs_fall_on_the_grid_and_wait_for_their_slot() -> None:
    s = started(sched(), due("t", K) + 0.2)
    assert s.next_deadline(due("t", K) + 0.2) == pytest.approx(due("t", K + 1))
    assert s.tick(due("t", K + 1) - 0.001, NODES) == ([], [])
    for slot in range(K + 1, K + 6):
        run_ok(s, slot, state={"n": slot})
    assert s.records["t"].slot == K + 5
    assert s.records["t"].counts["ok"] == 5
    assert s.records["t"].counts["skipped"] == 0


def test_inactive_scheduler_does_nothing() -> None:
    s = sched()
    assert s.tick(due("t", K), NODES) == ([], [])
    assert s.next_deadline(due("t", K)) == float("inf")


def test_a_slot_whose_predecessor_is_running_is_skipped_not_overlapped() -> None:
    s = started(sched(tdef(timeout=5000)), due("t", K) + 0.1)
    ds, _ = s.tick(due("t", K + 1), NODES)
    assert len(ds) == 1
    for slot in (K + 2, K + 3):
        assert s.tick(due("t", slot), NODES) == ([], [])
    assert s.records["t"].counts["skipped"] == 2
    fin = s.on_result("t", ds[0].run_id, ds[0].node, "ok", 7, 2500.0, "", due("t", K + 3) + 0.5)
    assert fin is not None and fin.slot == K + 1
    run_ok(s, K + 4)


def test_missed_slots_after_a_stall_are_counted() -> None:
    s = started(sched(), due("t", K) + 0.1)
    run_ok(s, K + 1)
    # The loop stalls: the next tick comes during slot K+5. Slots K+2..K+4 were missed.
    ds, _ = s.tick(due("t", K + 5) + 0.3, NODES)
    assert [d.slot for d in ds] == [K + 5]
    assert s.records["t"].counts["skipped"] == 3


# --- outcomes -------------------------------------------------------------------------------------


def test_past_the_deadline_the_manager_records_a_timeout_and_keeps_the_state() -> None:
    s = started(sched(tdef(timeout=300)), due("t", K) + 0.1)
    run_ok(s, K + 1, state={"v": 1})
    ds, _ = s.tick(due("t", K + 2), NODES)
    limit = due("t", K + 2) + (300 + TRANSIT_GRACE_MS) / 1000
    assert s.next_deadline(due("t", K + 2)) == pytest.approx(limit)
    assert s.tick(limit - 0.001, NODES)[1] == []
    _, fins = s.tick(limit, NODES)
    assert [(f.slot, f.outcome, f.node) for f in fins] == [(K + 2, "timeout", ds[0].node)]
    rec = s.records["t"]
    assert rec.state == {"v": 1} and rec.counts["timeout"] == 1 and rec.running is None
    assert rec.last is not None and rec.last["outcome"] == "timeout"
    # The late answer of the timed-out run is ignored.
    assert s.on_result("t", ds[0].run_id, ds[0].node, "ok", {"v": 99}, 1.0, "", limit) is None
    assert rec.state == {"v": 1}


def test_fail_node_ends_its_runs_as_timeouts_at_once() -> None:
    s = started(sched(tdef("t"), tdef("u")), due("t", K) + 0.1)
    members = {"a": ("t", "u")}
    ds = s.tick(due("t", K + 1), members)[0] + s.tick(due("u", K + 1), members)[0]
    assert {d.node for d in ds} == {"a"}
    assert s.fail_node("b", due("u", K + 1)) == []
    fins = s.fail_node("a", due("u", K + 1) + 0.05)
    assert sorted((f.task, f.outcome) for f in fins) == [("t", "timeout"), ("u", "timeout")]
    assert all("node a was lost" in f.error for f in fins)
    assert s.records["t"].running is None and s.records["u"].running is None


def test_bound_run_brings_a_run_s_deadline_forward_never_back() -> None:
    """A run adopted on a node the new manager does not list times out at the bound, not at
    its long deadline (clerk._adoptedruns); a bound past the deadline changes nothing."""
    s = started(sched(tdef(timeout=60_000)), due("t", K) + 0.1)
    ds, _ = s.tick(due("t", K + 1), NODES)
    limit = due("t", K + 1) + (60_000 + TRANSIT_GRACE_MS) / 1000
    s.bound_run("t", (limit + 5) * 1000)
    assert s._inflight.get("t") == pytest.approx(limit * 1000)
    bound = due("t", K + 1) + 12.0
    s.bound_run("t", bound * 1000)
    s.bound_run("u", bound * 1000)  # (no such run: nothing)
    timeouts = [f for f in s.tick(bound - 0.001, NODES)[1] if f.outcome == "timeout"]
    assert timeouts == []
    _, fins = s.tick(bound, NODES)
    assert [(f.slot, f.outcome, f.node) for f in fins if f.outcome == "timeout"] == [
        (K + 1, "timeout", ds[0].node)]
    run = s.records["t"].running  # (the slot due at the bound goes at once)
    assert run is not None and run["slot"] == K + 13


def test_results_for_unknown_runs_or_tasks_are_ignored() -> None:
    s = started(sched(), due("t", K) + 0.1)
    ds, _ = s.tick(due("t", K + 1), NODES)
    w = due("t", K + 1) + 0.01
    assert s.on_result("t", "bogus-1", ds[0].node, "ok", 5, 1.0, "", w) is None
    assert s.on_result("nope", ds[0].run_id, ds[0].node, "ok", 5, 1.0, "", w) is None
    other = next(n for n in NODES if n != ds[0].node)
    assert not s.expects("t", ds[0].run_id, other) and s.expects("t", ds[0].run_id, ds[0].node)
    assert s.on_result("t", ds[0].run_id, other, "ok", 5, 1.0, "", w) is None, "wrong node"
    assert s.records["t"].running is not None
    assert s.on_result("t", ds[0].run_id, ds[0].node, "ok", 5, 1.0, "", w) is not None
    # A second answer for the same run (a duplicate) is ignored too.
    assert s.on_result("t", ds[0].run_id, ds[0].node, "ok", 6, 1.0, "", w) is None
    assert s.records["t"].state == 5


def test_ok_replaces_the_state_error_keeps_it_and_shows_the_traceback() -> None:
    s = started(sched(), due("t", K) + 0.1)
    run_ok(s, K + 1, state={"v": 1})
    ds, _ = s.tick(due("t", K + 2), NODES)
    tb = "Traceback (most recent call last):\n  ...\nValueError: boom"
    fin = s.on_result("t", ds[0].run_id, ds[0].node, "error", None, 3.0, tb,
                      due("t", K + 2) + 0.01)
    assert fin is not None and fin.outcome == "error" and fin.error == tb
    rec = s.records["t"]
    assert rec.state == {"v": 1} and rec.has_state
    assert rec.last == {"node": ds[0].node, "slot": K + 2, "duration_ms": 3.0,
                        "outcome": "error", "error": tb, "finished": pytest.approx(
                            (due("t", K + 2) + 0.01) * 1000),
                        "round_trip_ms": pytest.approx(10.0)}
    ds, _ = s.tick(due("t", K + 3), NODES)
    assert ds[0].state == {"v": 1} and not ds[0].init
    # An unknown outcome is an error, not a crash.
    fin = s.on_result("t", ds[0].run_id, ds[0].node, "weird", 1, 1.0, "x", due("t", K + 3))
    assert fin is not None and fin.outcome == "error" and rec.state == {"v": 1}


def test_init_only_while_no_state_exists() -> None:
    s = started(sched(tdef(args={"url": "u"})), due("t", K) + 0.1)
    ds, _ = s.tick(due("t", K + 1), NODES)
    assert ds[0].init and ds[0].state == {"url": "u"}
    s.on_result("t", ds[0].run_id, ds[0].node, "error", None, 1.0, "boom", due("t", K + 1))
    ds, _ = s.tick(due("t", K + 2), NODES)
    assert ds[0].init, "a failed first run leaves no state: init again"
    s.on_result("t", ds[0].run_id, ds[0].node, "ok", None, 1.0, "", due("t", K + 2))
    ds, _ = s.tick(due("t", K + 3), NODES)
    assert not ds[0].init and ds[0].state is None, "None is a valid state"


def test_counters_per_node_count_runs_that_executed() -> None:
    s = started(sched(), due("t", K) + 0.1)
    nodes = Counter(run_ok(s, slot) for slot in range(K + 1, K + 31))
    assert s.node_runs == dict(nodes)


# --- instant, enabled, nodes() --------------------------------------------------------------------


def test_instant_runs_once_at_activation_then_on_the_grid() -> None:
    s = started(sched(tdef(instant=True)), due("t", K) + 0.4)
    assert s.next_deadline(due("t", K) + 0.4) == due("t", K) + 0.4
    ds, _ = s.tick(due("t", K) + 0.4, NODES)
    assert [d.slot for d in ds] == [K]
    s.on_result("t", ds[0].run_id, ds[0].node, "ok", 1, 1.0, "", due("t", K) + 0.41)
    assert s.tick(due("t", K) + 0.5, NODES) == ([], [])
    run_ok(s, K + 1)
    # A later manager with this table does not run it "instantly" again.
    s2 = sched(tdef(instant=True))
    s2.load(s.table())
    s2.activate(due("t", K + 1) + 0.5, graceful=True)
    assert s2.instant_pending == set()


def test_instant_only_task_runs_exactly_once() -> None:
    s = started(sched(tdef(interval=None, instant=True)), 1000.0)
    ds, _ = s.tick(1000.0, NODES)
    assert len(ds) == 1 and ds[0].init
    s.on_result("t", ds[0].run_id, ds[0].node, "ok", 1, 1.0, "", 1000.1)
    for t in range(1001, 1100, 7):
        assert s.tick(float(t), NODES) == ([], [])
    assert s.next_deadline(2000.0) == float("inf")
    assert s.status(2000.0)[0]["next_due"] is None


def test_disabled_task_never_runs() -> None:
    s = started(sched(tdef(enabled=False, instant=True)), due("t", K) + 0.1)
    for slot in range(K, K + 20):
        assert s.tick(due("t", slot), NODES) == ([], [])
    assert s.next_deadline(due("t", K)) == float("inf")
    assert s.records["t"].runs == 0 and s.records["t"].counts["skipped"] == 0


def test_nodes_filter_is_obeyed_and_cannot_add_strangers() -> None:
    seen: list[list[str]] = []

    def only_b(d: TaskDef, members: list[str]) -> list[str]:
        seen.append(list(members))
        return ["b", "stranger"]

    s = started(sched(nodes_filter=only_b), due("t", K) + 0.1)
    assert {run_ok(s, slot) for slot in range(K + 1, K + 21)} == {"b"}
    assert seen[0] == ["a", "b", "c"]


def test_a_filter_that_keeps_a_task_s_members_is_not_called_for_it() -> None:
    class Filter:
        def __init__(self) -> None:
            self.calls: list[str] = []
            self.own = False  # does "t" have a nodes() of its own (as a class may on reload)

        def keeps(self, d: TaskDef) -> bool:
            return not self.own

        def __call__(self, d: TaskDef, members: list[str]) -> list[str]:
            self.calls.append(d.name)
            return members[:1]

    f = Filter()
    s = started(sched(nodes_filter=f), due("t", K) + 0.1)
    # The same nodes as without a filter (the same seed: the same random choices).
    plain = started(sched(), due("t", K) + 0.1)
    slots = range(K + 1, K + 21)
    assert [run_ok(s, slot) for slot in slots] == [run_ok(plain, slot) for slot in slots]
    assert len({run_ok(s, slot) for slot in range(K + 21, K + 41)}) > 1
    assert f.calls == []
    f.own = True
    assert {run_ok(s, slot) for slot in range(K + 41, K + 51)} == {"a"}
    assert f.calls


def test_only_members_that_have_the_task_are_eligible() -> None:
    s = started(sched(), due("t", K) + 0.1)
    members = {"a": ("t",), "b": ("other",), "c": ()}
    assert {run_ok(s, slot, members=members) for slot in range(K + 1, K + 11)} == {"a"}


def test_an_exception_in_nodes_is_an_error_of_that_run() -> None:
    def broken(d: TaskDef, members: list[str]) -> list[str]:
        raise KeyError("zone")

    s = started(sched(nodes_filter=broken), due("t", K) + 0.1)
    ds, fins = s.tick(due("t", K + 1), NODES)
    assert ds == []
    assert [(f.outcome, f.slot) for f in fins] == [("error", K + 1)]
    rec = s.records["t"]
    assert rec.counts["error"] == 1 and rec.counts["skipped"] == 0
    assert rec.last is not None and "nodes() raised KeyError" in rec.last["error"]
    assert rec.last["outcome"] == "error" and rec.slot == K + 1  # done with: not rerun


def test_no_eligible_node_skips_with_the_reason() -> None:
    s = started(sched(nodes_filter=lambda d, m: []), due("t", K) + 0.1)
    ds, fins = s.tick(due("t", K + 1), NODES)
    assert ds == [] and fins[0].outcome == "skipped" and "no eligible node" in fins[0].error


# --- due time and deadline (what EXECUTE carries) -------------------------------------------------


def test_a_dispatch_carries_its_slots_due_time_and_the_runs_deadline() -> None:
    s = started(sched(tdef(timeout=300)), due("t", K) + 0.2)
    late_by = 0.004  # the tick comes a little after the slot's time
    ds, _ = s.tick(due("t", K + 1) + late_by, NODES)
    (d,) = ds
    assert d.due_ms == round(due("t", K + 1) * 1000)
    assert d.deadline_ms == int((due("t", K + 1) + late_by) * 1000) + 300


def test_an_instant_run_is_due_when_sent() -> None:
    at = due("t", K) + 0.4
    s = started(sched(tdef(instant=True)), at)
    (d,) = s.tick(at, NODES)[0]
    assert d.due_ms == int(at * 1000) and d.slot == K
    s2 = started(sched(tdef(interval=None, instant=True)), 1000.0)
    (d2,) = s2.tick(1000.0, NODES)[0]
    assert d2.due_ms == 1_000_000 and d2.deadline_ms == 1_000_000 + 500


def test_an_instant_run_waits_for_a_node_with_the_task_without_busy_looping() -> None:
    at = due("t", K) + 0.4
    s = started(sched(tdef(instant=True)), at)
    nobody: dict[str, tuple[str, ...]] = {"a": ()}  # workers not ready: no tasks advertised
    assert s.tick(at, nobody) == ([], [])
    assert s.next_deadline(at) == pytest.approx(due("t", K + 1))  # not "now" again
    assert s.tick(due("t", K + 1), nobody) == ([], [])
    assert s.records["t"].counts["skipped"] == 1  # the grid slot nobody could run
    ds, _ = s.tick(due("t", K + 1) + 0.05, NODES)
    assert len(ds) == 1 and ds[0].slot == K + 1 and ds[0].init
    assert s.instant_pending == set()
    assert s.records["t"].counts["skipped"] == 0  # slot K + 1 runs: not skipped after all
    s.on_result("t", ds[0].run_id, ds[0].node, "ok", 1, 1.0, "", due("t", K + 1) + 0.06)
    run_ok(s, K + 2)


def test_an_instant_run_that_waited_within_its_first_slot_counts_nothing_skipped() -> None:
    at = due("t", K) + 0.4
    s = started(sched(tdef(instant=True)), at)
    assert s.tick(at, {"a": ()}) == ([], [])
    (d,) = s.tick(at + 0.1, NODES)[0]
    assert d.slot == K and s.records["t"].counts["skipped"] == 0
