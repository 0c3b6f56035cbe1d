"""Election (:mod:`clerk._election`), through NodeCore on the in-test router
(:mod:`tests.unit.corenet`): failure detection, the bully election, vouching for a healthy
manager, candidates that wait for a winner, restarted managers."""


import pytest

from clerk._claims import LONE_TERM
from clerk._core import (
    ManagerChanged,
    PeerDown,
    Received,
    Role,
    Send,
    Start,
    Tick,
)
from clerk._messages import (
    Claim,
    Coordinator,
    Election,
    Heartbeat,
    Ok,
)
from tests.unit.corenet import Net, T, addr, cluster, info, peer


def test_follower_suspects_a_silent_manager_after_manager_timeout_and_not_before():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    last_beat = max(t for t, src, e in net.log
                    if src == a.me.address and isinstance(e, Send)
                    and isinstance(e.msg, Heartbeat))
    net.down.add(a.me.address)  # paused: no more heartbeats, connection stays open
    deadline = b.next_deadline()
    assert deadline == pytest.approx(last_beat + T.manager_timeout)
    # ticks before the deadline change nothing
    for t in (last_beat + T.heartbeat_interval, deadline - 0.01, deadline - 1e-6):
        assert b.handle(Tick(), t) == []
        assert b.role is Role.FOLLOWER and b.manager == "a"
    net.now = deadline
    effects = net.do(b, Tick())
    assert b.role is Role.CANDIDATE and b.manager is None
    assert ManagerChanged(None, 1, False) in effects
    # nobody ranks above b but the suspect, which is probed (a live one would answer OK)
    elections = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Election)]
    assert [(e.to, e.msg.suspect) for e in elections] == [(addr("a"), "a")]
    assert b.next_deadline() == pytest.approx(deadline + T.election_timeout)
    net.run()
    net.advance(T.election_timeout - 0.001)
    assert b.role is Role.CANDIDATE
    net.advance(0.001)
    assert b.role is Role.MANAGER and b.term == 2 and b.highest_term == 2
    assert not b.members.get("a").alive


def test_peer_down_of_the_manager_starts_an_immediate_election():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    mark = net.mark()
    crashed = net.now
    net.crash(a)
    # no time passed: b (the highest survivor) already called the election; nobody ranks
    # above it, so its only target is the suspect, probed in case the disconnect was spurious
    assert b.role is Role.CANDIDATE
    assert [m.suspect for m in net.sends(b, Election, to=a, after=mark)] == ["a"]
    assert not [m for m in net.sends(b, Election, after=mark) if m not in
                net.sends(b, Election, to=a, after=mark)]
    assert c.role is Role.CANDIDATE and not net.sends(c, Election, after=mark)  # staggered
    # the dead manager never answers: b takes over well within one stagger step of c
    net.advance(T.election_timeout)
    assert b.role is Role.MANAGER and b.term == 2
    (changed,) = [t for t, src, e in net.log[mark:]
                  if src == addr("b") and isinstance(e, ManagerChanged) and e.is_me]
    assert changed - crashed < T.election_timeout / 5
    assert (c.role, c.manager, c.term) == (Role.FOLLOWER, "b", 2)
    assert not net.sends(c, Election, after=mark)  # c heard the winner before calling
    assert net.sends(b, Coordinator, to=c)[-1].claim == b.manager_claim


def test_the_highest_survivor_wins_when_all_time_out():
    net, (a, b, c, d) = cluster(("a", 9), ("b", 5), ("c", 3), ("d", 1))
    net.crash(a, notify=False)  # a paused/vanished manager: only silence
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout)
    assert net.agreed() == ("b", 2)
    assert all(core.highest_term == 2 for core in (b, c, d))


def test_the_lowest_node_detecting_first_still_ends_with_the_highest_survivor():
    net, (a, b, c, d) = cluster(("a", 9), ("b", 5), ("c", 3), ("d", 1))
    net.crash(a, notify=False)
    net.do(d, PeerDown(addr("a")))  # only the lowest node notices
    net.run()
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout + 0.2)
    assert net.agreed() == ("b", 2)


def test_a_spurious_disconnect_does_not_depose_a_live_manager():
    # _core docstring: the suspect also gets an ELECTION, "a live manager answers OK with its
    # claim, so a spurious disconnect event cannot depose it". A monitor DISCONNECTED event
    # can come from a TCP reset while the process lives on (ZeroMQ then reconnects).
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.do(b, PeerDown(addr("a")))  # only b's connection to a flapped; a is alive
    net.run()
    net.advance(T.election_timeout + T.coordinator_timeout + T.manager_timeout)
    assert net.agreed() == ("a", 1)


