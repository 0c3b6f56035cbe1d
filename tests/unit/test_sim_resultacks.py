"""RESULT_ACK after replication, on the simulated network (clerk._resultacks).

* A directed case: the manager applies a follower's result, its row never reaches the members
  (table deltas from it are dropped), and it dies. The follower still holds the result
  (unacknowledged) and gives it to the next manager, which continues from it. With the ACK
  sent at once (the old rule) the same schedule loses the update.
* A property over random crash / restart / leave schedules (no partitions): no result a
  manager acknowledged is ever lost by a node that held it. Every later run managed by a node
  that held the row when it was acknowledged (every live member did) starts from a counter at
  least the acknowledged one. (A node that was down then and restarts from its older data
  directory is not covered: if it becomes the manager before its table is complete it can
  run from its own older state; the cluster's merge then counts the dropped update.)
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from clerk._messages import Heartbeat
from clerk._simnet import SimNetwork
from clerk._simtasks import LEDGER, SimLedger
from tests.unit.simdepth import examples
from tests.unit.test_sim_state import _apply, _settle


def ledger_cluster(seed: int, n: int = 3,
                   **settings: object) -> tuple[SimNetwork, SimLedger, list[str]]:
    """``n`` simulated nodes running the ledger task every 200 ms, each node seeding all,
    once they agree on a manager and a few runs are done; ``settings`` are set on the
    ``SimLedger`` first (its rules under test)."""
    world = SimLedger(interval_ms=200)
    for name, value in settings.items():
        assert hasattr(world, name), name
        setattr(world, name, value)
    net = SimNetwork(seed, layer=world)
    names = [f"n{i}" for i in range(n)]
    seeds = tuple(f"{x}:7400" for x in names)
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and len(world.runs) > 3,
                              limit=10.0, step=0.01) is not None, net.summary()
    return net, world, names


def _cluster(seed: int, ack_after_replication: bool,
             n: int = 3) -> tuple[SimNetwork, SimLedger, list[str]]:
    return ledger_cluster(seed, n, ack_after_replication=ack_after_replication)


def _lost_update(seed: int, ack_after_replication: bool) -> tuple[int, int]:
    """Kill the manager after it applied a follower's result whose row never left it. Returns
    (the follower run's counter, the counter the next run started from)."""
    net, world, _ = _cluster(seed, ack_after_replication)
    manager = net.managers()[0].name
    seen = len(world.runs)
    # A run on a follower has started: its dispatch was replicated a dispatch lead earlier.
    assert net.run_until_true(lambda: any(r.node != manager for r in world.runs[seen:]),
                              limit=5.0, step=0.001) is not None
    run = next(r for r in world.runs[seen:] if r.node != manager)
    net.cut_where(lambda src, dst, msg: src == manager and isinstance(msg, Heartbeat)
                  and msg.table is not None)
    sched = world.layers[manager].scheduler
    assert net.run_until_true(lambda: int(sched.records[LEDGER].state) >= run.after,
                              limit=1.0, step=0.001) is not None, "the result was not applied"
    net.run_for(0.05)  # the ACK (if any) reaches the follower
    net.crash(manager)
    net.heal()
    after = len(world.runs)
    assert net.run_until_true(lambda: any(r.before is not None and r.node != manager
                                          for r in world.runs[after:]),
                              limit=5.0, step=0.005) is not None, net.summary()
    nxt = next(r for r in world.runs[after:] if r.before is not None)
    return run.after, int(nxt.before)  # type: ignore[arg-type]


def test_a_result_applied_but_not_replicated_survives_the_managers_death() -> None:
    for seed in range(5):
        done, next_from = _lost_update(seed, ack_after_replication=True)
        assert next_from == done, (seed, done, next_from)


def test_acknowledged_at_once_the_same_schedule_loses_the_update() -> None:
    # The schedule above is a real window: with the old rule the update is lost.
    lost = [seed for seed in range(5)
            if (r := _lost_update(seed, ack_after_replication=False))[1] < r[0]]
    assert lost, "no seed lost the update with the ACK sent at once"


def _unseen_run(seed: int, unseen_runs: bool) -> tuple[int, int] | None:
    """Drop every table delta from the manager from before a follower's run is dispatched, so
    no member ever learns of that run; kill the manager once it applied the run's result.
    Returns (the run's counter, the counter the next run started from), or None when the
    first run after the cut was on the manager itself (its update has no other copy)."""
    net, world, _ = _cluster(seed, ack_after_replication=True)
    world.unseen_runs = unseen_runs
    manager = net.managers()[0].name
    cut_at = net.now
    net.cut_where(lambda src, dst, msg: src == manager and isinstance(msg, Heartbeat)
                  and msg.table is not None)
    lead = world.lead_ms / 1000
    assert net.run_until_true(lambda: any(r.at > cut_at + lead + 0.001 for r in world.runs),
                              limit=5.0, step=0.001) is not None
    run = next(r for r in world.runs if r.at > cut_at + lead + 0.001)
    if run.node == manager:
        return None
    sched = world.layers[manager].scheduler
    assert net.run_until_true(lambda: int(sched.records[LEDGER].state) >= run.after,
                              limit=1.0, step=0.001) is not None, "the result was not applied"
    net.crash(manager)
    net.heal()
    after = len(world.runs)
    assert net.run_until_true(lambda: any(r.before is not None for r in world.runs[after:]),
                              limit=5.0, step=0.005) is not None, net.summary()
    nxt = next(r for r in world.runs[after:] if r.before is not None)
    return run.after, int(nxt.before)  # type: ignore[arg-type]


def test_a_result_for_a_run_the_successor_never_saw_continues_the_row() -> None:
    tried = [(seed, r) for seed in range(8) if (r := _unseen_run(seed, unseen_runs=True))]
    assert len(tried) >= 3, tried
    for seed, (done, next_from) in tried:
        assert next_from == done, (seed, done, next_from)


def test_dropped_as_unknown_the_same_schedule_loses_the_update() -> None:
    tried = [r for seed in range(8) if (r := _unseen_run(seed, unseen_runs=False))]
    assert tried and any(next_from < done for done, next_from in tried), tried


#: Hypothesis settings of the simulator's fault-schedule properties (here and in
#: test_sim_takeover): each example runs a whole simulated cluster, so no deadline and no
#: too-slow health check; no "explain" phase (it reruns each failing schedule many times).
FAULT_SCHEDULES = settings(max_examples=examples(40), deadline=None,
                           suppress_health_check=[HealthCheck.too_slow],
                           phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])

