"""The simulator case of tests/unit/test_skew_held_resend.py: review17's scan of two crash
takeovers in a row with clock offsets from {0, +3, -3} s (4 nodes; the manager crashes right
after a fresh dispatch of a run that runs 3 s, the new one within 0-30 ms), seed 27: n3 (+3 s)
ran slots to 117 and dispatched 118 to n1; n2 (-3 s) took over from n3's replica and counted
the resends of 116's and 117's results (its own and n0's), which its row holds, as lost
updates: their slots were past its clock's horizon (5 s); the count reached n1, the last
manager. Now a slot the row reached is judged as an old run (a resend: nothing counted)."""

from __future__ import annotations

import random

import pytest

from clerk._simnet import SimNetwork
from clerk._simtasks import LEDGER, SimLedger
from tests.unit.simcluster import ledger_started
from tests.unit.test_sim_offer_runs import (
    GAP_S,
    INTERVAL_MS,
    after_a_fresh_dispatch,
    settle_and_measure,
)

OFFSETS = (0.0, 3.0, -3.0)


def _scan(seed: int) -> tuple[dict[str, float], list[str], dict[str, object]] | None:
    """The scan's schedule of ``seed``: the offsets, the managers in turn, the outcome."""
    r = random.Random(seed)
    world = SimLedger(interval_ms=INTERVAL_MS, timeout_ms=4000)
    world.replicate_gap_s, world.long_run_s = GAP_S, 3.0
    world.offer_runs = True
    net = SimNetwork(seed, layer=world)
    net.fifo = True
    names = [f"n{i}" for i in range(4)]
    world.offsets = {n: r.choice(OFFSETS) for n in names}
    ledger_started(net, world, 4)
    net.run_for(1.0)
    m1 = after_a_fresh_dispatch(net, world)
    if m1 is None:
        return None
    run = world.layers[m1].scheduler.records[LEDGER].running
    assert run is not None
    world.long_run_ids.add(str(run["run"]))
    net.run_for(r.uniform(0, 0.05))
    net.crash(m1)
    net.run_until_true(lambda: any(m.layer.scheduler.active  # type: ignore[union-attr]
                                   for m in net.managers()), limit=5, step=0.0005)
    net.run_for(r.uniform(0, 0.03))
    ms = net.managers()
    if len(ms) != 1:
        return None
    m2 = ms[0].name
    if m2 != run["node"] or r.random() < 0.5:
        net.crash(m2)
    net.run_for(5.0)
    got = settle_and_measure(net, world, names)
    return world.offsets, [m1, m2, net.managers()[0].name], got


@pytest.mark.timeout(120)
def test_seed_27_a_manager_6s_behind_counts_no_conflict_for_held_results() -> None:
    got = _scan(27)
    assert got is not None
    offsets, managers, out = got
    assert managers == ["n3", "n2", "n1"]  # (the schedule got there)
    assert offsets["n3"] - offsets["n2"] == 6.0
    assert (out["overlaps"], out["repeated"], out["conflicts"]) == ([], [], 0)  # (before: 1)