def test_a_spurious_disconnect_seen_by_a_lower_node_is_vouched_away():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.do(c, PeerDown(addr("a")))  # c has b above it, which vouches for a
    net.run()
    net.advance(T.election_timeout + T.coordinator_timeout + T.manager_timeout)
    assert net.agreed() == ("a", 1)


def test_an_isolated_follower_elects_itself_and_the_higher_term_wins_after_healing():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.partition([c], [a, b])
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout)
    assert c.role is Role.MANAGER and c.term == 2 and a.role is Role.MANAGER and a.term == 1
    net.heal()
    net.advance(T.probe_interval + T.member_timeout)
    agreed = net.agreed()
    assert agreed is not None and agreed[1] >= 2  # one manager; claims order by term first
    assert {m.name for m in net.cores[addr(agreed[0])].member_list() if m.alive} == {"a", "b", "c"}


def test_a_higher_ranked_newcomer_does_not_depose_a_healthy_manager():
    net, (a, b) = cluster(("a", 0), ("b", 0))
    z = net.node("z", 99, seeds=["b"])
    net.advance(5.0)
    assert net.agreed() == ("a", 1)
    assert z.role is Role.FOLLOWER and z.highest_term == 1
    assert not net.sends(z, Election) and not net.sends(z, Coordinator)


def test_a_healthy_manager_answers_election_with_ok_carrying_its_claim():
    net, (a, b) = cluster(("a", 0), ("b", 5))
    effects = net.do(a, Received(Election(b.me, 1, "a")))
    oks = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Ok)]
    assert len(oks) == 1 and oks[0].to == addr("b") and oks[0].msg.manager == a.manager_claim
    assert a.role is Role.MANAGER and a.term == 1


def test_a_stranger_calling_an_election_gets_ok_and_the_member_list():
    net = Net()
    a = net.node("a", 0)
    stranger = peer("s", 9)
    effects = net.do(a, Received(Election(stranger, 0, "")))
    sent = {type(e.msg): e.msg for e in effects if isinstance(e, Send)}
    assert sent[Ok].manager == a.manager_claim
    assert sent[Heartbeat].members is not None  # makes it JOIN
    assert a.role is Role.MANAGER


def test_a_follower_vouches_for_a_manager_it_heard_recently():
    net, (a, b, c) = cluster(("a", 1), ("b", 5), ("c", 0))
    effects = net.do(b, Received(Election(c.me, 1, "a")))
    oks = [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, Ok)]
    assert oks == [Ok(b.me, 1, a.manager_claim)]
    assert b.role is Role.FOLLOWER  # no election of its own


def test_a_follower_that_has_not_heard_the_manager_either_joins_the_election():
    net, (a, b, c) = cluster(("a", 1), ("b", 5), ("c", 0))
    net.down.add(addr("a"))
    net.advance(T.vouch_window + 0.01)
    effects = net.do(b, Received(Election(c.me, 1, "a")))
    oks = [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, Ok)]
    assert oks == [Ok(b.me, 1, None)]
    assert b.role in (Role.CANDIDATE, Role.MANAGER)


def test_a_candidate_that_gets_ok_waits_for_the_winner_then_retries():
    net = Net()
    low = net.node("low", 0, seeds=["high"], start=False)
    high = peer("high", 9)
    low.members.learn([info(high)], net.now)
    net.do(low, Start())
    net.queue.clear()
    net.advance(T.join_timeout)  # no answer to JOIN: election; "high" ranks above...
    assert low.role is Role.CANDIDATE and not net.sends(low, Election)
    net.advance(T.election_timeout / 5)  # ...so low waits one stagger step first
    assert low.role is Role.CANDIDATE
    sent = net.sends(low, Election, to=None)
    assert sent and all(m.suspect == "" for m in sent)
    net.queue.clear()
    net.do(low, Received(Ok(high, 0, None)))
    deadline = low.next_deadline()
    assert net.now + T.coordinator_timeout <= deadline
    assert deadline <= net.now + T.coordinator_timeout + T.election_timeout
    assert low.role is Role.CANDIDATE
    # no COORDINATOR within the wait: it starts over and calls the election again
    mark = net.mark()
    net.advance(deadline - net.now + T.election_timeout)  # (after its stagger step, if any)
    assert low.role is Role.CANDIDATE
    assert net.sends(low, Election, after=mark)
    net.queue.clear()
    net.do(low, Received(Coordinator(high, 1, Claim(1, 9, "high", addr("high")))))
    assert low.role is Role.FOLLOWER and low.manager == "high" and low.term == 1


