"""Claims and the term bound (:mod:`clerk._claims`): the claim order, following the highest
claim, stale claims and EXECUTE fencing (through NodeCore on :mod:`tests.unit.corenet`), and
the term bound as a small object on its own (the hostile cases are in test_security.py)."""

import random

from clerk._claims import MAX_TERM_JUMP, TermBound, claim_of, message_term
from clerk._core import (
    Deliver,
    ManagerChanged,
    NodeCore,
    Received,
    Role,
    Send,
)
from clerk._messages import (
    Ack,
    Claim,
    Coordinator,
    Execute,
    Heartbeat,
    Ok,
    Result,
)
from tests.unit.corenet import T, addr, cluster, peer


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


# --- the term bound on its own --------------------------------------------------------------


def test_claim_of_and_message_term():
    a = peer("a", 3)
    assert claim_of(a, 7) == Claim(7, 3, "a", addr("a"))
    assert message_term(Heartbeat(a, 4, 1, 1)) == 4
    # A relayed claim counts with its own term: COORDINATOR's claim, WELCOME's and OK's manager.
    assert message_term(Coordinator(a, 2, Claim(9, 0, "b", addr("b")))) == 9
    assert message_term(Ok(a, 5, Claim(1, 0, "b", addr("b")))) == 5
    assert message_term(Ok(a, 5, None)) == 5


def test_only_messages_without_a_claim_field_skip_the_claim_lookup():
    """message_term's fast path (a class with none of the fields that relay a claim) is
    taken by exactly the message kinds that have none: every other kind looks its claim up."""
    import dataclasses

    from clerk import _claims
    from clerk._messages import MESSAGE_KINDS

    for kind, cls in MESSAGE_KINDS.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert _claims._plain(cls) == (not names & set(_claims._CLAIM_FIELDS)), kind
    assert not _claims._plain(object)  # (not a dataclass: the full lookup)


def test_the_term_bound_admits_up_to_the_jump_above_the_highest_term_seen():
    bound = TermBound(jump=10)
    assert bound.limit(5) == 15
    assert bound.admits(15, max_term=5, now=0.0, interval=1.0)
    assert bound.horizon == 0  # an admitted term does not move the horizon


def test_a_refused_term_moves_the_horizon_by_one_jump_per_interval():
    bound = TermBound(jump=10)
    assert not bound.admits(100, max_term=5, now=0.0, interval=1.0)
    assert (bound.horizon, bound.horizon_at) == (15, 0.0)
    assert not bound.admits(100, max_term=5, now=0.5, interval=1.0)
    assert bound.horizon == 15  # within the interval: no second move
    assert not bound.admits(100, max_term=5, now=1.0, interval=1.0)
    assert bound.horizon == 25
    # The horizon is a floor under the highest term seen, not a replacement for it.
    assert bound.limit(5) == 35 and bound.limit(40) == 50


def test_a_far_term_is_reached_only_after_enough_intervals():
    bound, now, target = TermBound(jump=10), 0.0, 95
    while not bound.admits(target, max_term=0, now=now, interval=1.0):
        now += 1.0
    assert now == 9.0  # 10 per interval: admitted once the limit reaches 95 (90 + 10)


def test_the_default_jump_is_the_module_constant():
    assert TermBound().jump == MAX_TERM_JUMP == 1 << 20
