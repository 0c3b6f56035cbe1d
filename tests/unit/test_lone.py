"""Lone claims (:mod:`clerk._claims`, "Lone claims"): a node that elects itself knowing
nobody claims at term 0, below every claim made with members, and claims again at a normal
term once it has a member (:func:`clerk._election.graduate`). NodeCore on the in-test router
(:mod:`tests.unit.corenet`)."""

from clerk._claims import LONE_TERM
from clerk._core import ManagerChanged, Received, Role, Start
from clerk._messages import Join, Welcome
from tests.unit.corenet import Net, T, addr, cluster


def test_a_node_that_finds_nobody_claims_the_lone_term_and_one_without_seeds_does_not():
    net = Net()
    alone = net.node("z", 9, seeds=["nobody"])
    single = net.node("s", 0)  # no seeds: a cluster of one by its configuration
    net.advance(T.join_timeout + T.election_timeout)
    assert (alone.role, alone.term, alone.max_term) == (Role.MANAGER, LONE_TERM, 0)
    assert (single.role, single.term) == (Role.MANAGER, 1)


def test_a_lone_manager_that_admits_a_joiner_claims_again_with_it():
    """The first node of a cluster started at once, up before its seeds: the cluster formed
    around it is not left at term 0 (the next lone node with a higher name would win)."""
    net = Net()
    z = net.node("z", 0, seeds=["y"])
    net.advance(T.join_timeout + T.election_timeout)
    assert (z.role, z.term) == (Role.MANAGER, LONE_TERM)
    mark = net.mark()
    y = net.node("y", 0, seeds=["z"])
    net.advance(T.heartbeat_interval * 3)
    assert net.agreed() == ("z", 1)
    assert y.manager_claim is not None and y.manager_claim.key == (1, 0, "z")
    assert [e.term for e in net.effects(z, ManagerChanged, after=mark)] == [1]
    # ... and a lone node at term 0, whatever its rank, now ranks below it.
    w = net.node("w", 9, seeds=["nobody"])
    net.advance(T.join_timeout + T.election_timeout)
    assert (w.role, w.term) == (Role.MANAGER, LONE_TERM)
    w.seeds = (addr("z"),)
    net.advance(T.probe_interval + T.heartbeat_interval * 3)  # w probes its seed z
    assert net.agreed() == ("z", 1) and w.manager == "z"


def test_a_lone_manager_claims_again_before_it_welcomes_its_first_joiner():
    """The JOIN that gives a lone manager its first live member makes it claim again in the
    same step; its WELCOME carries the raised claim. Before, the WELCOME went first, with the
    lone claim (term 0) its holder gave up in that very step."""
    net = Net()
    z = net.node("z", 0, seeds=["y"])
    net.advance(T.join_timeout + T.election_timeout)
    assert (z.role, z.term) == (Role.MANAGER, LONE_TERM)
    y = net.node("y", 0, seeds=["z"], start=False)
    mark = net.mark()
    net.do(z, Received(Join(y.me, 0, ())))
    assert z.term == 1
    welcomes = net.sends(z, Welcome, to=y, after=mark)
    assert [w.manager.key if w.manager else None for w in welcomes] == [(1, 0, "z")]
    assert all(w.term == 1 for w in welcomes)
    assert [(type(e).__name__, e.term) for e in net.effects(z, ManagerChanged, after=mark)] == [
        ("ManagerChanged", 1)]
    assert not [m for m in net.sends(z, object, to=y, after=mark) if m.term == LONE_TERM]


def test_lone_managers_that_meet_agree_on_one_then_claim_with_their_members():
    """Every node fresh and alone (a whole cluster started while the network was not up):
    the highest lone claim wins, its holder then claims again at term 1."""
    net = Net()
    a = net.node("a", 0, seeds=["b", "c"], start=False)
    b = net.node("b", 0, seeds=["a", "c"], start=False)
    c = net.node("c", 0, seeds=["a", "b"], start=False)
    net.partition([a], [b, c])
    net.partition([b], [c])
    for core in (a, b, c):
        net.do(core, Start())
    net.run()
    net.advance(T.join_timeout + T.election_timeout)
    assert {(x.role, x.term) for x in (a, b, c)} == {(Role.MANAGER, LONE_TERM)}
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 5)
    assert net.agreed() == ("c", 1)


def test_a_node_that_followed_a_relayed_claim_and_never_heard_its_holder_is_lone():
    """Its only answer was a member's WELCOME naming the manager; the manager never answers
    (its link is not up), so it gives up on it after the manager timeout and a join timeout
    (a relay's word: CoreState.manager_due), never having been part of the cluster: its
    claim is a lone one, and the cluster keeps its manager."""
    net, (a, b) = cluster(("a", 0), ("b", 0))
    z = net.node("z", 9, seeds=["b"], start=False)
    net.cut.add(frozenset((addr("a"), addr("z"))))
    net.do(z, Start())
    net.run()
    assert z.manager == "a" and not z.joined  # on b's word (its WELCOME relays a's claim)
    mark = net.mark()
    net.advance(T.manager_timeout + T.join_timeout - 0.01)
    assert not net.effects(z, ManagerChanged, after=mark)  # (the manager's first word may come)
    net.advance(T.election_timeout + 0.02)
    # It claimed alone, at term 0 (then b, probed with that claim, told it of a's again).
    mine = [e for e in net.effects(z, ManagerChanged, after=mark) if e.is_me]
    assert mine and all(e.term == LONE_TERM for e in mine)
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 3)
    assert net.agreed() == ("a", 1) and z.joined
    assert not net.effects(a, ManagerChanged, after=mark)
    assert not net.effects(b, ManagerChanged, after=mark)


def test_a_member_whose_cluster_is_gone_claims_at_a_normal_term():
    """Not lone: it took its manager's member list (it was part of a cluster), so its claim
    after the manager's crash is the highest term seen + 1, as before."""
    net, (a, b) = cluster(("a", 0), ("b", 0))
    assert b.joined
    net.crash(a)
    net.advance(T.election_timeout)
    assert (b.role, b.term) == (Role.MANAGER, 2)


def test_a_welcome_of_the_manager_itself_makes_a_node_part_of_the_cluster():
    net, (a, b) = cluster(("a", 0), ("b", 0))
    z = net.node("z", 0, seeds=["nobody"], start=False)
    net.do(z, Start())
    assert not z.joined
    net.do(z, Received(Welcome(a.me, 1, a.manager_claim, a.member_list(), a.members.epoch)))
    assert z.joined and z.manager == "a"
