"""Rows' histories replicated as what changed (clerk._histdelta), in the simulator: the real
cores, Scheduler and table log, over random partitions, heals, crashes, restarts and leaves.

* a member caught up with its manager's log (its replica at the log's end) holds exactly the
  manager's rows, history included, character for character, at every point checked;
* patches are what a steady cluster sends (most heartbeats that carry a task's row), and a
  member refuses one only after the simulator's jitter reordered its deltas;
* a node of an older build (no ``HIST_MARK``) is never sent one and holds the same rows;
* the property test of :mod:`tests.unit.test_sim_state` (no lineage regression, no lost
  acknowledged update) holds, and after every fault the new manager's history of the ledger
  continues the one its members held.
"""

from __future__ import annotations

from clerk._coretypes import Role, Send
from clerk._histdelta import parse_hist
from clerk._messages import Heartbeat
from clerk._simnet import SimNetwork, SimNode
from clerk._simtasks import LEDGER, SimLedger
from tests.unit import test_sim_state as base
from tests.unit.simcluster import ledger_started


class Watch:
    """Counts the heartbeats that carry rows: whole, and with patches."""

    def __init__(self) -> None:
        self.rows = self.patched = self.to_older = 0
        self.older: set[str] = set()

    def watch(self, net: SimNetwork) -> None:
        """See every message ``net`` transmits (a heartbeat round goes out of a layer's
        ``heartbeat_now``, not through ``observers``)."""
        transmit = net._transmit

        def seen(src: SimNode, send: Send) -> None:
            self.saw(send)
            transmit(src, send)

        net._transmit = seen  # type: ignore[method-assign]

    def saw(self, eff: Send) -> None:
        if isinstance(eff.msg, Heartbeat) and eff.msg.table:
            d = eff.msg.table
            if d.rows and "".join(d.rows) != "{}":
                self.rows += 1
                hist = parse_hist("".join(d.hist)) if d.hist is not None else None
                if hist and any(len(v) == 5 for v in hist.values()):
                    self.patched += 1
                    if eff.to.split(":")[0] in self.older:
                        self.to_older += 1


def build(n: int, seed: int, older: set[str] = frozenset()  # type: ignore[assignment]
          ) -> tuple[SimNetwork, SimLedger, list[str], Watch]:
    world = SimLedger(interval_ms=50, fillers=3)
    net = SimNetwork(seed, layer=world)
    net.older = set(older)
    watch = Watch()
    watch.older = set(older)
    watch.watch(net)
    names = ledger_started(net, world, n)
    return net, world, names, watch


def caught_up_equal(net: SimNetwork) -> int:
    """Assert that every member at its manager's log's end holds the manager's rows; how many
    members were checked."""
    checked = 0
    for boss in net.managers():
        log = boss.core.table_log
        if not log.complete:
            continue
        rows = dict(log.items())
        live = {k: t for k, t in rows.items() if t is not None}
        for node in net.nodes.values():
            rep = node.core.replica
            if node is boss or not node.up or node.core.role is not Role.FOLLOWER:
                continue
            if (rep.log, rep.seq) == (log.log, log.seq) and rep.caught_up:
                assert dict(rep.items()) == live, (node.name, boss.name)
                checked += 1
    return checked


def test_a_steady_cluster_sends_patches_and_members_hold_the_managers_rows() -> None:
    for seed in range(3):
        net, world, names, watch = build(3, seed)
        checked = 0
        for _ in range(60):
            net.run_for(0.1)
            checked += caught_up_equal(net)
        assert checked > 20
        assert watch.patched > watch.rows / 2, (watch.patched, watch.rows)
        manager = net.managers()[0]
        assert len(manager.layer.scheduler.records[LEDGER].run_history) > 20  # type: ignore
        refused = sum(n.core.replica.refused_hist for n in net.nodes.values())
        assert refused <= watch.patched / 10, (refused, watch.patched)


def test_a_node_of_an_older_build_gets_whole_rows_and_holds_the_same() -> None:
    net, world, names, watch = build(3, 5, older={"n1"})
    checked = 0
    for _ in range(40):
        net.run_for(0.1)
        checked += caught_up_equal(net)
    assert checked > 10 and watch.patched > 0 and watch.to_older == 0
    older = net.nodes["n1"].core.replica
    assert older.refused_hist == 0


@base.random_faults(max_examples=10)
def test_members_hold_the_managers_rows_through_random_faults(
        n: int, seed: int, faults: list[tuple[tuple[str, object], float]]) -> None:
    net, world, names, watch = build(n, seed)
    origin = world.layers[net.managers()[0].name].scheduler.records[LEDGER].origin
    acked = world.acknowledged(names)
    for (kind, arg), wait in faults:
        acked = max(acked, world.acknowledged(names))
        base._apply(net, names, kind, arg)
        for _ in range(max(1, int(wait / 0.25))):
            net.run_for(min(wait, 0.25))
            caught_up_equal(net)
    acked = max(acked, world.acknowledged(names))
    base._settle(net, names)
    row = world.layers[net.managers()[0].name].scheduler.records[LEDGER]
    assert row.origin == origin, "a lineage other than the first init's won"
    assert int(row.state) >= acked, f"counter {row.state} < acknowledged {acked}"
    assert row.version == int(row.state)
    assert net.run_until_true(lambda: caught_up_equal(net) == len(names) - 1, limit=5.0,
                              step=0.05) is not None, "every member catches up, exactly"
    assert watch.patched > 0
