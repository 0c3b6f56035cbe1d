"""review15 in the simulator: two crash takeovers in a row, each inside its manager's
replication gap, with a run only its node's OFFER shows. n3 (its clock right) dispatches a run
that this time runs long and crashes at once; n2 (3 s ahead, as every other node) takes over and
adopts the run from the OFFER, moved by its offset to n3 (skew2), and crashes before its next
replication round; n1 takes over from n3's table. Its offset to n2, the manager it followed
last, is 0: moved by that (before), the run is read 3 s early, timed out while it runs, and the
next slot goes beside it. n1 followed n3 before n2, and its estimator kept that offset by name
(clerk._clockskew.SkewEstimator.ahead_by_manager): it moves the run by its offset to the
manager that sent it (``Adoption.sender_base_ms``), and nothing overlaps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from clerk._adopt import Adoption
from clerk._simnet import SimNetwork
from clerk._simtasks import LEDGER, SimLedger
from tests.unit.simcluster import ledger_started
from tests.unit.test_sim_offer_runs import GAP_S, INTERVAL_MS, settle_and_measure
from tests.unit.test_sim_offer_runs import after_a_fresh_dispatch as fresh_dispatch

AHEAD_S = 3.0
LONG_S = 3.0
SEEDS = range(8)


def n3_sends_a_long_run(seed: int) -> tuple[SimNetwork, SimLedger, str] | None:
    """4 nodes: n3 (its clock right) manages, the others ``AHEAD_S`` ahead; n3 has just
    dispatched a run to n0 or n1 that runs ``LONG_S``: (net, world, the run's id), or None
    when the schedule did not get there (the run went to n2, whose crash would end it)."""
    world = SimLedger(interval_ms=INTERVAL_MS, timeout_ms=4000)
    world.replicate_gap_s, world.long_run_s = GAP_S, LONG_S
    world.offer_runs = True
    net = SimNetwork(seed, layer=world)
    net.fifo = True
    world.offsets = {"n0": AHEAD_S, "n1": AHEAD_S, "n2": AHEAD_S, "n3": 0.0}
    ledger_started(net, world, 4)
    assert [m.name for m in net.managers()] == ["n3"]
    net.run_for(1.0)  # (the followers' estimates of n3's clock)
    if fresh_dispatch(net, world) != "n3":
        return None
    run = world.layers["n3"].scheduler.records[LEDGER].running
    assert run is not None
    if run["node"] == "n2":
        return None
    run_id = str(run["run"])
    world.long_run_ids.add(run_id)  # this one runs long
    return net, world, run_id


def _schedule(seed: int) -> dict[str, Any] | None:
    """The outcome, or None when the schedule did not get there (see
    :func:`n3_sends_a_long_run`, or n2 never adopted the run from the OFFER before its gap
    ended)."""
    started = n3_sends_a_long_run(seed)
    if started is None:
        return None
    net, world, run_id = started
    net.crash("n3")
    sched2 = world.layers["n2"].scheduler

    def adopted() -> bool:
        r = sched2.records[LEDGER].running if sched2.active else None
        return r is not None and str(r["run"]) == run_id and bool(r.get("offered"))

    net.run_until_true(adopted, limit=LONG_S / 2, step=0.0005)
    if not adopted():
        return None
    return crash_n2_and_measure(net, world)  # inside its replication gap


def crash_n2_and_measure(net: SimNetwork, world: SimLedger) -> dict[str, Any]:
    """Crash n2 (the first new manager), let the long run end, measure (``new``: the
    managers after)."""
    net.crash("n2")
    net.run_for(LONG_S + 2.0)
    got = settle_and_measure(net, world, [f"n{i}" for i in range(4)])
    got["new"] = sorted(m.name for m in net.managers())
    return got


def outcomes(schedule: Callable[[int], dict[str, Any] | None],
             seeds: Iterable[int]) -> list[tuple[int, dict[str, Any]]]:
    """(seed, outcome) of each schedule that got there: at least half of them must."""
    seeds = list(seeds)
    out = [(seed, got) for seed in seeds if (got := schedule(seed)) is not None]
    assert len(out) >= len(seeds) // 2, f"only {len(out)} schedules got there"
    return out


def assert_kept(outs: list[tuple[int, dict[str, Any]]]) -> None:
    """n1 manages after, and nothing ran beside the long run or repeated a count."""
    for seed, got in outs:
        assert got["new"] == ["n1"], (seed, got)
        assert got["overlaps"] == [] and got["repeated"] == [], (seed, got)


def assert_mostly_overlapped(outs: list[tuple[int, dict[str, Any]]]) -> None:
    """At least half the schedules ran a slot beside the long run or repeated a count."""
    bad = [seed for seed, got in outs if got["overlaps"] or got["repeated"]]
    assert len(bad) >= len(outs) // 2, (bad, outs)


def _outcomes() -> list[tuple[int, dict[str, Any]]]:
    return outcomes(_schedule, SEEDS)


@pytest.mark.timeout(300)
def test_the_second_new_manager_moves_the_offered_run_by_its_offset_to_the_sender() -> None:
    assert_kept(_outcomes())


@pytest.mark.timeout(300)
def test_moved_by_the_offset_to_the_last_manager_followed_it_overlaps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``sender_base_ms`` was ``their_base_ms`` (the offset to the manager followed
    last, n2's: 0)."""
    monkeypatch.setattr(Adoption, "sender_base_ms", Adoption.their_base_ms)
    assert_mostly_overlapped(_outcomes())
