"""The dispatch hold (``SimLedger.hold_dispatches``) under random fault schedules, with a
member's OFFER carrying its runs in flight (clerk._offerruns) and the 25 ms gap on, on a
quiet cluster (the ledger every 200 ms: each dispatch comes after the gap, so it is held).
Runs take 2 ms, one in four 0.6 s (a short task that suddenly runs long: still held, as its
row says its runs are short). Faults: the manager crashed right after it dispatched a run
to another node (inside the hold), the manager re-claiming there (an ELECTION with a higher
term), a random crash, a restart, a graceful leave. Checked as in
``tests/unit/test_sim_offer_runs.py``: no run overlapped by another while one manager was
live, no count produced twice, no conflict counted.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from clerk._core import Effect, Event
from clerk._messages import Election
from clerk._simnet import SimNetwork, SimNode
from clerk._simtasks import LEDGER, SimLedger
from tests.unit.simcluster import ledger_started
from tests.unit.simdepth import seeds
from tests.unit.test_sim_offer_runs import (
    GAP_S,
    LONG_S,
    _apply,
    after_a_fresh_dispatch,
    settle_and_measure,
)
from tests.unit.test_sim_offer_runs import random_schedule as offer_runs_schedule

KINDS = ("crash_after_dispatch", "crash_after_dispatch", "reclaim_after_dispatch", "crash",
         "restart", "leave")


def _reclaim_after_dispatch(net: SimNetwork, world: SimLedger) -> None:
    """An ELECTION with a higher term reaches the manager right after it dispatched a run
    (held) to another node; that run runs long."""
    manager = after_a_fresh_dispatch(net, world)
    if manager is None:
        return
    sched = world.layers[manager].scheduler
    core = net.nodes[manager].core
    other = next((m for m in core.members.others() if m.alive), None)
    if other is None:
        return
    run = sched.records[LEDGER].running
    if run is not None:
        world.long_run_ids.add(str(run["run"]))
    net.send(other.name, core.me.address, Election(other.peer, core.term + 5, ""))


def run_schedule(n: int, seed: int, faults: list[tuple[str, int, float]], hold: bool,
                 interval_ms: int = 200, offer_runs: bool = True,
                 offer_delay: float = 0.0) -> dict[str, Any]:
    """As ``test_sim_offer_runs.run_schedule``, with the hold on or off (``hold``); also
    how many ticks held their dispatches' rows (``held``)."""
    world = SimLedger(interval_ms=interval_ms)
    world.replicate_gap_s, world.long_run_chance, world.long_run_s = GAP_S, 0.25, LONG_S
    world.offer_runs, world.hold_dispatches = offer_runs, hold
    world.offer_delay = offer_delay  # (a run may end while its node's OFFER is built)
    net = SimNetwork(seed, layer=world)
    net.fifo = True
    names = ledger_started(net, world, n)
    held = [0]

    def count(node: SimNode, event: Event, effects: list[Effect]) -> None:
        layer = world.layers.get(node.name)
        held[0] += bool(layer is not None and layer._held)

    net.observers.append(count)
    apply_schedule(net, world, names, faults)
    return {**settle_and_measure(net, world, names), "held": held[0]}


def apply_schedule(net: SimNetwork, world: SimLedger, names: list[str],
                   faults: list[tuple[str, int, float]]) -> None:
    """Each fault of a ``random_schedule`` in turn, the simulated time it names after each."""
    for kind, arg, wait in faults:
        if kind == "reclaim_after_dispatch":
            _reclaim_after_dispatch(net, world)
        else:
            _apply(net, world, names, kind, arg)
        net.run_for(wait)


def random_schedule(seed: int) -> tuple[int, list[tuple[str, int, float]]]:
    """``test_sim_offer_runs.random_schedule`` with this file's fault kinds."""
    return offer_runs_schedule(seed, KINDS)


def _bad(got: dict[str, Any]) -> bool:
    return bool(got["overlaps"] or got["repeated"] or got["conflicts"])


@pytest.mark.parametrize("seed", seeds(range(12)))
def test_the_hold_with_offered_runs_under_random_faults(seed: int) -> None:
    n, faults = random_schedule(seed)
    got = run_schedule(n, seed, faults, hold=True)
    assert not _bad(got), (seed, n, faults, got)


# --- a member's OFFER that takes longer than an interval to come ----------------------------------
#
# A real member builds its OFFER after parsing its replica (~1 s at 4,000 tasks on a loaded
# machine: ``SimLedger.offer_delay``). A new manager that waits for the OFFERs (``stale``)
# skips the slots that come meanwhile. Before, it recorded each as done (clerk/_running.py
# ``_dispatch``: ``rec.slot = max(rec.slot, slot)``): when the OFFER then listed a run of an
# earlier slot, ``Running.adopt_run`` refused it (``slot <= rec.slot``) and the next slot went
# beside it; a result of such a run that ended before its node's OFFER was built (so not
# listed) was dropped by ``Running._unseen_run`` as an old slot (counted since b700f73). A skip
# while waiting for the OFFERs no longer moves ``rec.slot`` (it is no run); a re-claim waits
# for the OFFERs made to its new claim (clerk._adopt ``begin_activation``). Failed before on
# seeds 2 and 9 (the two tests below, strict xfails until then), and over seeds 0-299: 81 and
# 131 bad of 300 before, 5 and 3 after (the kinds in tests/unit/test_offer_review_sim.py).


