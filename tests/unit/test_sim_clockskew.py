"""The simulator with clocks that disagree (clerk._clockskew): managers stamp heartbeats, nodes
estimate their offset to the manager they follow and hold a run until its due time in the
manager's time base.

Property, over random offsets (-3 s to +3 s, and NTP-sized ones), delays and faults (crashes,
restarts, pauses, partitions, loss): **no run corrected by the estimate starts before its due
time by the clock of the manager that sent it**, and corrected runs start on time (within the
network's delay: the estimate's bias is the smallest one-way delay). Without the estimate
(``SimLedger.clock_estimates = False``, the node's own clock as before) a node ahead of its
manager starts runs early: the property fails, as the last test shows.
"""

from __future__ import annotations

import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._simledgerrun import WALL0
from clerk._simnet import SimNetwork
from clerk._simquorum import apply_fault, end_faults
from clerk._simtasks import SimLedger

pytestmark = pytest.mark.timeout(600)

OFFSETS = (0.0, 0.002, -0.004, 0.25, -0.3, 1.3, -2.0, 3.0)


def build(n: int, seed: int, offsets: list[float], delay: float, jitter: float,
          estimates: bool = True) -> tuple[SimNetwork, SimLedger]:
    world = SimLedger(interval_ms=100)
    world.clock_estimates = estimates
    names = [f"n{i}" for i in range(n)]
    world.offsets = dict(zip(names, offsets, strict=True))
    net = SimNetwork(seed, layer=world, delay=delay, jitter=jitter)
    seeds = tuple(f"{x}:7400" for x in names[:2])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    return net, world


def early_and_late(world: SimLedger) -> tuple[list[tuple], list[float]]:
    """Corrected runs that started before due by their manager's clock, and every corrected
    run's lateness by it (s)."""
    early, late = [], []
    for at, manager, due_ms, node, corrected in world.starts:
        if not corrected or not due_ms:
            continue
        lateness = WALL0 + at + world.offsets[manager] - due_ms / 1000
        late.append(lateness)
        if lateness < -1e-9:
            early.append((at, manager, node, due_ms, lateness))
    return early, late


@st.composite
def schedules(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(3, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    offsets = draw(st.lists(st.sampled_from(OFFSETS), min_size=n, max_size=n))
    delay = draw(st.sampled_from((0.0005, 0.002)))
    jitter = draw(st.sampled_from((0.0005, 0.01)))
    steps = []
    for _ in range(draw(st.integers(0, 6))):
        gap = draw(st.sampled_from((0.0, 0.05, 0.3, 1.0, 2.0)))
        op = draw(st.sampled_from(("crash", "restart", "pause", "resume", "partition", "heal",
                                   "loss")))
        arg: object
        if op in ("crash", "restart", "pause", "resume"):
            arg = draw(st.integers(0, n - 1))
        elif op == "partition":
            arg = tuple(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
        elif op == "loss":
            arg = draw(st.sampled_from((0.0, 0.05, 0.3)))
        else:
            arg = None
        steps.append((gap, op, arg))
    return n, seed, offsets, delay, jitter, steps


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules())
def test_no_corrected_run_starts_before_due_by_its_managers_clock(case: tuple) -> None:
    n, seed, offsets, delay, jitter, steps = case
    net, world = build(n, seed, offsets, delay, jitter)
    names = [f"n{i}" for i in range(n)]
    net.run_for(3.0)
    for gap, op, arg in steps:
        net.run_for(gap)
        apply_fault(net, names, op, arg)
    end_faults(net, names)
    net.run_for(4.0)
    early, late = early_and_late(world)
    assert early == [], early[:5]
    if len(late) >= 10:
        # On time: a run sent ahead starts within the network's delay of its due time (the
        # estimate's bias); runs that arrived late (a delay, a pause) are in the tail.
        assert statistics.median(late) <= delay + jitter + 0.001, statistics.median(late)


def test_a_node_far_behind_or_ahead_runs_on_time_by_the_managers_clock() -> None:
    """n2 manages (its clock right); n0 is 0.25 s ahead, n1 2 s behind: with the estimate
    both run their runs within a few ms of due by n2's clock, none before."""
    net, world = build(3, 5, [0.25, -2.0, 0.0], 0.0005, 0.0005)
    net.run_for(8.0)
    assert [m.name for m in net.managers()] == ["n2"]
    early, late = early_and_late(world)
    by_node = {node for _, _, _, node, corrected in world.starts if corrected}
    assert early == [] and late, (early, len(late))
    assert by_node == {"n0", "n1"}, world.starts[:5]
    assert max(late) < 0.01, max(late)


def test_without_the_estimate_a_node_ahead_starts_runs_early() -> None:
    """The property's check can fail: by its own clock a node 0.25 s ahead starts a run as it
    arrives, up to the dispatch lead (20 ms) before its due time by its manager's clock, and
    one 2 s behind starts its runs 2 s late (the real node refused them: EARLY_LIMIT_MS)."""
    net, world = build(3, 5, [0.25, -2.0, 0.0], 0.0005, 0.0005, estimates=False)
    net.run_for(8.0)
    assert [m.name for m in net.managers()] == ["n2"]
    early = [(at, due) for at, m, due, node, _ in world.starts
             if due and WALL0 + at + world.offsets[m] < due / 1000 - 0.01]
    late = [(at, due) for at, m, due, node, _ in world.starts
            if due and WALL0 + at + world.offsets[m] > due / 1000 + 1.9]
    assert early and late, world.starts[:5]  # n0's runs early, n1's 2 s late
