"""``Scheduler.stale``: the real runner and the simulator set it by one rule
(:func:`clerk._adopt.takeover_stale`), the README's: "A new manager that took over from its
replica dispatches nothing before every live member's offer has come ... Even a caught-up
replica waits: one whose last deltas were lost cannot tell."

Both computed it inline (``clerk._runner._take_over_step``, ``clerk._simtasks.LedgerLayer``);
the simulator's copy adds two switches that reproduce older rules for the tests that show
why they were wrong (``SimLedger.sure_offers``: no wait at all; ``wait_caught_up`` False: only
a replica that is not caught up waits). With both on, the defaults, the two agree."""

from __future__ import annotations

import pytest

from clerk._adopt import takeover_stale
from clerk._core import Effect, Event, Role
from clerk._simnet import SimNetwork, SimNode
from clerk._simtasks import SimLedger
from tests.unit.corenet import T, cluster
from tests.unit.simcluster import ledger_started


@pytest.mark.parametrize(("quorum", "graceful", "log_complete", "replica_rows", "waits"), [
    (False, False, False, True, True),  # a crash takeover from a replica
    (False, True, False, True, False),  # a hand-over: the old manager's whole table
    (True, False, False, True, False),  # quorum mode: phase 1 read the voters' rows
    (False, False, True, True, False),  # the new log already holds this scheduler's table
    (False, False, False, False, False),  # no replica: init / from_disk wait instead
])
def test_the_rule(quorum: bool, graceful: bool, log_complete: bool, replica_rows: bool,
                  waits: bool) -> None:
    assert takeover_stale(quorum, graceful, log_complete, replica_rows) is waits


def test_a_crash_takeover_from_a_caught_up_replica_waits_on_a_real_core() -> None:
    """What the runner reads at its activation, from a NodeCore that took over after the
    manager's crash with a replica caught up with its log."""
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    a.set_replicated({"tasks": {"t": 1}})
    net.advance(T.heartbeat_interval * 2)
    assert b.replica.position() is not None  # caught up
    net.crash(a)
    net.advance(T.election_timeout * 2)
    assert b.role is Role.MANAGER
    assert takeover_stale(b.quorum is not None, False, b.table_log.complete,
                          bool(b.replica.items()))


def test_the_simulator_with_its_defaults_waits_after_a_caught_up_takeover() -> None:
    world = SimLedger(interval_ms=200)
    assert world.sure_offers and world.wait_caught_up  # (the older rules off)
    net = SimNetwork(3, layer=world)
    net.fifo = True
    ledger_started(net, world, 3)
    manager = net.managers()[0].name
    seen: list[tuple[str, bool, bool]] = []

    def at_activation(node: SimNode, event: Event, effects: list[Effect]) -> None:
        if node.core.is_manager and node.name != manager:
            sched = world.layers[node.name].scheduler
            if sched.active and not seen:
                seen.append((node.name, sched.stale, node.core.replica.position() is not None))

    net.observers.append(at_activation)
    net.crash(manager)
    assert net.run_until_true(lambda: bool(seen), limit=5.0) is not None, net.summary()
    name, stale, caught_up = seen[0]
    assert caught_up, "the successor's replica was not caught up: not the case under test"
    assert stale, f"{name} took over from a caught-up replica without waiting for OFFERs"