def test_main_without_the_hold_a_slow_offer_on_a_busy_cluster() -> None:
    n, faults = random_schedule(2)  # (crash right after a dispatch in the gap, 40 ms interval)
    got = run_schedule(n, 2, faults, hold=False, interval_ms=40, offer_delay=0.4)
    assert not _bad(got), got


def test_the_hold_with_a_slow_offer_on_a_quiet_cluster() -> None:
    n, faults = random_schedule(9)
    got = run_schedule(n, 9, faults, hold=True, offer_delay=0.4)
    assert not _bad(got), got


def test_the_same_quiet_cluster_and_slow_offer_without_the_hold() -> None:
    """Control for the case above: the dispatch's round reached the members (the row shows
    the run in flight), so nothing waits on the OFFER's list."""
    n, faults = random_schedule(9)
    got = run_schedule(n, 9, faults, hold=False, offer_delay=0.4)
    assert not _bad(got), got


@pytest.mark.parametrize("seed", seeds(range(12)))
@pytest.mark.parametrize(("hold", "interval_ms"), [(False, 40), (True, 200)],
                         ids=["busy", "quiet_hold"])
def test_slow_offers_under_random_faults(seed: int, hold: bool, interval_ms: int) -> None:
    """Every member's OFFER 0.4 s late (two to ten intervals): no run overlapped, no count
    repeated, no conflict counted (before: 2 and 6 of these 12 seeds bad)."""
    n, faults = random_schedule(seed)
    got = run_schedule(n, seed, faults, hold=hold, interval_ms=interval_ms, offer_delay=0.4)
    assert not _bad(got), (seed, n, faults, got)


#: Left of seeds 0-299 with 0.4 s OFFERs (busy: 40 ms, no hold; quiet: 200 ms, the hold):
#: 38 and 289 (quiet) lose a run's only result with its node (a double fault, README);
#: 193 (busy) loses the crashed manager's own run's update, and the offered run sent from
#: it is dropped as from a state the new manager does not hold (counted). 211 (both), below,
#: was a strict xfail until the leave waited for the OFFERs (clerk._leaveoffers).


@pytest.mark.parametrize(("hold", "interval_ms"), [(False, 40), (True, 200)],
                         ids=["busy", "quiet_hold"])
def test_a_leave_while_waiting_for_the_offers_keeps_the_run(hold: bool,
                                                            interval_ms: int) -> None:
    """A manager that claimed again (its reload forgot the run it had just sent) and leaves
    gracefully while it still waits for the members' OFFERs: before, it handed over a table
    without that run, and the successor (graceful: no wait) sent the next slot beside it, or,
    when the run's slot was not yet due, that very slot again. The leave now waits for the
    OFFERs as a take-over's dispatches do (clerk._leaveoffers)."""
    n, faults = random_schedule(211)  # (re-claim right after a dispatch, then a leave)
    got = run_schedule(n, 211, faults, hold=hold, interval_ms=interval_ms, offer_delay=0.4)
    assert not _bad(got), got


# --- a manager asked to leave soon after it claimed again ----------------------------------
#
# Seed 211 above found it by chance. Here every schedule has it: a re-claim right after a
# dispatch (its reload forgets that run; its dispatches wait for the members' OFFERs, 0.4 s
# late), then the manager asked to leave 0-0.5 s later (often while it still waits, sometimes
# after), among random faults before and after. The leave waits for the OFFERs
# (clerk._leaveoffers), so the hand-over carries the run. Before: 11 of these 32 bad (71 of
# seeds 0-99 x both modes, 200); with it 0 of 200.


def _leave_after_reclaim(net: SimNetwork, world: SimLedger, rng: random.Random) -> None:
    _reclaim_after_dispatch(net, world)
    net.run_for(rng.uniform(0.0, 0.5))
    boss = net.managers()
    if len(boss) == 1 and sum(n.up for n in net.nodes.values()) > 2:
        net.leave(boss[0].name)


def run_leave_schedule(seed: int, hold: bool, interval_ms: int) -> dict[str, Any]:
    rng = random.Random(seed)
    n = rng.randint(3, 5)
    world = SimLedger(interval_ms=interval_ms)
    world.replicate_gap_s, world.long_run_chance, world.long_run_s = GAP_S, 0.25, LONG_S
    world.offer_runs, world.hold_dispatches, world.offer_delay = True, hold, 0.4
    net = SimNetwork(seed, layer=world)
    net.fifo = True
    names = ledger_started(net, world, n)
    for step in range(rng.randint(1, 4)):
        kind = "leave_after_reclaim" if step == 0 else rng.choice(KINDS)
        if kind == "leave_after_reclaim":
            _leave_after_reclaim(net, world, rng)
        elif kind == "reclaim_after_dispatch":
            _reclaim_after_dispatch(net, world)
        else:
            _apply(net, world, names, kind, rng.randrange(5))
        net.run_for(rng.uniform(0.05, 2.0))
    return settle_and_measure(net, world, names)


@pytest.mark.parametrize("seed", seeds(range(16)))
@pytest.mark.parametrize(("hold", "interval_ms"), [(False, 40), (True, 200)],
                         ids=["busy", "quiet_hold"])
def test_a_leave_soon_after_a_reclaim_under_random_faults(seed: int, hold: bool,
                                                          interval_ms: int) -> None:
    got = run_leave_schedule(seed, hold, interval_ms)
    assert not _bad(got), (seed, got)
