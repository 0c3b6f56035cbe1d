"""A loop turn's work in the Scheduler: what is due next, kept in heaps (clerk._schedstate).

The heaps are caches of the truth (``next_slot``, the runs in flight): a stale one would wake
the loop too late (a slot never dispatched) or at a time nothing is due. Every test here
compares ``next_deadline`` against the definition, computed by walking every task and run
(:func:`reference_deadline`), after the changes that move it: pause, resume, trigger, cron,
a deploy adding, changing or removing a task, a run finishing early or timing out.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._dispatch import Dispatch
from clerk._schedstate import Deadlines
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef
from tests.unit.test_schedule import IV, K, due, tdef

LEAD = 20.0
NAMES = ("a", "b", "c")


def reference_deadline(s: Scheduler, wall: float) -> float:
    """``next_deadline`` by its definition: every run in flight, every scheduled task's next
    slot (a lead ahead), walked in full."""
    if not s.active:
        return math.inf
    if s.catch_up_pending:
        return wall
    best = min((float(r.running["deadline"]) for r in s.records.values()
                if r.running is not None), default=math.inf) / 1000
    if s.instant_pending - s._instant_waiting.keys():
        best = min(best, max(wall, s._init_wait_ms / 1000))
    if s.draining:
        return best
    if s._deferred:
        best = min(best, min(s._deferred.values()) / 1000)
    for name, d in s.defs.items():
        if (d.enabled and name in s._grid and name not in s.gone
                and not s.records[name].paused and name not in s._deferred):
            best = min(best, (s.due_ms(name, s.next_slot[name]) - s.dispatch_lead_ms) / 1000)
    return best


def check(s: Scheduler, wall: float) -> None:
    """``next_deadline`` is never later than its definition (a slot would go late or never);
    it is earlier only for a task that stopped (paused, removed, disabled) while its slot was
    in the heap: that entry wakes the loop once, then the tick drops it (as it always did)."""
    got, want = s.next_deadline(wall), reference_deadline(s, wall)
    assert got <= want + 1e-9, f"stale: next_deadline {got} after the definition's {want}"
    if got < want - 1e-9:
        stopped = {n for n, d in s.defs.items()
                   if n in s.gone or s.records[n].paused or not d.enabled}
        assert any(n in stopped and abs((t - s.dispatch_lead_ms) / 1000 - got) < 1e-9
                   for t, n in s._heap), f"next_deadline {got} is before anything is due"


def members(*names: str) -> dict[str, tuple[str, ...]]:
    return {n: names for n in NAMES}


def cron_def(name: str, expr: str = "*/2 * * * * *", timeout: int = 500) -> TaskDef:
    return TaskDef(name=name, target="x:Y", interval=None, timeout=timeout, instant=False,
                   enabled=True, args=None, cron=expr)


def answer(s: Scheduler, d: Dispatch, wall: float, outcome: str = "ok") -> None:
    assert s.on_result(d.task, d.run_id, d.node, outcome, 1, 1.0, "", wall) is not None


# --- directed: each change that moves the next deadline ------------------------------------------


def test_a_resumed_task_runs_again() -> None:
    s = Scheduler([tdef("t")], random.Random(1), dispatch_lead_ms=LEAD)
    at = due("t", K) + 0.01
    s.activate(at, graceful=False)
    s.set_paused("t", True, "a", at)
    for slot in range(K + 1, K + 4):  # paused: its slots are neither sent nor counted
        assert s.tick(due("t", slot), members("t")) == ([], [])
    later = due("t", K + 3) + 0.5
    s.set_paused("t", False, "a", later)
    check(s, later)
    assert s.next_deadline(later) == pytest.approx(due("t", K + 4) - 0.02)
    ds, _ = s.tick(due("t", K + 4) - 0.02, members("t"))
    assert [d.slot for d in ds] == [K + 4]
    assert_nothing_due_left(s, due("t", K + 4) - 0.02)


def test_pause_and_resume_move_the_next_deadline() -> None:
    s = Scheduler([tdef("t"), tdef("u", 3 * IV)], random.Random(1), dispatch_lead_ms=LEAD)
    at = due("t", K) + 0.01
    s.activate(at, graceful=False)
    check(s, at)
    s.set_paused("t", True, "a", at)
    check(s, at)
    assert s.next_deadline(at) == pytest.approx(s.due_ms("u", s.next_slot["u"]) / 1000 - 0.02)
    # Resumed after its next slot went by: the first slot due from now, not the old one.
    later = due("t", K + 3) + 0.01
    s.set_paused("t", False, "a", later)
    check(s, later)
    assert s.next_deadline(later) <= due("t", K + 4) - 0.02 + 1e-9


def test_a_trigger_and_a_run_that_ends_early() -> None:
    s = Scheduler([tdef("t", timeout=100)], random.Random(1), dispatch_lead_ms=LEAD)
    at = due("t", K) + 0.01
    s.activate(at, graceful=False)
    d, why = s.trigger("t", at, members("t"))
    assert d is not None, why
    check(s, at)  # the run's deadline (0.1 s + grace) is before the next slot
    answer(s, d, at + 0.005)  # it ends early: its deadline no longer wakes anyone
    check(s, at + 0.005)
    assert s.next_deadline(at + 0.005) == pytest.approx(due("t", K + 1) - 0.02)


def test_runs_past_their_deadlines_time_out_in_the_order_they_were_sent() -> None:
    first, second = sorted(("t", "u"), key=lambda n: due(n, K + 1))
    # The first sent has the later deadline: expiry follows the order of sending (as the
    # scan of every run in flight did), not the deadlines.
    s = Scheduler([tdef(first, timeout=900), tdef(second, timeout=100)], random.Random(1))
    at = max(due("t", K), due("u", K)) + 0.01
    s.activate(at, graceful=False)
    sent = []
    for name in (first, second):
        ds, _ = s.tick(due(name, K + 1), members("t", "u"))
        sent += ds
        check(s, due(name, K + 1))
    assert [d.task for d in sent] == [first, second]
    assert sent[0].deadline_ms > sent[1].deadline_ms
    late = max(d.deadline_ms for d in sent) / 1000 + 2.0
    _, fin = s.tick(late, members("t", "u"))
    assert [(f.task, f.outcome) for f in fin] == [(first, "timeout"), (second, "timeout")]
    check(s, late)
    assert s._inflight.earliest() > late * 1000  # only the runs sent at ``late`` are left


def test_a_cron_task_wakes_at_its_fire_times() -> None:
    pytest.importorskip("cronsim")
    s = Scheduler([cron_def("c")], random.Random(1), dispatch_lead_ms=LEAD)
    at = 1_800_000_000.3  # an even second is a fire time: the next is 1_800_000_002
    s.activate(at, graceful=False)
    check(s, at)
    assert s.next_deadline(at) == pytest.approx(1_800_000_002.0 - 0.02)
    ds, _ = s.tick(1_800_000_002.0 - 0.02, members("c"))
    assert [d.due_ms for d in ds] == [1_800_000_002_000]
    answer(s, ds[0], 1_800_000_002.01)
    check(s, 1_800_000_002.01)
    assert s.next_deadline(1_800_000_002.01) == pytest.approx(1_800_000_004.0 - 0.02)


def test_a_deploy_adds_changes_and_removes_tasks() -> None:
    s = Scheduler([tdef("t", 10 * IV)], random.Random(1), dispatch_lead_ms=LEAD)
    at = due("t", K, 10 * IV) + 0.01
    s.activate(at, graceful=False)
    check(s, at)
    # A task added by a deploy, due sooner: it wakes the loop.
    new = tdef("n", IV)
    s.update_defs({"t": s.defs["t"], "n": new}, at)
    check(s, at)
    assert s.next_deadline(at) <= at + IV / 1000  # within one of its intervals
    # Its interval changed: the new grid's next slot.
    s.update_defs({"t": s.defs["t"], "n": replace(new, interval=3 * IV)}, at)
    check(s, at)
    # Removed (no live member has it): its slot in the heap wakes the loop once, the tick
    # sends nothing, and then only the other task's slots wake it.
    s.update_defs({"t": s.defs["t"]}, at)
    check(s, at)
    once = s.next_deadline(at)
    assert s.tick(once, members("t")) == ([], [])
    check(s, once)
    assert s.next_deadline(once) == pytest.approx(
        s.due_ms("t", s.next_slot["t"]) / 1000 - 0.02)
    # Back again: it is scheduled again.
    s.update_defs({"t": s.defs["t"], "n": new}, at + 0.5)
    check(s, at + 0.5)


def test_a_deploy_that_takes_a_schedule_away_does_not_break_the_tick() -> None:
    """An interval task redeclared instant-only has no grid any more: its old heap entry is
    stale (it raised KeyError from next_deadline and tick on the manager's loop)."""
    s = Scheduler([tdef("t"), tdef("u")], random.Random(1))
    at = due("t", K) + 0.01
    s.activate(at, graceful=False)
    s.update_defs({"t": tdef("t", None, instant=True), "u": s.defs["u"]}, at)
    check(s, at)
    ds, _ = s.tick(at + 0.001, members("t", "u"))
    assert "t" not in [d.task for d in ds]  # no grid: no slot of it (nor an instant run:
    # it has been scheduled before, and ``instant`` runs only a new task)
    check(s, at + 0.001)
    for step in range(1, 30):
        s.tick(at + step * 0.1, members("t", "u"))
        check(s, at + step * 0.1)


def test_pending_instant_runs_go_in_the_order_of_the_definitions() -> None:
    defs = [tdef(f"i{k}", None, instant=True) for k in (3, 1, 2)]
    s = Scheduler(defs, random.Random(1))
    at = 1_800_000_000.0
    s.activate(at, graceful=False)
    later = tdef("i0", None, instant=True)  # added by a deploy: after the others
    s.update_defs({**s.defs, "i0": later}, at)
    ds, _ = s.tick(at, members("i3", "i1", "i2", "i0"))
    assert [d.task for d in ds] == ["i3", "i1", "i2", "i0"]
    check(s, at)


# --- Deadlines ------------------------------------------------------------------------------------


def test_deadlines_keep_the_earliest_and_the_order_of_entry() -> None:
    d = Deadlines({"x": 30.0, "y": 10.0})
    assert d.earliest() == 10.0
    d["z"] = 10.0
    d["y"] = 50.0  # moved later: its old entry is stale; it keeps its place in the order
    assert d.earliest() == 10.0 and d.due(10.0) == ["z"]
    d.keep("z")  # not ended by the caller: still seen
    assert d.earliest() == 10.0
    d.pop("z")
    assert d.earliest() == 30.0
    assert d.due(100.0) == ["x", "y"]  # entry order (x before y), not deadline order
    assert d.earliest() == math.inf and len(d) == 2  # the caller ends them (pop)
    d.clear()
    assert d.earliest() == math.inf and not d


# --- property: random changes, the cache always equals the definition ----------------------------

OPS = st.lists(st.tuples(st.sampled_from(["tick", "tick", "tick", "result", "pause", "resume",
                                          "trigger", "deploy", "fail", "wait", "takeover"]),
                         st.integers(0, 7), st.floats(0.0, 0.4)), min_size=5, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, seed=st.integers(0, 1000), lead=st.sampled_from([0.0, 20.0, 50.0]))
def test_next_deadline_always_equals_its_definition(ops: list[tuple[str, int, float]],
                                                    seed: int, lead: float) -> None:
    rng = random.Random(seed)
    defs: list[TaskDef] = []
    for k in range(8):
        kind = rng.random()
        timeout = rng.choice([50, 150, 2000])
        if kind < 0.6:
            defs.append(tdef(f"t{k}", rng.choice([100, 200, 300]), timeout=timeout,
                             instant=rng.random() < 0.2, enabled=rng.random() > 0.1))
        elif kind < 0.8:
            defs.append(tdef(f"t{k}", None, instant=True, timeout=timeout))
        else:
            try:
                import cronsim  # noqa: F401
            except ImportError:
                defs.append(tdef(f"t{k}", 250, timeout=timeout))
            else:
                defs.append(cron_def(f"t{k}", "* * * * * *", timeout))
    names = [d.name for d in defs]
    live = {d.name: d for d in defs}
    s = Scheduler(defs, random.Random(seed), dispatch_lead_ms=lead)
    wall = 1_800_000_000.0 + rng.random()
    s.activate(wall, graceful=False, claim=(1, "a"))
    loaded: dict[str, Any] = {n: tuple(names) for n in NAMES}
    sent: list[Dispatch] = []
    for op, k, dt in ops:
        wall += dt
        name = names[k % len(names)]
        if op == "tick":
            # As the loop does: tick again while something is due now (an instant run's next
            # slot, pushed by this tick, may already be within the lead).
            for _ in range(3):
                ds, _ = s.tick(wall, loaded)
                sent += ds
                if s.next_deadline(wall) > wall:
                    break
        elif op == "result" and sent:
            d = sent.pop(k % len(sent))
            s.on_result(d.task, d.run_id, d.node, "ok", k, 1.0, "", max(wall, d.due_ms / 1000))
        elif op in ("pause", "resume") and name in s.defs:
            s.set_paused(name, op == "pause", "a", wall)
        elif op == "trigger" and name in s.defs:
            fired, _ = s.trigger(name, wall, loaded)
            if fired is not None:
                sent.append(fired)
        elif op == "deploy":
            if name in live:
                del live[name]
            else:
                live[name] = next(d for d in defs if d.name == name)
            s.update_defs(dict(live), wall)
        elif op == "fail":
            s.fail_node(NAMES[k % 3], wall)
        elif op == "takeover":
            table = s.table()
            s.deactivate()
            s.load(table)
            s.activate(wall, graceful=bool(k % 2), claim=(2 + k, "a"))
            sent.clear()
        check(s, wall)
        if op == "tick":
            assert_nothing_due_left(s, wall)


def assert_nothing_due_left(s: Scheduler, wall: float) -> None:
    """After a tick at ``wall``: no run past its deadline, and no scheduled task whose next
    slot's dispatch instant has come (a task the heap lost would stay behind forever)."""
    wall_ms = wall * 1000
    assert all(r.running is None or float(r.running["deadline"]) > wall_ms
               for r in s.records.values())
    if s.draining:
        return
    for name, d in s.defs.items():
        if (d.enabled and name in s._grid and name not in s.gone
                and not s.records[name].paused and name not in s._deferred):
            assert s.due_ms(name, s.next_slot[name]) - s.dispatch_lead_ms > wall_ms, name
