"""Membership and joining (:mod:`clerk._joining`), through NodeCore on the in-test router
(:mod:`tests.unit.corenet`): joining through seeds, heartbeats and their acks, admission and
refusal, members marked down and revived, lost members still probed."""

import json
import random

import pytest

from clerk._claims import LONE_TERM
from clerk._core import (
    ManagerChanged,
    MemberDown,
    MemberUp,
    NodeCore,
    PeerDown,
    Received,
    Refused,
    Role,
    Send,
    Start,
    Stopped,
    Tick,
)
from clerk._messages import (
    Ack,
    Claim,
    Coordinator,
    Heartbeat,
    Join,
    Peer,
    Refuse,
    Welcome,
)
from tests.unit.corenet import INF, Net, T, addr, cluster, peer


def test_start_without_seeds_is_manager_of_term_1():
    net = Net()
    a = net.node("a", 1)
    assert a.role is Role.MANAGER and a.is_manager
    assert (a.manager, a.term, a.highest_term) == ("a", 1, 1)
    assert a.manager_claim == Claim(1, 1, "a", addr("a"))
    assert net.effects(a, ManagerChanged) == [ManagerChanged("a", 1, True)]
    assert not net.effects(a, Send)  # nobody to talk to
    assert [m.name for m in a.member_list()] == ["a"]


def test_seeds_exclude_own_address_and_duplicates():
    core = NodeCore(peer("a"), now=0.0, rng=random.Random(0),
                    seeds=[addr("a"), addr("b"), addr("b")])
    assert core.seeds == (addr("b"),)
    assert core.role is Role.JOINING and core.manager is None and core.highest_term == 0


def test_join_through_the_manager_makes_a_follower():
    net = Net()
    a = net.node("a", 1)
    b = net.node("b", 0, seeds=["a"], tasks=("t1",))
    assert net.sends(b, Join, to=a)[0].tasks == ("t1",)
    welcome = net.sends(a, Welcome, to=b)
    assert len(welcome) == 1 and welcome[0].manager == a.manager_claim
    assert b.role is Role.FOLLOWER and (b.manager, b.term, b.highest_term) == ("a", 1, 1)
    assert net.effects(b, ManagerChanged) == [ManagerChanged("a", 1, False)]
    up = net.effects(a, MemberUp)
    assert len(up) == 1 and up[0].how == "added" and up[0].info.name == "b"
    assert up[0].info.tasks == ("t1",)
    assert {m.name for m in a.member_list()} == {m.name for m in b.member_list()} == {"a", "b"}


def test_join_through_a_non_manager_seed_is_redirected_to_the_manager():
    net = Net()
    a = net.node("a", 1)
    b = net.node("b", 0, seeds=["a"])
    c = net.node("c", 0, seeds=["b"])
    assert net.sends(c, Join, to=b)  # asked the seed...
    answer = net.sends(b, Welcome, to=c)
    assert answer and answer[0].manager == a.manager_claim  # ...which pointed at the manager
    assert net.sends(c, Join, to=a)  # ...and joined there
    assert net.sends(a, Welcome, to=c)
    assert c.role is Role.FOLLOWER and c.manager == "a" and c.term == 1
    assert not net.sends(b, Heartbeat)
    net.advance(T.heartbeat_interval * 2)
    assert {m.name for m in b.member_list()} == {"a", "b", "c"}  # b learns c from heartbeats
    assert {m.name for m in c.member_list()} == {"a", "b", "c"}


def test_join_with_no_reachable_seed_elects_itself_after_the_join_timeout():
    net = Net()
    a = net.node("a", 0, seeds=["nobody"])
    assert a.role is Role.JOINING and a.next_deadline() == net.now + T.join_timeout
    net.advance(T.join_timeout - 0.001)
    assert a.role is Role.JOINING
    net.advance(0.001)
    # A lone claim (it knows nobody): below every claim made with members (clerk._claims).
    assert a.role is Role.MANAGER and a.term == LONE_TERM == 0


def test_heartbeats_carry_the_member_list_only_when_the_acked_epoch_is_stale():
    net, (a, b, c) = cluster(("a", 1), ("b", 0), ("c", 0))
    start = net.mark()
    net.advance(T.heartbeat_interval)
    beats = net.sends(a, Heartbeat, after=start)
    assert len(beats) == 2 and all(h.members is None and h.table is None for h in beats)
    # a change of the list (a new member) bumps the epoch: the next round carries the list
    joined = net.mark()
    net.node("d", 0, seeds=["a"])
    net.advance(T.heartbeat_interval)
    to_b = net.sends(a, Heartbeat, to=b, after=joined)
    assert to_b and to_b[0].members is not None and {m.name for m in to_b[0].members} == {
        "a", "b", "c", "d"}
    assert to_b[0].epoch == a.members.epoch
    # acked: the next round is light again
    settled = net.mark()
    net.advance(T.heartbeat_interval)
    beats = net.sends(a, Heartbeat, after=settled)
    assert len(beats) == 3 and all(h.members is None for h in beats)
    # the table travels the same way: to those behind the log, once
    a.set_replicated({"tasks": {"t": 1}})
    since = net.mark()
    net.advance(T.heartbeat_interval)
    beats = net.sends(a, Heartbeat, after=since)
    assert len(beats) == 3 and all(h.table is not None and h.members is None for h in beats)
    assert all(c.replicated == {"tasks": {"t": 1}} for c in net.live())
    since = net.mark()
    net.advance(T.heartbeat_interval)
    assert all(h.table is None for h in net.sends(a, Heartbeat, after=since))


