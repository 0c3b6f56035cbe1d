"""Property: a second node started with the name of a live member never takes the cluster over.

Hypothesis draws a cluster of 2-5 nodes (every node a seed of every other, as
``clerk.testing.LocalCluster`` configures them), which member's name the duplicate takes (the
manager's or a follower's), when it starts, and how slow its links are at first: for a while
after its start every message to or from it takes ``lag`` more seconds (connection set-up and
CURVE handshakes on a loaded machine), long enough, often, for its ``join_timeout`` to pass
before any seed answered, so that it elects itself (knowing nobody: a lone claim, at term 0,
``clerk._claims``; before, at the cluster's term, or at term 1 while it knew no term).
Checked after every event a node handles:

* no node of the cluster ever follows a claim held at the duplicate's address, and none
  changes its manager (no ``ManagerChanged``) after the duplicate started;

and at the end: the duplicate stopped, refused, with a reason that names the name and both
addresses; the cluster agrees on the manager and term it had, and every node's row of the name
is still the original's (address and incarnation).

Before the rule (``clerk._dupname``) a duplicate that elected itself at the cluster's term won
every merge where its name sorts above the manager's: the manager stepped down to it and
handed it its table (``tests/integration/test_cluster_membership.py``, about 1 run in 4 under
load: the cluster followed the impostor for ~25 s).
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clerk._core import Effect, Refused, Role
from tests.unit.simcluster import settled_cluster, watch_the_cluster
from tests.unit.simdepth import examples

#: The duplicate must be refused within this long after its links are fast again (s).
REFUSED_WITHIN = 6.0


def run(n: int, first: int, which: int, seed: int, start_after: float, lag: float,
        slow_for: float, jitter: float) -> None:
    """``first``: the node started a second before the others (it becomes the manager, so
    the manager's name is not always the highest); ``which``: the duplicate takes the name
    of the ``which``-th follower (-1: the manager's)."""
    net, names, manager, term = settled_cluster(n, seed, jitter, first, start_after)
    seeds = tuple(f"{x}:7400" for x in names)
    followers = [x for x in names if x != manager]
    name = followers[which % len(followers)] if which >= 0 else manager
    before = {x: net.nodes[x].core.members.get(name) for x in names}
    original = {x: (r.peer.address, r.peer.incarnation) for x, r in before.items()
                if r is not None}
    t0 = net.now
    rng = random.Random(seed)

    def link_delay(src: str, dst: str, msg: object) -> float:
        if "dup" in (src, dst) and net.now < t0 + slow_for:
            return lag * rng.uniform(0.5, 1.0)
        return 0.0

    net.link_delay = link_delay
    refused: list[str] = []
    dup_address = "dup:7400"

    def on_dup(effects: list[Effect]) -> None:
        refused.extend(e.reason for e in effects if isinstance(e, Refused))

    violations = watch_the_cluster(net, "dup", lambda claim: claim.address == dup_address,
                                   "the duplicate", on_dup)
    dup = net.add_node("dup", seeds=seeds, as_name=name)
    assert net.run_until_true(lambda: dup.core.role is Role.STOPPED,
                              limit=slow_for + lag + REFUSED_WITHIN) is not None, (
        f"the duplicate of {name} is {dup.core.role} after {net.now - t0:.1f}s: "
        f"{net.summary()}", net.trace[-30:])
    assert not violations, violations[:5]
    assert refused, "stopped without a refusal"
    reason = refused[0]
    assert f"'{name}'" in reason and dup_address in reason, reason
    assert f"{name}:7400" in reason, reason
    net.run_for(2.0)
    assert net.agreed() == (manager, term), (net.summary(), net.trace[-20:])
    for x in names:
        row = net.nodes[x].core.members.get(name)
        assert row is not None and (row.peer.address, row.peer.incarnation) == original[x]


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 5), first=st.integers(0, 4), which=st.integers(-1, 3),
       seed=st.integers(0, 2**32), start_after=st.floats(0.0, 3.0), lag=st.floats(0.0, 1.5),
       slow_for=st.floats(0.0, 2.0), jitter=st.floats(0.0005, 0.05))
@example(n=3, first=0, which=1, seed=1, start_after=1.0, lag=1.0, slow_for=1.0, jitter=0.001)
@example(n=3, first=0, which=-1, seed=2, start_after=1.0, lag=1.0, slow_for=1.0,
         jitter=0.001)
def test_a_duplicate_name_never_takes_the_cluster_over(
        n: int, first: int, which: int, seed: int, start_after: float, lag: float,
        slow_for: float, jitter: float) -> None:
    run(n, first, which, seed, start_after, lag, slow_for, jitter)


def test_a_duplicate_of_a_follower_that_elected_itself_is_refused() -> None:
    """The case of the integration test: n0 is the manager, the duplicate of n2 gets its
    first answers after its join timeout, so it elects itself at term 1, and its claim (1,
    n2) is above the manager's (1, n0)."""
    run(3, 0, 1, 7, 1.0, 1.2, 1.0, 0.001)


def test_a_duplicate_of_the_manager_that_elected_itself_is_refused() -> None:
    """Its claim (1, n0) has the very key of the manager's: only the address differs."""
    run(3, 0, -1, 7, 1.0, 1.2, 1.0, 0.001)
