"""A settled simulated cluster to start a scenario from (shared by the sim tests of nodes
that meet an established cluster: a duplicate name, a fresh node)."""

from __future__ import annotations

from clerk._simnet import SimNetwork

__all__ = ["settled_cluster"]


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