def rows_of(beat: Heartbeat) -> dict:
    assert beat.table is not None
    return json.loads("".join(beat.table.rows))


def test_a_table_change_sends_only_the_changed_rows_without_the_member_list():
    net, (a, b, c) = cluster(("a", 1), ("b", 0), ("c", 0))
    a.set_replicated({"tasks": {"t": 0, "u": 0}})
    net.advance(T.heartbeat_interval * 2)  # every member has acked the list and the table
    for n in (1, 2):
        a.set_replicated({"tasks": {"t": 0, "u": n}})
        since = net.mark()
        net.advance(T.heartbeat_interval)
        beats = net.sends(a, Heartbeat, after=since)
        assert len(beats) == 2 and all(h.members is None and rows_of(h) == {"t:u": n}
                                       for h in beats)
        # ... and the ACK of that sequence settles it: the next round is empty again
        acks = net.sends(b, Ack, after=since) + net.sends(c, Ack, after=since)
        assert acks and all((k.table, k.log) == (a.table_log.seq, a.table_log.log)
                            for k in acks)
        since = net.mark()
        net.advance(T.heartbeat_interval)
        assert all(h.table is None and h.members is None
                   for h in net.sends(a, Heartbeat, after=since))
        assert all(x.replicated == {"tasks": {"t": 0, "u": n}} for x in (b, c))
    # A joiner gets the whole table with its WELCOME, not at the next change.
    joined = net.mark()
    d = net.node("d", 0, seeds=["a"])
    to_d = net.sends(a, Heartbeat, to=d, after=joined)
    assert to_d and rows_of(to_d[0]) == {"t:t": 0, "t:u": 2}
    assert d.replicated == {"tasks": {"t": 0, "u": 2}}
    net.advance(T.heartbeat_interval)
    to_b = net.sends(a, Heartbeat, to=b, after=joined)
    assert to_b[0].members is not None and {m.name for m in to_b[0].members} == {
        "a", "b", "c", "d"}
    assert all(h.table is None for h in to_b)  # the list changed, the table did not
    assert {m.name for m in d.member_list()} == {"a", "b", "c", "d"}


def test_one_heartbeat_object_per_kind_per_round_so_the_agent_encodes_it_once():
    net, (a, *_rest) = cluster(("a", 1), ("b", 0), ("c", 0), ("d", 0))
    net.advance(T.heartbeat_interval)
    a.set_replicated({"tasks": {"t": 1}})
    since = net.mark()
    net.advance(T.heartbeat_interval)
    beats = net.sends(a, Heartbeat, after=since)
    assert len(beats) == 3 and all(b is beats[0] for b in beats)


def test_members_acknowledge_heartbeats():
    # (How often an idle member does: tests/unit/test_acks.py.)
    net, (a, b) = cluster(("a", 1), ("b", 0))
    since = net.mark()
    net.advance(1.0)
    beats = {h.seq: h for h in net.sends(a, Heartbeat, after=since)}
    acks = net.sends(b, Ack, after=since)
    assert acks and all((k.epoch, k.term) == (a.members.epoch, 1) and k.seq in beats
                        for k in acks)


def test_peer_down_of_a_member_only_marks_it_dead_on_the_manager():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.crash(c)
    net.advance(T.election_timeout)
    assert a.role is Role.MANAGER and a.term == 1
    assert not a.members.get("c").alive
    assert net.effects(a, MemberDown) == [MemberDown("c", "disconnected")]
    assert b.role is Role.FOLLOWER and b.manager == "a"
    # a silent member is dropped after member_timeout
    net.advance(T.member_timeout + T.heartbeat_interval)
    assert "c" not in a.members and MemberDown("c", "silent") in net.effects(a, MemberDown)


