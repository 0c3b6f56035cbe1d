"""A settled simulated cluster to start a scenario from (shared by the sim tests of nodes
that meet an established cluster: a duplicate name, a fresh node; and the check that
every node lists every set, of the member-list sim tests)."""

from __future__ import annotations

from collections.abc import Callable

from clerk._core import Effect, Event, ManagerChanged
from clerk._messages import Claim
from clerk._simnet import SimNetwork, SimNode
from clerk._simtasks import SimLedger

__all__ = ["every_set_listed", "ledger_started", "settled_cluster", "watch_the_cluster"]


def settled_cluster(n: int, seed: int, jitter: float, first: int, start_after: float,
                    seeds: tuple[str, ...] | None = None) -> tuple[SimNetwork, list[str], str, int]:
    """Nodes ``n0``.. on a FIFO network (one connection per pair, as over ZeroMQ): the
    ``first``-th starts a second before the others (it becomes the manager, so the manager's
    name is not always the highest), every node lists every other alive, then ``start_after``
    more seconds pass. ``seeds``: every node's seeds (default: every node's address).
    Returns (network, names, manager, term)."""
    net = SimNetwork(seed, jitter=jitter)
    net.fifo = True
    names = [f"n{i}" for i in range(n)]
    seeds = seeds if seeds is not None else tuple(f"{x}:7400" for x in names)
    net.add_node(names[first % n], seeds=seeds)
    net.run_for(1.0)
    for name in names:
        if name != names[first % n]:
            net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and all(
        {r.name for r in net.nodes[x].core.members if r.alive} == set(names) for x in names),
        limit=10.0) is not None, net.summary()
    net.run_for(start_after)
    view = net.agreed()
    assert view is not None, net.summary()
    return net, names, view[0], view[1]


def watch_the_cluster(net: SimNetwork, outsider: str, follows: Callable[[Claim], bool],
                      what: str,
                      on_outsider: Callable[[list[Effect]], None] | None = None) -> list[str]:
    """Observe ``net`` for the settled cluster meeting ``outsider`` (a node by that name):
    the returned list collects each moment a member follows a claim ``follows`` accepts
    (``what`` names it in the message) and each manager change of a member. The outsider's
    own effects go to ``on_outsider``."""
    violations: list[str] = []

    def check(node: SimNode, event: Event, effects: list[Effect]) -> None:
        if node.name == outsider:
            if on_outsider is not None:
                on_outsider(effects)
            return
        claim = node.core.manager_claim
        if claim is not None and follows(claim):
            violations.append(f"{net.now:.3f} {node.name} follows {what}: {claim}")
        for e in effects:
            if isinstance(e, ManagerChanged):
                violations.append(f"{net.now:.3f} {node.name}: {e}")

    net.observers.append(check)
    return violations


def every_set_listed(net: SimNetwork) -> bool:
    """The live nodes agree on a manager and each lists every live node with the task set
    that node holds itself, fetching none."""
    if net.agreed() is None:
        return False
    live = {x.name: x for x in net.live()}
    for x in live.values():
        rows = {r.name: r for r in x.core.members}
        for name, other in live.items():
            row = rows.get(name)
            if row is None or row.want is not None or row.tasks != other.core.tasks:
                return False
    return True


def ledger_started(net: SimNetwork, world: SimLedger, n: int) -> list[str]:
    """Start nodes ``n0``.. (the last three are every node's seeds; the highest name first)
    and run until they agree on a manager and the ledger's results were acknowledged more
    than twice (the sim state tests' starting point). Returns the names."""
    names = [f"n{i}" for i in range(n)]
    seeds = tuple(f"{x}:7400" for x in names[-3:])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and world.acknowledged(names) > 2,
                              limit=10.0, step=0.01) is not None, net.summary()
    return names
