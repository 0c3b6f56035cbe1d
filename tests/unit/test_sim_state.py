"""Property tests with state: the real cores and the real Scheduler on the simulated network.

Hypothesis draws a cluster of 3-5 nodes (each with a simulated data directory), a seed and a
schedule of faults (partitions into random groups, heals, crashes, restarts from disk, graceful
leaves followed by a start again). The ledger task's state is a counter (see
:mod:`clerk._simtasks`). Checked over the whole history:

* **no lineage regression**: before every fault, note the counter a majority of nodes had on
  disk (acknowledged); after the faults stop, the network heals, every node is up again and
  the cluster agrees, the counter the cluster continues from is at least the highest of those;
  and the lineage is the one the first ``init`` created (``init`` ran exactly once);
* **no slot run twice while connected**: a slot that ran twice had at least one of its runs
  while the network was cut, or within ``MERGE_WINDOW`` of a heal (until the managers of the
  two sides have met, each side runs: that is the documented behaviour of a partition), or
  while two managers were live (seeds restarted together form a cluster of their own while a
  survivor that is not a seed still runs alone, until a probe merges them: a split brain with
  no partition, which the membership layer resolves; the state rules then pick one history).
  A takeover that runs a slot its predecessor ran (one manager at a time) is a violation;
* **conflicts are counted, not silent**: when a heal dropped updates, ``conflicts`` says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from clerk._core import Role
from clerk._handover import LEAVE_MERGE_WAIT, LEAVE_PICKS
from clerk._simnet import SimNetwork
from clerk._simtasks import LEDGER, SimLedger
from tests.unit.simcluster import ledger_started
from tests.unit.simdepth import examples

#: Two managers meet through probes (every 1 s) of seeds and lost members; after the member
#: timeout (2 s) a side may have dropped the other's nodes, so allow two probe rounds more.
MERGE_WINDOW = 4.0
SETTLE = 12.0


def build(n: int, seed: int, **settings: object) -> tuple[SimNetwork, SimLedger, list[str]]:
    """``n`` nodes running the ledger; ``settings`` are set on the ``SimLedger`` first."""
    world = SimLedger(interval_ms=200)
    for name, value in settings.items():
        assert hasattr(world, name), name
        setattr(world, name, value)
    net = SimNetwork(seed, layer=world)
    names = ledger_started(net, world, n)
    return net, world, names


fault = st.one_of(
    st.tuples(st.just("partition"), st.lists(st.booleans(), min_size=5, max_size=5)),
    st.tuples(st.just("heal"), st.just(None)),
    st.tuples(st.just("crash"), st.integers(0, 4)),
    st.tuples(st.just("restart"), st.integers(0, 4)),
    st.tuples(st.just("leave"), st.integers(0, 4)),
)


def random_faults(max_examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The random fault schedules of the property tests (this module's and the other state
    properties'): 3 to 5 nodes, a seed, and 1 to 8 faults (``fault``), each followed by 0.05
    to 3 simulated s; ``max_examples`` of them (``CLERK_SIM_DEPTH=deep``; about a third
    otherwise: :mod:`tests.unit.simdepth`). No deadline and no ``too_slow`` check: a
    simulation runs on its own clock (``tools/test`` runs these beside the other tests at
    the lowest priority); no slow explain phase."""
    return lambda test: settings(
        max_examples=examples(max_examples), deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )(given(n=st.integers(3, 5), seed=st.integers(0, 2**32 - 1),
            faults=st.lists(st.tuples(fault, st.floats(0.05, 3.0)), min_size=1,
                            max_size=8))(test))


def _apply(net: SimNetwork, names: list[str], kind: str, arg: object) -> None:
    if kind == "partition":
        side = [n for n, cut in zip(names, arg, strict=False) if cut]  # type: ignore[call-overload]
        if 0 < len(side) < len(names):
            net.partition(side)
    elif kind == "heal":
        net.heal()
    else:
        name = names[int(arg) % len(names)]  # type: ignore[call-overload]
        node = net.nodes[name]
        if kind == "crash":
            net.crash(name)
        elif kind == "restart" or not node.up or node.core.role is Role.STOPPED:
            net.restart(name)
        else:
            net.leave(name)


def _settle(net: SimNetwork, names: list[str]) -> None:
    net.heal()
    net.run_for(net.timings.handover_timeout + 0.1)  # a leaving manager is done leaving
    # (or, handing over again or sending the rest of its table as a merge, soon:
    # clerk._handover, "Graceful leave")
    bound = LEAVE_PICKS * net.timings.handover_timeout + LEAVE_MERGE_WAIT
    assert net.run_until_true(lambda: not any(n.up and n.core.role is Role.LEAVING
                                              for n in net.nodes.values()),
                              limit=bound) is not None, net.summary()
    for name in names:
        node = net.nodes[name]
        if not node.up or node.core.role is Role.STOPPED:
            net.restart(name)
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == len(names),
                              limit=SETTLE, step=0.05) is not None, net.summary()
    net.run_for(2.0)  # the merged cluster runs on for a while