def test_a_member_dropped_while_paused_rejoins_when_it_resumes():
    net, (a, b, c) = cluster(("a", 1), ("b", 9), ("c", 0))
    net.down.add(addr("b"))  # b pauses for longer than member_timeout
    net.advance(T.member_timeout + 2 * T.heartbeat_interval)
    assert "b" not in a.members
    net.down.discard(addr("b"))  # b resumes: its manager timeout has long expired
    net.advance(T.election_timeout + T.coordinator_timeout + T.manager_timeout)
    assert net.agreed() == ("a", 1)  # b ranks highest but does not depose a
    assert "b" in a.members and a.members.get("b").alive
    assert {m.name for m in c.member_list()} == {"a", "b", "c"}


def test_a_duplicate_name_is_refused_and_the_newcomer_stops():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    impostor = NodeCore(Peer("b", "elsewhere:7400", "b-other", 0), now=net.now,
                        rng=random.Random(1), seeds=[addr("a")], timings=T)
    net.cores["elsewhere:7400"] = impostor
    net.do(impostor, Start())
    net.run()
    refuse = net.sends(a, Refuse)
    assert len(refuse) == 1 and "'b'" in refuse[0].reason and addr("b") in refuse[0].reason
    assert "elsewhere:7400" in refuse[0].reason
    effects = net.effects(impostor)
    refused = [e for e in effects if isinstance(e, Refused)]
    assert refused == [Refused(refuse[0].reason)]
    assert isinstance(effects[-1], Stopped) and refuse[0].reason in effects[-1].reason
    assert effects.index(refused[0]) < effects.index(effects[-1])
    assert impostor.role is Role.STOPPED and impostor.next_deadline() == INF
    assert impostor.handle(Tick(), net.now + 10) == []
    assert a.members.get("b").peer == b.me  # the original keeps its entry
    net.advance(1.0)
    assert net.agreed() == ("a", 1) and b.role is Role.FOLLOWER


def test_a_duplicate_name_joining_through_a_follower_is_refused_by_the_manager():
    net, (a, b, c) = cluster(("a", 1), ("b", 0), ("c", 0))
    impostor = NodeCore(Peer("b", "elsewhere:7400", "b-other", 0), now=net.now,
                        rng=random.Random(1), seeds=[addr("c")], timings=T)
    net.cores["elsewhere:7400"] = impostor
    net.do(impostor, Start())
    net.run()
    assert impostor.role is Role.STOPPED
    assert [type(e) for e in net.effects(impostor) if isinstance(e, Refused | Stopped)] == [
        Refused, Stopped]
    net.advance(1.0)
    assert net.agreed() == ("a", 1)
    assert {(m.name, m.address) for m in c.member_list()} == {
        ("a", addr("a")), ("b", addr("b")), ("c", addr("c"))}


def impostor_manager(net, name, seeds, joined=False):
    """A second node in ``name``'s name that found nobody in time and elected itself: a
    manager of nobody, with a lone claim at term 0 (its seeds' answers come later); with
    ``joined``, at term 1, as a node that had been part of a cluster before claims (its
    claim is not a lone one: clerk._claims): the duplicate-name rules hold at any term."""
    impostor = NodeCore(Peer(name, "elsewhere:7400", f"{name}-other", 0), now=net.now,
                        rng=random.Random(1), seeds=[addr(s) for s in seeds], timings=T)
    impostor.joined = joined
    net.cores["elsewhere:7400"] = impostor
    net.every_core.append(impostor)
    cut = {frozenset(("elsewhere:7400", addr(s))) for s in seeds}
    net.cut |= cut  # its links are not up yet: what it sends meanwhile is lost
    net.do(impostor, Start())
    net.advance(T.join_timeout + T.election_timeout)
    assert impostor.role is Role.MANAGER and impostor.term == (1 if joined else LONE_TERM)
    net.cut -= cut
    return impostor


@pytest.mark.parametrize("joined", [False, True])
def test_a_duplicate_that_elected_itself_never_displaces_the_manager(joined):
    """Its claim (1, "c") (``joined``; a lone claim is (0, "c")) is above the manager's
    (1, "a"): before clerk._dupname, the manager stepped down to it and handed it its
    table."""
    net, (a, b, c) = cluster(("a", 0), ("b", 0), ("c", 0))
    assert net.agreed() == ("a", 1)
    mark = net.mark()
    impostor = impostor_manager(net, "c", ["a", "b"], joined)
    net.advance(T.probe_interval + 0.1)  # its probes reach the seeds
    assert impostor.role is Role.STOPPED
    refused = [e.reason for e in net.effects(impostor, Refused)]
    assert refused and "the name 'c' is already used by a live node at c:7400" in refused[0]
    assert "elsewhere:7400 was refused" in refused[0]
    assert net.agreed() == ("a", 1)
    assert not any(net.effects(x, ManagerChanged, after=mark) for x in (a, b, c))
    assert all(x.members.get("c").peer == c.me for x in (a, b))
    assert a.dropped["duplicate_name"] >= 1


