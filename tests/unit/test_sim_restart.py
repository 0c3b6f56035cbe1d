"""Full-cluster restarts on the simulated network: the real cores and Scheduler, data directories.

A cluster of 3-5 nodes runs the ledger task (:mod:`clerk._simtasks`: state = counter, every run
adds 1), is stopped gracefully, node by node in a random order with random gaps (a deploy's
stop: the members that leave first hold older copies of the table than the last manager), and
every node is started again from its data directory after a random delay of 0-3 s. The
property runs over the real transport's per-link order (``SimNetwork.fifo``). Checked:

* **no count repeated, none lost**: every run's counter (``after``) is one no other run
  produced, and the first run after the restart continues from the last count before it;
* **init ran once**, and the cluster agrees on one manager again.

Before the rule (``SimLedger.rejoin = False``: a restarted node ignores the members its disk
recorded) a node that started first found nobody within ``join_timeout``, won an election of
one and ran slots from its older copy: counts repeated (:func:`test_without_the_rule_counts_repeat`
shows it fails then). Also here: a node restarted alone, its members gone for good, runs after
``rejoin_timeout``; a 3-of-3 restart with one node 3 s late continues exactly.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from clerk._core import Role
from clerk._simnet import SimNetwork
from clerk._simtasks import SimLedger
from clerk._timings import Timings
from tests.unit.simdepth import examples

#: How long after the last start the cluster must agree and have run a few slots (s).
SETTLE = 15.0


#: A slow network (30-110 ms a message): an OFFER may arrive after a slot falls due.
SLOW = {"delay": 0.03, "jitter": 0.08}


def build(n: int, seed: int, rejoin: bool = True, timings: Timings | None = None,
          slow: bool = False, offers_first: bool = True, fifo: bool = False,
          ) -> tuple[SimNetwork, SimLedger, list[str]]:
    world = SimLedger(interval_ms=200)
    world.rejoin = rejoin
    world.offers_first = offers_first
    net = SimNetwork(seed, layer=world, timings=timings,
                     **(SLOW if slow else {}))  # type: ignore[arg-type]
    net.fifo = fifo
    names = [f"n{i}" for i in range(n)]
    seeds = tuple(f"{x}:7400" for x in names)
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and world.acknowledged(names) > 3,
                              limit=10.0, step=0.01) is not None, net.summary()
    return net, world, names


def stop_all(net: SimNetwork, names: list[str], order: list[int], gaps: list[float]) -> None:
    """Graceful stops in ``order`` (indexes), ``gaps[i]`` s apart; then every process exits
    once its runs in flight ended."""
    for i, gap in zip(order, gaps, strict=False):
        net.leave(names[i % len(names)])
        net.run_for(gap)
    for name in names:  # whoever was not in ``order`` stops last
        if net.nodes[name].core.role is not Role.STOPPED:
            net.leave(name)
    assert net.run_until_true(
        lambda: all(net.nodes[x].core.role is Role.STOPPED for x in names),
        limit=net.timings.handover_timeout + 1.0) is not None, net.summary()
    net.run_for(1.0)  # runs in flight end, their results are applied and written
    for name in names:
        net.crash(name)  # the processes exit


def start_all(net: SimNetwork, names: list[str], delays: list[float]) -> float:
    """Start every node again from its disk, node i ``delays[i]`` s from now; returns the
    time of the last start."""
    t0 = net.now
    for name, delay in zip(names, delays, strict=True):
        net.at(t0 + delay, lambda name=name: net.restart(name))  # type: ignore[misc]
    return t0 + max(delays)


def check_history(net: SimNetwork, world: SimLedger, names: list[str], stopped_at: int,
                  on_disk: int, last: float) -> None:
    """After the restart: the cluster agrees, continues from the newest copy any disk held
    at the stop (``on_disk``), and repeats no count. Counts repeated *during* the stop are
    not this rule's: the copies on disk are what a restart can continue from. (A member that
    left before its manager handed over once lost its update so; the leaving manager now
    waits for such runs: README, "What is guaranteed".)"""
    net.run_until(last)
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == len(names),
                              limit=SETTLE, step=0.05) is not None, net.summary()
    assert net.run_until_true(lambda: max(r.after for r in world.runs) >= on_disk + 3,
                              limit=SETTLE, step=0.05) is not None, (on_disk, world.runs[-3:])
    before, after = world.runs[:stopped_at], world.runs[stopped_at:]
    seen = Counter(r.after for r in after)
    repeated = {v: c for v, c in seen.items() if c > 1 or v <= on_disk}
    assert not repeated, (f"counts repeated after the restart: {repeated}",
                          [r for r in world.runs if r.after in repeated])
    assert after[0].before == on_disk, ("the restart did not continue from the newest copy",
                                        on_disk, before[-2:], after[:2])
    assert sum(1 for r in world.runs if r.before is None) == 1, "init ran more than once"


def _full_restart(n: int, seed: int, order: list[int], gaps: list[float],
                  delays: list[float], rejoin: bool = True, slow: bool = False,
                  offers_first: bool = True, fifo: bool = False) -> None:
    net, world, names = build(n, seed, rejoin, slow=slow, offers_first=offers_first,
                              fifo=fifo)
    stop_all(net, names, order, gaps)
    stopped_at = len(world.runs)
    on_disk = max(world.disk_counter(x) for x in names)
    if order[:3] == [0, 1, 2] and gaps[:2] == [0.2, 1.0]:
        # (the fixed schedules below: nothing lost during the stop)
        assert on_disk == max(r.after for r in world.runs), "an update lost during the stop"
    last = start_all(net, names, (delays * n)[:n])
    check_history(net, world, names, stopped_at, on_disk, last)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(n=st.integers(3, 5), seed=st.integers(0, 2**32 - 1),
       order=st.permutations(range(5)),
       gaps=st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5),
       delays=st.lists(st.floats(0.0, 3.0), min_size=5, max_size=5), slow=st.booleans())
# A leaving manager's successor left too (its LEAVE was on its way): the manager waited out
# handover_timeout and then sent what it applied meanwhile to that member, which was gone;
# the count was on its own disk only. It hands over to the next live member now.
@example(n=4, seed=284385297, order=[4, 0, 2, 3, 1], gaps=[0.0, 0.0, 0.0, 1.0, 1.0],
         delays=[1.9851962367559444, 0.02422206211379918, 0.0, 3.0, 0.0], slow=True)
def test_a_full_restart_in_any_order_never_repeats_or_loses_a_count(
        n: int, seed: int, order: list[int], gaps: list[float], delays: list[float],
        slow: bool) -> None:
    """Over the real transport's per-link order (``net.fifo``: one ZeroMQ connection per pair
    of nodes, clerk._transport). Without it, a member can refuse the leaving manager's last
    table delta for a gap that the real transport cannot make, and nothing sends it again once
    the manager left: that count is then on the manager's disk only (e.g. n=4,
    seed=2072191466, order=[1, 3, 2, 4, 0], gaps=[0, 1, 0.968, 1, 0], delays=[0.875, 0.875,
    1.875, 2.5, 0], slow). The schedules found on the reordering network: :data:`FOUND`."""
    _full_restart(n, seed, list(order), gaps, delays, slow=slow, fifo=True)


#: Schedules the property found before it kept per-link order (they still run without it).
FOUND = [
    # A manager that leaves hands its run in flight to its successor with the table: the
    # run's result must reach the successor (the simulator sent it to the leaving manager
    # only).
    (3, 0, [2, 1, 0, 3, 4], [0.59375, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0], False),
    (3, 66467, [2, 1, 0, 3, 4], [0.59375, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0],
     False),
    # A schedule where the stop itself lost an update before the leaver waited for runs of
    # nodes that left: the restart continues from the newest copy on disk.
    (5, 5, [4, 2, 3, 1, 0], [0.5, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], True),
    # A leaving manager stopped before its successor confirmed (a second stop request) and
    # then applied a member's result to its own last table: the only copy of that count was
    # on its disk, and the successor, which recorded it as gone, was elected after the
    # restart without it. The result goes to the successor too (LedgerLayer._to_successor).
    (5, 999999, [1, 4, 3, 2, 0], [0.25, 0.25, 0.125, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0],
     True),
    # The leaving manager's successor left too (its LEAVE on its way): see the property's
    # first example (a member that missed the last delta does not matter then: the manager
    # hands its table to the next live member).
    (4, 1396889448, [1, 3, 2, 0, 4], [0.0, 0.0, 1.0, 0.4694130172676595, 1.0],
     [0.0, 0.0, 0.0, 3.0, 0.0], True),
    (5, 1427140357, [3, 4, 2, 1, 0], [0.0, 1.0, 0.027758550486246203, 1.0, 1.0],
     [1.25, 0.375, 1.563683967737493, 1.75, 3.0], True),
]


@pytest.mark.parametrize(("n", "seed", "order", "gaps", "delays", "slow"), FOUND)
def test_the_schedules_found_on_a_reordering_network_continue_exactly(
        n: int, seed: int, order: list[int], gaps: list[float], delays: list[float],
        slow: bool) -> None:
    _full_restart(n, seed, order, gaps, delays, slow=slow)


#: Schedules (seed, stop order, gaps, start delays) where, on a slow network, the manager
#: elected among the restarted nodes dispatched from its older copy before a member's OFFER
#: of a newer one arrived (found with offers_first off).
OFFER_RACES = [
    (6, [2, 0, 1], [0.8, 0.0, 0.1], [1.8, 2.9, 2.2]),
    (17, [2, 1, 0], [1.0, 0.3, 0.8], [2.1, 2.0, 0.3]),
    (23, [1, 0, 2], [0.6, 0.4, 0.5], [0.4, 0.6, 1.3]),
]


def test_a_manager_that_starts_from_its_own_disk_waits_for_the_members_offers() -> None:
    """Without ``from_disk`` (only ``init`` waited for OFFERs) the schedules below repeat a
    count; with it they continue exactly."""
    failed = 0
    for seed, order, gaps, delays in OFFER_RACES:
        _full_restart(3, seed, order, gaps, delays, slow=True)
        try:
            _full_restart(3, seed, order, gaps, delays, slow=True, offers_first=False)
        except AssertionError:
            failed += 1
    assert failed == len(OFFER_RACES)


def test_without_the_rule_counts_repeat() -> None:
    """The property fails without the rule: a node that starts first elects itself after
    ``join_timeout`` and runs from its older copy (the flaky integration test's mechanism)."""
    failures = 0
    for seed in range(6):
        try:
            # The manager (n2, highest) stops last, 1 s after the others: their copies are
            # ~5 counts older; n0 starts first, the others 1.5-3 s later.
            _full_restart(3, seed, [0, 1, 2], [0.2, 1.0, 0.0], [0.0, 1.5, 3.0], rejoin=False)
        except AssertionError:
            failures += 1
    assert failures == 6


#: (seed, gap): the successor's stop request comes ``gap`` s after its manager's, while it
#: loads the table it was handed (``SimLedger.load_s``), and a run of the ledger is in flight
#: on it. A scan of seeds 0-39 with gaps of 5, 20 and 100 ms lost the run's count in 57 of
#: 120 schedules without the rule and in none with it; these are four of them.
TAKEOVER_LEAVES = [(33, 0.02), (34, 0.005), (36, 0.1), (39, 0.02)]


def _successor_leaves_while_it_takes_over(seed: int, gap: float, finish: bool) -> None:
    """A full stop: a follower leaves, then the manager, with a run in flight on its
    successor (the highest other node), which gets the hand-over and is asked to leave
    ``gap`` s later, while its table still loads (0.4 s). Then every node starts again."""
    net, world, names = build(3, seed, fifo=True)
    world.load_s = 0.4
    world.finish_takeover = finish
    manager = net.managers()[0].name
    first, successor = sorted(x for x in names if x != manager)
    net.leave(first)
    net.run_for(0.5)
    sched = world.layers[manager].scheduler
    assert net.run_until_true(
        lambda: (sched.records["ledger"].running or {}).get("node") == successor,
        limit=5.0, step=0.001) is not None, "no run in flight on the successor"
    net.leave(manager)
    net.run_for(gap)
    assert world.layers[successor]._activate is not None, "not taking over: no race"
    stop_all(net, names, [names.index(successor)], [0.0])
    stopped_at = len(world.runs)
    on_disk = max(world.disk_counter(x) for x in names)
    assert on_disk == max(r.after for r in world.runs), (
        "the count of the run in flight was lost in the stop", on_disk, world.runs[-2:])
    check_history(net, world, names, stopped_at, on_disk, start_all(net, names, [0.0] * 3))


@pytest.mark.parametrize(("seed", "gap"), TAKEOVER_LEAVES)
def test_a_successor_asked_to_leave_while_it_takes_over_finishes_that_first(
        seed: int, gap: float) -> None:
    """It schedules, then leaves as a manager that drains: the result of its run in flight
    goes into its table, and its disk; the restart continues from it. Without the rule it
    left before its scheduler ran (clerk._runner.TAKEOVER_BEFORE_LEAVE), the result went
    into no table, and the manager that had handed over did not wait for it: the count was
    on no disk, and the restarted cluster repeated it (the full-restart flake of
    tests/integration/test_state_durable.py, count 8 repeated)."""
    _successor_leaves_while_it_takes_over(seed, gap, finish=True)
    with pytest.raises(AssertionError, match="was lost in the stop"):
        _successor_leaves_while_it_takes_over(seed, gap, finish=False)


def test_three_of_three_with_one_node_three_seconds_late_continues_exactly() -> None:
    for seed in range(4):
        _full_restart(3, seed, [0, 1, 2], [0.2, 1.0, 0.0], [0.0, 0.1, 3.0])
        _full_restart(3, seed, [0, 1, 2], [0.2, 1.0, 0.0], [3.0, 0.0, 0.2])


def test_a_node_alone_runs_after_the_rejoin_timeout() -> None:
    """1 of 3 restarts, the other two are gone for good: it waits ``rejoin_timeout`` for them,
    then runs alone from its copy."""
    net, world, names = build(3, seed=5)
    stop_all(net, names, [0, 1, 2], [0.2, 0.2, 0.0])
    stopped_at = len(world.runs)
    own = world.disk_counter(names[0])
    t0 = net.now
    net.restart(names[0])
    became = net.run_until_true(lambda: net.nodes[names[0]].core.is_manager, limit=10.0,
                                step=0.01)
    assert became is not None, net.summary()
    waited = became - t0
    rejoin = net.timings.rejoin_timeout
    assert rejoin <= waited <= rejoin + 0.5, waited
    assert net.run_until_true(lambda: len(world.runs) > stopped_at, limit=2.0) is not None
    assert world.runs[stopped_at].before == own  # from its own copy: nobody else is up


def test_a_fresh_node_and_a_node_without_recorded_members_start_as_fast_as_before() -> None:
    """No data directory members: the join timeout, as before (the fast paths)."""
    world = SimLedger(interval_ms=200)
    net = SimNetwork(3, layer=world)
    node = net.add_node("n0", seeds=("n1:7400", "n2:7400"))
    became = net.run_until_true(lambda: node.core.is_manager, limit=5.0, step=0.01)
    assert became is not None
    assert became <= net.timings.join_timeout + net.timings.election_timeout + 0.05, became


def test_a_restart_into_a_live_cluster_follows_its_manager_at_once() -> None:
    net, world, names = build(3, seed=9)
    manager = net.managers()[0].name
    other = next(x for x in names if x != manager)
    net.crash(other)
    net.run_for(0.5)
    t0 = net.now
    net.restart(other)
    joined = net.run_until_true(lambda: net.nodes[other].core.manager == manager, limit=5.0,
                                step=0.001)
    assert joined is not None and joined - t0 < 0.05, (joined, t0)


def test_rejoin_timeout_zero_turns_the_wait_off() -> None:
    net, world, names = build(3, seed=5, timings=Timings(rejoin_timeout=0))
    stop_all(net, names, [0, 1, 2], [0.2, 0.2, 0.0])
    t0 = net.now
    net.restart(names[0])
    became = net.run_until_true(lambda: net.nodes[names[0]].core.is_manager, limit=10.0,
                                step=0.01)
    assert became is not None and became - t0 < 1.0, became


def test_a_member_that_joins_while_no_row_changes_is_recorded_on_every_disk() -> None:
    """A task of a long interval: no row changes for a minute (its first slot is a minute
    away). A member that joins then is recorded by the others' disks all the same (a list
    change alone is written), so a restart of any of them waits for it too."""
    world = SimLedger(interval_ms=60_000)
    net = SimNetwork(7, layer=world)
    seeds = ("n0:7400", "n1:7400", "n2:7400")
    for name in ("n0", "n1"):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None
                              and all(n in world.disks for n in ("n0", "n1")),
                              limit=10.0, step=0.01) is not None, net.summary()
    runs = len(world.runs)
    net.add_node("n2", seeds=seeds)
    assert net.run_until_true(
        lambda: all(sum(m.alive for m in net.nodes[n].core.member_list()) == 3
                    for n in ("n0", "n1", "n2")), limit=10.0, step=0.01) is not None
    net.run_for(0.5)
    assert len(world.runs) == runs, "no run in between: the table did not change"
    for name in ("n0", "n1"):
        assert "n2" in world.disk_members[name], (name, world.disk_members[name])