crash_fault = st.one_of(
    st.tuples(st.just("crash"), st.integers(0, 4)),
    st.tuples(st.just("restart"), st.integers(0, 4)),
    st.tuples(st.just("leave"), st.integers(0, 4)),
)


@FAULT_SCHEDULES
@given(n=st.integers(3, 5), seed=st.integers(0, 2**32 - 1),
       faults=st.lists(st.tuples(crash_fault, st.floats(0.0, 1.5)), min_size=1, max_size=8))
def test_no_acknowledged_result_is_lost_through_crashes_and_restarts(
        n: int, seed: int, faults: list[tuple[tuple[str, object], float]]) -> None:
    net, world, names = _cluster(seed, ack_after_replication=True, n=n)
    for (kind, arg), wait in faults:
        _apply(net, names, kind, arg)
        net.run_for(wait)
    _settle(net, names)
    assert world.acked, "no result was acknowledged"
    for ack in world.acked:
        later = [r for r in world.runs
                 if r.at > ack.at and r.managers == 1 and r.before is not None
                 and r.manager in ack.holders]
        regressed = [r for r in later if r.before < ack.value]  # type: ignore[operator]
        assert not regressed, (f"acknowledged {ack} but a later run started from "
                               f"{regressed[0].before}: {regressed[0]}")