def test_a_duplicate_of_the_manager_with_its_very_claim_is_refused():
    """Its claim has the key of the manager's (1, 0, "a"); only the address differs. (A
    fresh duplicate's claim is a lone one, (0, 0, "a"): ``joined`` makes it (1, 0, "a").)"""
    net, (a, b, c) = cluster(("a", 0), ("b", 0), ("c", 0))
    mark = net.mark()
    impostor = impostor_manager(net, "a", ["b", "c"], joined=True)
    assert impostor.manager_claim.key == a.manager_claim.key
    net.advance(T.probe_interval + 0.1)
    assert impostor.role is Role.STOPPED
    assert net.agreed() == ("a", 1)
    assert not any(net.effects(x, ManagerChanged, after=mark) for x in (a, b, c))
    assert b.manager_claim == a.manager_claim  # at a's address


def test_a_relayed_claim_of_a_duplicate_is_not_followed():
    net, (a, b, c) = cluster(("a", 0), ("b", 0), ("c", 0))
    dup = Claim(5, 0, "c", "elsewhere:7400")
    net.deliver(addr("a"), Send(addr("b"), Coordinator(a.me, 1, dup)))
    net.run()
    assert b.manager_claim == a.manager_claim and b.highest_term == 1
    assert b.dropped["duplicate_claim"] == 1
    assert net.agreed() == ("a", 1)


def test_a_refuse_from_a_seed_does_not_stop_a_manager_with_members():
    """Only a manager of nobody (a duplicate that elected itself) stops on a seed's REFUSE."""
    net, (a, b) = cluster(("a", 0), ("b", 0))
    net.deliver(addr("b"), Send(addr("a"), Refuse(b.me, 1, "go away")))
    assert a.role is Role.MANAGER and a.dropped["refuse_stranger"] == 1


def test_a_restarted_node_replaces_its_entry():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    net.crash(b, notify=False)
    b2 = net.node("b", 0, seeds=["a"], incarnation="b-2")
    up = net.effects(a, MemberUp)
    assert up[-1].how == "replaced" and up[-1].info.incarnation == "b-2"
    assert a.members.get("b").peer.incarnation == "b-2"
    assert b2.role is Role.FOLLOWER and b2.manager == "a"
    net.advance(1.0)
    assert [m.incarnation for m in a.member_list() if m.name == "b"] == ["b-2"]


def test_a_member_marked_dead_by_a_disconnect_is_revived_by_its_next_ack():
    net, (a, b) = cluster(("a", 9), ("b", 5))
    net.do(a, PeerDown(addr("b")))  # the connection flapped; b lives on
    assert not a.members.get("b").alive
    net.advance(T.heartbeat_interval * 2)
    assert a.members.get("b").alive
    ups = net.effects(a, MemberUp)
    assert ups[-1].how == "revived" and ups[-1].info.name == "b" and ups[-1].info.alive
    assert net.agreed() == ("a", 1)


def test_a_member_unknown_to_the_manager_is_told_to_join():
    net = Net()
    a = net.node("a")
    effects = net.do(a, Received(Ack(peer("ghost"), 1, 0, -1)))
    (send,) = [e for e in effects if isinstance(e, Send)]
    assert send.to == addr("ghost") and isinstance(send.msg, Heartbeat)
    assert send.msg.members is not None


def test_a_lost_member_is_still_probed_after_its_manager_steps_down():
    net = Net()
    d = net.node("d", 1)
    e = net.node("e", 0, seeds=["d"])
    net.advance(T.heartbeat_interval * 3)
    net.crash(e)
    net.advance(T.member_timeout + 2 * T.heartbeat_interval)  # d drops e, keeps probing e:7400
    e2 = net.node("e", 0, seeds=["x"], incarnation="e-2", start=False)  # back, seed gone
    g = net.node("g", 5, seeds=["d"], start=False)
    # h with g: g claims with a member (alone, its claim would be a lone one, at term 0,
    # below d's, and d would stay the manager: clerk._claims).
    h = net.node("h", 0, seeds=["g"], start=False)
    net.partition([e2], [d, g, h])
    net.partition([g, h], [d])
    net.do(e2, Start())
    net.do(g, Start())
    net.do(h, Start())
    net.run()
    net.advance(T.join_timeout + 0.01)
    assert (e2.role, g.role, d.role) == (Role.MANAGER,) * 3
    assert (g.term, h.manager) == (1, "g")
    net.cut.discard(frozenset((addr("g"), addr("d"))))
    net.advance(T.probe_interval + 3 * T.heartbeat_interval)  # g's probe: d hands over to g
    assert d.manager == "g"
    net.heal()  # only d ever knew where e is, and d is a follower now
    net.advance(10.0)
    assert net.agreed() is not None, [(x.me.name, x.role, x.term) for x in net.live()]
