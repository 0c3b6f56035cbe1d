"""A core that left as a member, stopped, while its result had no manager to go to
(clerk._core, "A node that left"; the task layer's side: clerk._routing,
``left_results_taken``)."""

from dataclasses import replace

import pytest

from clerk import _leftmember
from clerk._core import Deliver, LeaveRequested, LeftHeard, Received, Role, Send, Stopped
from clerk._messages import Claim, Coordinator, Leave, ResultAck
from tests.unit.corenet import addr, cluster


def test_a_member_that_left_hears_the_next_manager_and_its_acks():
    """A member that left while its manager was dead (its LEAVE went nowhere) keeps its
    result until a manager acknowledges it (clerk._routing, ``left_results_taken``): its
    stopped core delivers a RESULT_ACK from a manager at least as recent as the highest
    claim it knows (not an older one's), and a COORDINATOR above that claim raises it and
    tells the task layer (``LeftHeard``: its OFFER and results go there, then its LEAVE,
    ``leave_again``: that manager still lists it); a lower or repeated claim changes
    nothing. A manager that left and stopped is told nothing and sends no LEAVE."""
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    net.crash(a, notify=False)
    effects = net.do(c, LeaveRequested())
    assert effects[-1] == Stopped("left") and c.role is Role.STOPPED
    assert c.highest is not None and c.highest.name == "a"
    old_ack = ResultAck(a.me, 0, "t", "r1")
    assert net.do(c, Received(old_ack)) == []
    ack = ResultAck(a.me, 1, "t", "r1")
    assert net.do(c, Received(ack)) == [Deliver(ack)]
    claim = Claim(2, 1, "b", addr("b"))
    effects = net.do(c, Received(Coordinator(b.me, 2, claim)))
    assert effects == [LeftHeard("b", addr("b"))] and c.highest == claim
    assert c.leave_again(addr("b")) == [Send(addr("b"), Leave(c.me, 1))]
    assert net.do(c, Received(Coordinator(b.me, 2, claim))) == []  # (again: nothing)
    forged = Claim(3, 1, "b", addr("b"))  # a claim in another node's name
    assert net.do(c, Received(Coordinator(a.me, 3, forged))) == [] and c.highest == claim
    ack2 = ResultAck(b.me, 2, "t", "r2")
    assert net.do(c, Received(ack2)) == [Deliver(ack2)]
    assert net.do(c, Received(ResultAck(a.me, 1, "t", "r3"))) == []  # below b's claim
    # A manager that stopped after leaving does not send a LEAVE to a later claim.
    net2, (x, y) = cluster(("x", 1), ("y", 0))
    net2.do(y, LeaveRequested())
    net2.run()
    net2.do(x, LeaveRequested())
    assert x.role is Role.STOPPED
    assert net2.do(x, Received(Coordinator(y.me, 5, Claim(5, 0, "y", addr("y"))))) == []
    assert x.leave_again(addr("y")) == []


def test_a_member_that_left_tells_a_lower_claim_the_one_it_knows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The last node up left knowing b's claim at term 2; the nodes that come back forgot
    it and a claims at term 1 (clerk._leftmember, "A lower claim is told the higher one"):
    the stopped core answers a's COORDINATOR with b's claim (a then follows it, and the
    manager above it gets its OFFER, results and LEAVE). Only from the claim's holder, only
    below ``highest``, not a lone claim; a manager that left tells nothing. Before
    (``TELL_LOWER_CLAIMS = False``): nothing, and the result waited out its bound."""
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    net.crash(a, notify=False)
    net.do(c, LeaveRequested())
    claim = Claim(2, 1, "b", addr("b"))
    assert net.do(c, Received(Coordinator(b.me, 2, claim))) == [LeftHeard("b", addr("b"))]
    lower = Claim(1, 2, "a", addr("a"))
    told = Send(addr("a"), Coordinator(c.me, c.term, claim))
    assert net.do(c, Received(Coordinator(a.me, 1, lower))) == [told] and c.highest == claim
    relayed = Coordinator(b.me, 2, lower)  # (not from its holder: nothing)
    assert net.do(c, Received(relayed)) == []
    lone = Claim(0, 2, "a", addr("a"))  # (a came back alone: it could only claim at 0 again)
    assert net.do(c, Received(Coordinator(a.me, 0, lone))) == []
    monkeypatch.setattr(_leftmember, "TELL_LOWER_CLAIMS", False)
    assert net.do(c, Received(Coordinator(a.me, 1, lower))) == []
    monkeypatch.undo()
    net2, (x, y) = cluster(("x", 1), ("y", 0))
    net2.do(y, LeaveRequested())
    net2.run()
    net2.do(x, LeaveRequested())
    assert x.role is Role.STOPPED and x.highest is not None
    low = Claim(0, 0, "y", addr("y"))
    assert net2.do(x, Received(Coordinator(y.me, 0, low))) == []


def test_a_member_that_left_hears_the_same_claim_from_a_restarted_holder() -> None:
    """The last node up left following b at term 1; b restarted (a restart forgets its terms)
    and claims the very same key again, from a table that lacks the run and result c holds
    (clerk._leftmember, "A claim's holder restarted"): its COORDINATOR from the new
    incarnation is a new manager (``LeftHeard``: the OFFER, results and LEAVE go to it), once;
    the same claim from the incarnation c followed changes nothing, as before. On real
    processes the returning nodes handed the table to the holder at that term, and the
    result went to it, refused, until c gave it up (tests/integration/
    test_last_node_up_leaves.py)."""
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    net.crash(a, notify=False)
    net.advance(3.0)  # (b takes over: c follows it)
    assert c.highest is not None and c.highest.name == "b"
    claim = c.highest
    net.do(c, LeaveRequested())
    assert c.role is Role.STOPPED
    assert net.do(c, Received(Coordinator(b.me, claim.term, claim))) == []  # (b, as followed)
    reborn = replace(b.me, incarnation=b.me.incarnation + "-2")
    heard = net.do(c, Received(Coordinator(reborn, claim.term, claim)))
    assert heard == [LeftHeard("b", claim.address)] and c.highest == claim
    assert net.do(c, Received(Coordinator(reborn, claim.term, claim))) == []  # (once)