@random_faults(max_examples=50)
def test_no_lineage_regression_and_no_slot_twice_while_connected(
        n: int, seed: int, faults: list[tuple[tuple[str, object], float]]) -> None:
    _no_regression_no_slot_twice(n, seed, faults)


@random_faults(max_examples=30)
@example(n=3, seed=0, faults=[(("crash", 0), 1.0), (("crash", 1), 1.0)])
def test_the_same_with_the_replication_gap_and_runs_longer_than_the_interval(
        n: int, seed: int, faults: list[tuple[tuple[str, object], float]]) -> None:
    """As above, with the manager's rounds paced as the real runner's (25 ms gap: a change
    within it waits; the simulator used to replicate every change at once, so no property had
    met those windows) and runs of 0.37 s on a 0.2 s interval (the overlap rule skips slots).
    These invariants do not see an overlapped run whose update was dropped (a repeated count
    is allowed where a documented window loses an update): tests/unit/test_sim_gap.py shows
    that case directly."""
    _no_regression_no_slot_twice(n, seed, faults, replicate_gap_s=0.025, run_s=0.37)


def _no_regression_no_slot_twice(n: int, seed: int,
                                 faults: list[tuple[tuple[str, object], float]],
                                 **settings: object) -> None:
    net, world, names = build(n, seed, **settings)
    origin = world.disk_row(names[0]).origin  # type: ignore[union-attr]
    acked = world.acknowledged(names)
    for (kind, arg), wait in faults:
        acked = max(acked, world.acknowledged(names))
        _apply(net, names, kind, arg)
        net.run_for(wait)
    acked = max(acked, world.acknowledged(names))
    _settle(net, names)
    manager = net.managers()[0].name
    row = world.layers[manager].scheduler.records[LEDGER]
    assert row.origin == origin, "a lineage other than the first init's won"
    assert sum(1 for r in world.runs if r.before is None) == 1, "init ran more than once"
    assert int(row.state) >= acked, f"counter {row.state} < acknowledged {acked}"
    assert row.version == int(row.state)
    # Where each run's counter came from: a run that continued below the acknowledged value
    # after the faults would be a regression (every run after the settle continues the max).
    by_slot: dict[int, list] = defaultdict(list)
    for r in world.runs:
        by_slot[r.slot].append(r)
    for slot, runs in by_slot.items():
        if len(runs) > 1:
            connected = [r for r in runs if r.whole_for >= MERGE_WINDOW and r.managers == 1]
            assert len(connected) < len(runs), f"slot {slot} ran twice while connected: {runs}"
            assert not connected or len(runs) - len(connected) >= 1
    # Both sides ran during a split: whatever the heal dropped is counted.
    split_runs = [r for r in world.runs if r.whole_for < 0]
    lost = {r.after for r in split_runs} - {r.after for r in world.runs if r.whole_for >= 0}
    if any(r.node for r in split_runs) and row.conflicts == 0:
        # No conflict: then no update made during a split was dropped: the winning history
        # holds a run for every counter value the losing side produced.
        assert not lost or max(lost) <= int(row.state)


def test_a_minority_side_loses_its_updates_to_the_longer_history_and_they_are_counted() -> None:
    net, world, names = build(5, seed=7)
    manager = net.managers()[0].name
    minority = [n for n in names if n != manager][:2]
    net.partition(minority)
    net.run_for(4.0)
    majority_runs = [r for r in world.runs if r.whole_for < 0 and r.manager == manager]
    minority_runs = [r for r in world.runs if r.whole_for < 0 and r.manager != manager]
    assert majority_runs and minority_runs, "both sides run during a split"
    before = max(r.after for r in majority_runs)
    _settle(net, names)
    boss = net.managers()[0].name
    row = world.layers[boss].scheduler.records[LEDGER]
    # The side that failed over (the minority elected a manager: slots lost in its failover
    # window) has fewer runs: the majority's history wins, the minority's updates are counted.
    assert int(row.state) > before
    # Every run of the minority's branch is dropped and counted: those of the split, and those
    # it made after the heal until the two managers met.
    assert row.conflicts >= len(minority_runs), (row.conflicts, len(minority_runs))
    assert row.last_conflict is not None and row.last_conflict["dropped"] == row.conflicts
    lost = int(row.last_conflict["lost"].rsplit(" ", 1)[1])
    branch = [r for r in world.runs if r.manager != manager and r.before is not None
              and r.after <= lost and r.at >= minority_runs[0].at]
    assert row.conflicts == len(branch)


def test_a_full_cluster_crash_and_restart_continues_from_the_disks() -> None:
    net, world, names = build(3, seed=11)
    net.run_for(2.0)
    for name in names:
        net.crash(name)
    on_disk = max(world.disk_counter(n) for n in names)
    for name in names:
        net.restart(name)
    assert net.run_until_true(lambda: net.agreed() is not None, limit=10.0) is not None
    net.run_for(2.0)
    after = [r for r in world.runs if r.at > net.now - 2.0]
    assert after and min(r.before for r in after if r.before is not None) >= on_disk
    assert sum(1 for r in world.runs if r.before is None) == 1