def test_a_restarted_manager_joining_through_a_follower_ends_with_one_manager():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.crash(a, notify=False)  # nobody noticed; it comes back at once with a new incarnation
    a2 = net.node("a", 9, seeds=["b"], incarnation="a-2")
    net.advance(T.join_timeout + T.manager_timeout + T.probe_interval)
    agreed = net.agreed()
    assert agreed is not None and agreed[1] >= 2
    manager = net.cores[addr(agreed[0])]
    assert [m.incarnation for m in manager.member_list() if m.name == "a"] == ["a-2"]
    assert a2.role in (Role.MANAGER, Role.FOLLOWER)


def test_two_simultaneous_candidates_converge_on_one_manager():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.partition([b], [c])  # b and c cannot hear each other during the election
    net.crash(a)
    net.advance(T.election_timeout / 5 + T.election_timeout)  # stagger, then no OK: manager
    assert b.role is Role.MANAGER and b.term == 2
    assert c.role is Role.MANAGER and c.term == 2
    net.heal()
    net.advance(T.probe_interval + T.manager_timeout)
    assert net.agreed() == ("b", 2)  # same term: priority decides


def test_a_restarted_manager_below_its_old_incarnations_term_does_not_livelock():
    # c was manager of term 2, vanished without a disconnect event and came back at once with
    # unreachable seeds, so it made itself manager of term 1. b still holds (2, 9, "c") as
    # the highest claim: c's term-1 heartbeats and OKs are stale to b, b tells c about
    # (2, 9, "c"), and c ignores a claim in its own name.
    net = Net()
    net.node("a", 1)
    c = net.node("c", 9, seeds=["a"])
    b = net.node("b", 5, seeds=["a"])
    net.advance(T.heartbeat_interval * 3)
    net.crash(net.cores[addr("a")])
    net.advance(T.election_timeout + T.heartbeat_interval)
    assert (c.role, c.term, b.manager, b.highest_term) == (Role.MANAGER, 2, "c", 2)
    net.crash(c, notify=False)
    c2 = net.node("c", 9, seeds=["nobody"], incarnation="c-2")
    net.advance(T.join_timeout)
    assert c2.role is Role.MANAGER and c2.term == LONE_TERM  # (a lone claim: clerk._claims)
    net.advance(5.0)  # faults are over, every message arrives: one manager must emerge
    assert net.agreed() is not None, [(x.me.name, x.role, x.term) for x in net.live()]


def test_a_candidate_holding_a_dead_incarnations_claim_joins_the_live_manager():
    # d last heard of c's old incarnation as manager of term 3. c restarted (c-2) and joined
    # e's cluster (term 1). d's only contact is c's address. Found by a random fault search.
    net = Net()
    e = net.node("e", 2)
    d = net.node("d", 0, seeds=["c"], start=False)
    net.do(d, Received(Coordinator(peer("c", 2, "c-1"), 3, Claim(3, 2, "c", addr("c")))))
    net.queue.clear()  # c-1 is gone
    c2 = net.node("c", 2, seeds=["e"], incarnation="c-2")
    assert (d.manager, d.highest_term, c2.manager, e.term) == ("c", 3, "e", 1)
    net.advance(10.0)  # every message arrives: one manager and term must emerge
    assert net.agreed() is not None, [(x.me.name, x.role, x.term) for x in net.live()]


def test_a_candidate_and_a_lower_live_manager_do_not_ping_pong():
    # g last followed b's claim (1, 2, "b"); b is gone. m, alive, claims (1, 1, "m"): same
    # term, lower priority. Found by a random fault search (a storm of 100,000 messages).
    net = Net()
    m = net.node("m", 1)
    g = net.node("g", 0, seeds=["x"], start=False)
    g.members.learn([info(m.me)], net.now)
    net.do(g, Received(Coordinator(peer("b", 2), 1, Claim(1, 2, "b", addr("b")))))
    assert g.manager == "b"
    net.queue.clear()
    mark = net.mark()
    try:
        net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout)
    except AssertionError as exc:
        pytest.fail(f"{exc}: {len(net.log) - mark} effects")
    assert len(net.sends(g, Election, after=mark)) < 10
    net.advance(5.0)
    assert net.agreed() is not None
