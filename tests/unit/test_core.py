"""NodeCore by hand: fake time, a tiny in-test router, assertions on effects and roles.

The router delivers every ``Send`` at once (zero latency) and in order, after a round trip
through the real codec, so every message the core emits is also checked to be encodable. Time
only moves through :meth:`Net.advance`, which ticks each node exactly at its
``next_deadline()``; every handled event is checked not to leave a deadline in the past (and a
``Tick`` to move it forward), which is what keeps the real shell from busy-looping.
"""

import json
import random
from collections import deque

import pytest

from clerk._codec import decode, encode
from clerk._core import (
    Deliver,
    LeaveRequested,
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
    StateHandedOver,
    Stopped,
    Tick,
)
from clerk._messages import (
    Ack,
    Claim,
    Coordinator,
    Election,
    Execute,
    Handover,
    Heartbeat,
    Join,
    Leave,
    MemberInfo,
    Ok,
    Peer,
    Refuse,
    Result,
    Status,
    StatusReply,
    Welcome,
)
from clerk._timings import Timings

T = Timings()
INF = float("inf")


def addr(name: str) -> str:
    return f"{name}:7400"


class Net:
    """A handful of cores, a FIFO of messages in flight, and a fake ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.cores: dict[str, NodeCore] = {}  # by address
        self.log: list[tuple[float, str, object]] = []  # (time, from address, effect)
        self.queue: deque[tuple[str, Send]] = deque()
        self.down: set[str] = set()  # crashed or paused: receive nothing, run no timers
        self.cut: set[frozenset[str]] = set()  # pairs of addresses that cannot talk
        self.terms: dict[int, tuple[int, int]] = {}  # id(core) -> (max_term, highest_term)
        self.every_core: list[NodeCore] = []  # keeps ids unique across restarts

    # --- building ---------------------------------------------------------------------------

    def node(self, name, priority=0, seeds=(), tasks=(), incarnation=None, start=True):
        peer = Peer(name, addr(name), incarnation or f"{name}-1", priority)
        core = NodeCore(peer, now=self.now, rng=random.Random(name),
                        seeds=[addr(s) for s in seeds], tasks=tasks, timings=T)
        self.cores[peer.address] = core
        self.every_core.append(core)
        self.down.discard(peer.address)
        if start:
            self.do(core, Start())
            self.run()
        return core

    # --- driving ----------------------------------------------------------------------------

    def do(self, core, event):
        effects = core.handle(event, self.now)
        for e in effects:
            self.log.append((self.now, core.me.address, e))
            if isinstance(e, Deliver) and isinstance(e.msg, Execute):  # fencing, every time
                assert core.accepts(e.msg.term, e.msg.sender), (core.me.name, e, core.highest)
            if isinstance(e, Send):
                assert e.to != core.me.address, "a node never sends to itself"
                self.queue.append((core.me.address, e))
        # invariants after every step: terms never decrease, deadlines never in the past
        terms = (core.max_term, core.highest_term)
        before = self.terms.get(id(core), (0, 0))
        assert terms[0] >= before[0] and terms[1] >= before[1], (core.me.name, before, terms)
        assert core.term <= core.max_term and core.highest_term <= core.max_term
        self.terms[id(core)] = terms
        deadline = core.next_deadline()
        assert deadline >= self.now, (core.me.name, core.role, event, deadline, self.now)
        if isinstance(event, Tick):
            assert deadline > self.now, ("busy loop", core.me.name, core.role, deadline)
        return effects

    def deliver(self, src, send):
        if send.to in self.down or src in self.down or frozenset((src, send.to)) in self.cut:
            return
        core = self.cores.get(send.to)
        if core is None:
            return
        self.do(core, Received(decode(encode(send.msg))))

    def run(self, limit=100_000):
        n = 0
        while self.queue:
            n += 1
            assert n < limit, "message storm"
            self.deliver(*self.queue.popleft())

    def advance(self, seconds):
        """Let ``seconds`` pass, ticking every live node at each of its deadlines."""
        end = self.now + seconds
        for _ in range(100_000):
            live = self.live()
            due = min((c.next_deadline() for c in live), default=INF)
            if due > end + 1e-9:  # timers re-armed as now + interval drift by an ulp or so
                break
            self.now = max(self.now, due)
            for core in live:
                if core.next_deadline() <= self.now:
                    self.do(core, Tick())
            self.run()
        else:
            raise AssertionError("timers never settle")
        self.now = end

    def live(self):
        return [c for a, c in self.cores.items()
                if a not in self.down and c.role is not Role.STOPPED]

    def crash(self, core, notify=True):
        """Kill ``core``; with ``notify`` every live peer gets the socket-monitor PeerDown."""
        self.down.add(core.me.address)
        if notify:
            for other in self.live():
                self.do(other, PeerDown(core.me.address))
            self.run()

    def partition(self, group_a, group_b):
        for x in group_a:
            for y in group_b:
                self.cut.add(frozenset((x.me.address, y.me.address)))

    def heal(self):
        self.cut.clear()

    # --- inspecting -------------------------------------------------------------------------

    def mark(self):
        """A point in the log; pass it as ``after`` to see only what came since."""
        return len(self.log)

    def effects(self, core, kind=object, after=0):
        return [e for _, a, e in self.log[after:]
                if a == core.me.address and isinstance(e, kind)]

    def sends(self, core, msg_kind, to=None, after=0):
        return [e.msg for e in self.effects(core, Send, after)
                if isinstance(e.msg, msg_kind) and (to is None or e.to == to.me.address)]

    def agreed(self):
        """(manager, term) if every live node agrees on one, else None."""
        views = {(c.manager, c.term) for c in self.live()}
        managers = [c for c in self.live() if c.role is Role.MANAGER]
        if len(views) == 1 and len(managers) == 1 and managers[0].me.name == views.copy().pop()[0]:
            return views.pop()
        return None


def cluster(*specs):
    """``cluster(("a", 1), ("b", 5), ...)``: the first starts alone, the rest join through it."""
    net = Net()
    first, *rest = specs
    cores = [net.node(*first)]
    for name, prio in rest:
        cores.append(net.node(name, prio, seeds=[first[0]]))
    net.advance(T.heartbeat_interval * 3)  # a few heartbeat rounds: everyone has the list
    return net, cores


def peer(name, priority=0, incarnation=None):
    return Peer(name, addr(name), incarnation or f"{name}-1", priority)


def info(p, alive=True):
    return MemberInfo(p.name, p.address, p.incarnation, p.priority, alive, ())


# --- starting and joining ------------------------------------------------------------------------


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
    assert a.role is Role.MANAGER and a.term == 1


def test_heartbeats_carry_the_member_list_only_when_the_acked_epoch_is_stale():
    net, (a, b, c) = cluster(("a", 1), ("b", 0), ("c", 0))
    start = net.mark()
    net.advance(T.heartbeat_interval)
    beats = net.sends(a, Heartbeat, after=start)
    assert len(beats) == 2 and all(h.members is None and h.state is None for h in beats)
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
    # replicated state travels the same way
    a.set_replicated({"tasks": {"t": 1}})
    since = net.mark()
    net.advance(T.heartbeat_interval)
    beats = net.sends(a, Heartbeat, after=since)
    assert len(beats) == 3 and all(h.state == {"tasks": {"t": 1}} for h in beats)
    assert all(c.replicated == {"tasks": {"t": 1}} for c in net.live())
    since = net.mark()
    net.advance(T.heartbeat_interval)
    assert all(h.state is None for h in net.sends(a, Heartbeat, after=since))


def test_a_table_change_alone_sends_the_table_without_the_member_list():
    net, (a, b, c) = cluster(("a", 1), ("b", 0), ("c", 0))
    net.advance(T.heartbeat_interval)  # every member has acked the current list
    for n in (1, 2):
        a.set_replicated({"tasks": {"t": n}})
        since = net.mark()
        net.advance(T.heartbeat_interval)
        beats = net.sends(a, Heartbeat, after=since)
        assert len(beats) == 2 and all(h.members is None and h.state == {"tasks": {"t": n}}
                                       for h in beats)
        # ... and the ACK of that epoch settles it: the next round is empty again
        acks = net.sends(b, Ack, after=since) + net.sends(c, Ack, after=since)
        assert acks and all(k.epoch == a.members.epoch for k in acks)
        since = net.mark()
        net.advance(T.heartbeat_interval)
        assert all(h.state is None and h.members is None
                   for h in net.sends(a, Heartbeat, after=since))
    # A new member changes the list: it goes out again, with the table, to those who lack it.
    a.set_replicated({"tasks": {"t": 3}})
    joined = net.mark()
    d = net.node("d", 0, seeds=["a"])
    net.advance(T.heartbeat_interval)
    to_b = net.sends(a, Heartbeat, to=b, after=joined)
    assert to_b[0].members is not None and {m.name for m in to_b[0].members} == {
        "a", "b", "c", "d"}
    assert to_b[0].state == {"tasks": {"t": 3}}
    net.advance(T.heartbeat_interval)
    assert all(x.replicated == {"tasks": {"t": 3}} for x in (b, c, d))
    assert {m.name for m in d.member_list()} == {"a", "b", "c", "d"}


def test_one_heartbeat_object_per_kind_per_round_so_the_agent_encodes_it_once():
    net, (a, *_rest) = cluster(("a", 1), ("b", 0), ("c", 0), ("d", 0))
    net.advance(T.heartbeat_interval)
    a.set_replicated({"tasks": {"t": 1}})
    since = net.mark()
    net.advance(T.heartbeat_interval)
    beats = net.sends(a, Heartbeat, after=since)
    assert len(beats) == 3 and all(b is beats[0] for b in beats)


def test_members_acknowledge_each_heartbeat():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    since = net.mark()
    net.advance(T.heartbeat_interval)
    (beat,) = net.sends(a, Heartbeat, after=since)
    (ack,) = net.sends(b, Ack, after=since)
    assert (ack.seq, ack.epoch, ack.term) == (beat.seq, a.members.epoch, 1)


# --- failure detection and election --------------------------------------------------------------


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


# --- claims, terms and fencing -------------------------------------------------------------


def test_claims_are_ordered_by_term_then_priority_then_name():
    claims = [Claim(2, 0, "a", "x"), Claim(1, 9, "z", "x"), Claim(2, 0, "b", "x"),
              Claim(2, 1, "a", "x"), Claim(1, 9, "y", "x")]
    ordered = sorted(claims, key=lambda c: c.key)
    assert [(c.term, c.priority, c.name) for c in ordered] == [
        (1, 9, "y"), (1, 9, "z"), (2, 0, "a"), (2, 0, "b"), (2, 1, "a")]
    assert peer("a", 3).rank == (3, "a") and peer("a", 3).rank < peer("b", 3).rank


def test_a_follower_follows_the_highest_claim_in_term_priority_name_order():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    x = peer("x", 1)  # same term and priority as a, higher name
    net.do(b, Received(Coordinator(x, 1, Claim(1, 1, "x", addr("x")))))
    assert b.manager == "x"
    w = peer("w", 1)  # lower name: stale
    net.do(b, Received(Coordinator(w, 1, Claim(1, 1, "w", addr("w")))))
    assert b.manager == "x"
    y = peer("y", 0)  # higher term beats priority
    net.do(b, Received(Coordinator(y, 2, Claim(2, 0, "y", addr("y")))))
    assert (b.manager, b.term, b.highest_term) == ("y", 2, 2)


def test_a_higher_term_is_always_followed_and_the_old_manager_is_told():
    net, (a, b) = cluster(("a", 9), ("b", 5))
    low = peer("low", 0)
    claim = Claim(5, 0, "low", addr("low"))
    effects = net.do(b, Received(Coordinator(low, 5, claim)))
    assert (b.manager, b.term, b.highest_term) == ("low", 5, 5)
    assert ManagerChanged("low", 5, False) in effects
    told = [e for e in effects if isinstance(e, Send) and e.to == addr("a")]
    assert told and isinstance(told[0].msg, Coordinator) and told[0].msg.claim == claim
    # and the old manager, told, steps down to the higher term
    net.run()
    assert a.role is Role.FOLLOWER and a.manager == "low" and a.term == 5


def test_a_stale_claim_is_refused_and_its_sender_told_the_higher_claim():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    net.do(b, Received(Coordinator(peer("n", 0), 3, Claim(3, 0, "n", addr("n")))))
    assert b.manager == "n" and b.highest_term == 3
    old = peer("old", 50)
    for msg in (Heartbeat(old, 2, 1, 1), Coordinator(old, 2, Claim(2, 50, "old", addr("old")))):
        effects = net.do(b, Received(msg))
        assert b.manager == "n" and b.term == 3
        told = [e.msg for e in effects if isinstance(e, Send) and e.to == addr("old")]
        assert len(told) == 1 and isinstance(told[0], Coordinator)
        assert told[0].claim == Claim(3, 0, "n", addr("n"))
        assert not any(isinstance(e, ManagerChanged) for e in effects)
        assert not any(isinstance(e, Send) and isinstance(e.msg, Ack) for e in effects)


def test_a_resumed_old_manager_steps_down_at_its_first_heartbeat():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.down.add(addr("a"))  # pause a
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout)
    assert (b.role, b.term, c.manager) == (Role.MANAGER, 2, "b")
    net.down.discard(addr("a"))  # resume: a still believes it is the manager of term 1
    assert a.role is Role.MANAGER and a.term == 1
    net.advance(T.heartbeat_interval)
    assert net.agreed() == ("b", 2)
    assert a.highest_term == 2


def test_fencing_execute_from_a_stale_term_is_refused_a_current_one_delivered():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    run = Execute(a.me, 1, "t", "run-1", 7, {"n": 1}, 1000)
    assert net.do(b, Received(run)) == [Deliver(run)]
    net.do(b, Received(Coordinator(peer("n", 0), 2, Claim(2, 0, "n", addr("n")))))
    effects = net.do(b, Received(Execute(a.me, 1, "t", "run-2", 8, None, 1000)))
    assert not any(isinstance(e, Deliver) for e in effects)
    (send,) = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Result)]
    res = send.msg
    assert send.to == addr("a")
    assert (res.task, res.run_id, res.slot, res.outcome) == ("t", "run-2", 8, "refused")
    assert "stale term 1 < 2" in res.error and res.term == 2
    current = Execute(peer("n", 0), 2, "t", "run-3", 9, None, 1000)
    assert Deliver(current) in net.do(b, Received(current))


def test_accepts_is_the_fencing_rule():
    core = NodeCore(peer("me"), now=0.0, rng=random.Random(0))
    assert core.accepts(0, peer("anyone"))  # nothing seen yet
    core.handle(Received(Coordinator(peer("m", 5), 3, Claim(3, 5, "m", addr("m")))), 0.0)
    assert core.highest_term == 3
    assert core.accepts(3, peer("m", 5))
    assert core.accepts(4, peer("a", 0))
    assert core.accepts(3, peer("z", 5)) and core.accepts(3, peer("a", 6))
    assert not core.accepts(2, peer("m", 5))
    assert not core.accepts(3, peer("a", 5)) and not core.accepts(3, peer("z", 4))


def test_a_restarted_former_manager_does_not_preempt_its_successor():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.crash(a)
    net.node("a", 9, seeds=["c"], incarnation="a-2")  # restarts, follows b: no preemption
    net.advance(1.0)
    assert net.agreed() == ("b", 2)
    terms = [e.term for t, src, e in net.log if isinstance(e, ManagerChanged) and e.manager]
    assert max(terms) == 2


# --- membership through the core ------------------------------------------------------------------


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


def test_graceful_leave_of_a_follower():
    net, (a, b, c) = cluster(("a", 1), ("b", 0), ("c", 0))
    effects = net.do(b, LeaveRequested())
    assert [e.msg for e in effects if isinstance(e, Send)] == [Leave(b.me, 1)]
    assert effects[-1] == Stopped("left") and b.role is Role.STOPPED
    net.run()
    assert "b" not in a.members and MemberDown("b", "left") in net.effects(a, MemberDown)
    net.advance(T.heartbeat_interval * 2)
    assert "b" not in c.members
    assert a.role is Role.MANAGER and a.term == 1


def test_graceful_leave_of_the_manager_hands_over_to_the_highest_live_member():
    net, (a, b, c, d) = cluster(("a", 9), ("b", 5), ("c", 7), ("d", 1))
    net.crash(c)  # the highest-ranked member is dead: not chosen
    a.set_replicated({"tasks": {"t": {"slot": 41, "state": [1]}}})
    net.advance(T.heartbeat_interval)
    effects = net.do(a, LeaveRequested())
    (hand,) = [e for e in effects if isinstance(e, Send)]
    assert hand.to == addr("b") and isinstance(hand.msg, Handover)
    assert hand.msg.state == {"tasks": {"t": {"slot": 41, "state": [1]}}}
    assert "a" not in {m.name for m in hand.msg.members}
    assert a.role is Role.LEAVING
    net.run()
    assert b.role is Role.MANAGER and b.term == 2
    assert StateHandedOver("a", a.replicated, False) in net.effects(b, StateHandedOver)
    assert b.replicated == {"tasks": {"t": {"slot": 41, "state": [1]}}}
    assert net.sends(b, Coordinator, to=a)
    assert a.role is Role.STOPPED
    assert "handed over to b" in net.effects(a, Stopped)[-1].reason
    assert d.manager == "b" and d.term == 2
    net.advance(1.0)
    assert net.agreed() == ("b", 2)
    assert {m.name for m in b.member_list() if m.alive} == {"b", "d"}


def test_a_leaving_manager_without_members_stops_at_once():
    net = Net()
    a = net.node("a")
    effects = net.do(a, LeaveRequested())
    assert a.role is Role.STOPPED and isinstance(effects[-1], Stopped)
    assert "no member" in effects[-1].reason


def test_a_leaving_manager_whose_successor_is_silent_stops_after_the_handover_timeout():
    net, (a, b) = cluster(("a", 9), ("b", 5))
    net.down.add(addr("b"))
    net.do(a, LeaveRequested())
    assert a.role is Role.LEAVING
    assert a.next_deadline() == pytest.approx(net.now + T.handover_timeout)
    net.advance(T.handover_timeout - 0.001)
    assert a.role is Role.LEAVING
    net.advance(0.001)
    assert a.role is Role.STOPPED and "did not confirm" in net.effects(a, Stopped)[-1].reason


def test_a_stale_handover_is_not_taken_as_a_graceful_leave():
    # a was paused, b took over with term 2; a then hands over (term 1) to c, a follower of b.
    net, (a, b, c, d) = cluster(("a", 9), ("b", 7), ("c", 5), ("d", 1))
    net.down.add(addr("a"))
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout)
    assert net.agreed() == ("b", 2)
    members = tuple(m for m in a.member_list() if m.name != "a")
    net.do(c, Received(Handover(a.me, 1, members, {"stale": True})))
    assert c.role is Role.FOLLOWER and c.manager == "b" and c.term == 2
    assert c.replicated != {"stale": True}
    assert not net.effects(c, StateHandedOver)
    net.run()
    net.advance(1.0)
    assert net.agreed() == ("b", 2)


def test_leave_of_the_manager_seen_by_a_follower_starts_an_election():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.do(b, Received(Leave(a.me, 1)))
    assert b.role in (Role.CANDIDATE, Role.MANAGER)


def test_two_managers_meeting_the_lower_hands_over_and_follows():
    net = Net()
    a = net.node("a", 1)
    b = net.node("b", 0, seeds=["a"])
    z = net.node("z", 9, seeds=["a"], start=False)
    net.partition([z], [a, b])
    net.do(z, Start())
    net.run()
    net.advance(T.join_timeout + T.election_timeout)
    assert z.role is Role.MANAGER and z.term == 1 and a.role is Role.MANAGER and a.term == 1
    a.set_replicated({"from": "a"})
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 3)  # z probes its seed a
    assert net.agreed() == ("z", 1)
    hand = net.sends(a, Handover, to=z)
    assert len(hand) == 1 and hand[0].state == {"from": "a"}
    assert {m.name for m in hand[0].members} == {"a", "b"}
    assert StateHandedOver("a", {"from": "a"}, True) in net.effects(z, StateHandedOver)
    assert {m.name for m in z.member_list()} == {"a", "b", "z"}


def test_two_managers_same_term_resolve_directly():
    net = Net()
    lo = net.node("lo", 1)
    hi = net.node("hi", 2)
    effects = net.do(hi, Received(Coordinator(lo.me, 1, lo.manager_claim)))
    told = [e.msg for e in effects if isinstance(e, Send)]
    assert told == [Coordinator(hi.me, 1, hi.manager_claim)]  # the lower one is told
    assert hi.role is Role.MANAGER
    net.run()
    assert lo.role is Role.FOLLOWER and lo.manager == "hi"
    assert net.sends(lo, Handover, to=hi)


def test_a_member_marked_dead_by_a_disconnect_is_revived_by_its_next_ack():
    net, (a, b) = cluster(("a", 9), ("b", 5))
    net.do(a, PeerDown(addr("b")))  # the connection flapped; b lives on
    assert not a.members.get("b").alive
    net.advance(T.heartbeat_interval * 2)
    assert a.members.get("b").alive
    ups = net.effects(a, MemberUp)
    assert ups[-1].how == "revived" and ups[-1].info.name == "b" and ups[-1].info.alive
    assert net.agreed() == ("a", 1)


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


def test_a_member_unknown_to_the_manager_is_told_to_join():
    net = Net()
    a = net.node("a")
    effects = net.do(a, Received(Ack(peer("ghost"), 1, 0, -1)))
    (send,) = [e for e in effects if isinstance(e, Send)]
    assert send.to == addr("ghost") and isinstance(send.msg, Heartbeat)
    assert send.msg.members is not None


def test_deliver_passes_status_and_results_up():
    net = Net()
    a = net.node("a")
    status = Status(peer("client"), 0)
    assert net.do(a, Received(status)) == [Deliver(status)]
    res = Result(peer("w"), 1, "t", "r", 1, "ok")
    assert net.do(a, Received(res)) == [Deliver(res)]


# --- status and deadlines -------------------------------------------------------------------


def test_status_shape_is_json_ready():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    st = b.status()
    assert set(st) == {"node", "role", "manager", "term", "highest_term", "members"}
    assert (st["node"], st["role"], st["manager"], st["term"], st["highest_term"]) == (
        "b", "follower", "a", 1, 1)
    assert [m["name"] for m in st["members"]] == ["a", "b"]
    assert set(st["members"][0]) == {"name", "address", "alive", "priority", "incarnation",
                                     "tasks"}
    assert st["members"][0]["address"] == addr("a") and st["members"][0]["tasks"] == []
    assert json.loads(json.dumps(st)) == st
    assert decode(encode(StatusReply(b.me, 1, st))).status == st
    assert a.status()["role"] == "manager"


@pytest.mark.parametrize("role", ["joining", "follower", "candidate-wait", "candidate-ok",
                                  "candidate-coord", "manager", "leaving", "stopped"])
def test_next_deadline_is_never_in_the_past_and_ticks_move_it(role):
    net = Net()
    if role == "joining":
        core = net.node("a", 0, seeds=["nobody"])
    elif role == "follower":
        net, (_m, core) = cluster(("m", 9), ("a", 0))
    elif role.startswith("candidate"):
        net, (m, x, core) = cluster(("m", 9), ("x", 5), ("a", 0))
        net.down.update({addr("m"), addr("x")})
        net.do(core, PeerDown(addr("m")))
        if role == "candidate-wait":
            assert core._phase == "wait"
        else:
            net.now = core.next_deadline()
            net.do(core, Tick())
            assert core._phase == "ok"
            if role == "candidate-coord":
                net.do(core, Received(Ok(x.me, 1, None)))
                assert core._phase == "coord"
        net.queue.clear()
    elif role == "manager":
        net, (core, _b) = cluster(("a", 9), ("b", 0))
    elif role == "leaving":
        net, (core, b) = cluster(("a", 9), ("b", 0))
        net.down.add(addr("b"))
        net.do(core, LeaveRequested())
    else:
        net = Net()
        core = net.node("a")
        net.do(core, LeaveRequested())
    assert str(core.role) == role.split("-")[0]
    assert core.next_deadline() >= net.now
    # tick it at its deadlines a few times: each tick must push the deadline forward
    previous = net.now
    for _ in range(20):
        due = core.next_deadline()
        if due == INF:
            break
        assert due >= previous
        net.now = due
        net.do(core, Tick())
        net.queue.clear()  # nobody answers
        assert core.next_deadline() > due
        previous = due
    # and a tick at any time in between does not leave a deadline in the past
    net.do(core, Tick())
    assert core.next_deadline() >= net.now


def test_handle_after_stopped_does_nothing():
    net = Net()
    a = net.node("a")
    net.do(a, LeaveRequested())
    for event in (Tick(), Start(), PeerDown("x:1"), LeaveRequested(),
                  Received(Join(peer("b"), 0))):
        assert a.handle(event, net.now + 1) == []


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
    assert c2.role is Role.MANAGER and c2.term == 1
    net.advance(5.0)  # faults are over, every message arrives: one manager must emerge
    assert net.agreed() is not None, [(x.me.name, x.role, x.term) for x in net.live()]


def test_a_partition_heals_after_failovers_on_both_sides():
    net = Net()
    a = net.node("a", 9)
    b = net.node("b", 5, seeds=["a"])
    c = net.node("c", 3, seeds=["a"])
    d = net.node("d", 1, seeds=["c"])
    net.advance(T.heartbeat_interval * 3)
    assert net.agreed() == ("a", 1)
    net.partition([a, b], [c, d])
    net.advance(T.manager_timeout + 2 * T.election_timeout + T.member_timeout + 0.5)
    assert (a.role, c.role) == (Role.MANAGER, Role.MANAGER)  # each side dropped the other
    net.crash(a)  # both managers die; their successors never lost anyone themselves
    net.crash(c)
    net.advance(T.election_timeout)
    assert (b.role, d.role) == (Role.MANAGER, Role.MANAGER)
    net.heal()  # b and d can talk again, and were members of one cluster a few seconds ago
    net.advance(10.0)
    assert net.agreed() is not None, [(x.me.name, x.role, x.term) for x in net.live()]


def test_a_stale_handover_is_not_forwarded_in_a_loop():
    # Two followers that (transiently) follow each other: a follows a claim of d's previous
    # incarnation, while d, restarted, follows a's old claim. Found by a random fault search.
    net = Net()
    a = net.node("a", 1, seeds=["x"], start=False)
    d = net.node("d", 3, seeds=["x"], incarnation="d-2", start=False)
    x = peer("x", 0)
    net.do(a, Received(Coordinator(x, 2, Claim(2, 3, "d", addr("d")))))
    net.do(d, Received(Coordinator(x, 1, Claim(1, 1, "a", addr("a")))))
    assert (a.manager, d.manager) == ("d", "a")
    net.queue.clear()
    stale = Handover(peer("s", 0), 1, (), {"state": "of a stale manager"})
    net.do(a, Received(stale))
    mark = net.mark()
    net.run(limit=1000)  # raises "message storm" if the HANDOVER keeps circulating
    assert len(net.log) - mark < 20


# --- timings -------------------------------------------------------------------------------


def test_default_timings_follow_their_stated_reasoning():
    t = Timings()
    assert t.manager_timeout == pytest.approx(7 * t.heartbeat_interval)
    assert t.manager_timeout + t.election_timeout < 1.0  # a paused manager replaced in ~1 s
    assert 2 * t.heartbeat_interval < t.vouch_window < t.manager_timeout
    assert t.member_timeout > t.manager_timeout
    assert t.election_timeout < t.coordinator_timeout


@pytest.mark.parametrize(
    "kwargs",
    [{"heartbeat_interval": 0}, {"manager_timeout": -1}, {"election_timeout": True},
     {"member_timeout": "2"}, {"manager_timeout": 0.2}, {"member_timeout": 0.15},
     {"heartbeat_interval": 1.0}],
    ids=["zero", "negative", "bool", "str", "manager<=2hb", "member<=2hb", "hb-too-long"],
)
def test_invalid_timings_are_refused(kwargs):
    with pytest.raises(ValueError, match="timing"):
        Timings(**kwargs)


def test_custom_timings_drive_the_core():
    fast = Timings(heartbeat_interval=0.01, manager_timeout=0.05, election_timeout=0.01)
    core = NodeCore(peer("a"), now=0.0, rng=random.Random(0), timings=fast)
    core.handle(Start(), 0.0)
    assert core.next_deadline() == pytest.approx(0.01)


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


def test_a_lost_member_is_still_probed_after_its_manager_steps_down():
    net = Net()
    d = net.node("d", 1)
    e = net.node("e", 0, seeds=["d"])
    net.advance(T.heartbeat_interval * 3)
    net.crash(e)
    net.advance(T.member_timeout + 2 * T.heartbeat_interval)  # d drops e, keeps probing e:7400
    e2 = net.node("e", 0, seeds=["x"], incarnation="e-2", start=False)  # back, seed gone
    g = net.node("g", 5, seeds=["d"], start=False)
    net.partition([e2], [d, g])
    net.partition([g], [d])
    net.do(e2, Start())
    net.do(g, Start())
    net.run()
    net.advance(T.join_timeout + 0.01)
    assert (e2.role, g.role, d.role) == (Role.MANAGER,) * 3
    net.cut.discard(frozenset((addr("g"), addr("d"))))
    net.advance(T.probe_interval + 3 * T.heartbeat_interval)  # g's probe: d hands over to g
    assert d.manager == "g"
    net.heal()  # only d ever knew where e is, and d is a follower now
    net.advance(10.0)
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
