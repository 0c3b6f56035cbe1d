"""A manager and the OFFER and RESULTs of a node that left as a member, which it does not list
(clerk._leftoffers): the pure rule, the memory of such nodes, and the core's LEAVE from one."""

from clerk._core import LeaveRequested, LeftUnlisted, Received
from clerk._leftoffers import (
    MAX_LEFT_SENDERS,
    REMEMBER_S,
    TELL_EVERY_S,
    LeftSenders,
    OfferKind,
    is_recorded,
    offer_kind,
)
from clerk._messages import Leave, Peer
from tests.unit.corenet import cluster


def test_which_offers_a_node_takes() -> None:
    """A member's is merged; a non-member's at our term held (a joiner offers as soon as it
    follows us, maybe before its JOIN comes); below it, in default mode, a node that left's
    (merged); above it, or below in quorum mode, or to a node that is not a manager, none."""
    assert offer_kind(True, True, False, 3, 3) is OfferKind.MEMBER
    assert offer_kind(True, False, False, 1, 3) is OfferKind.MEMBER  # (on_offer decides)
    assert offer_kind(False, True, False, 3, 3) is OfferKind.HOLD
    assert offer_kind(False, True, True, 3, 3) is OfferKind.HOLD
    assert offer_kind(False, True, False, 2, 3) is OfferKind.LEFT
    assert offer_kind(False, True, True, 2, 3) is OfferKind.DROP
    assert offer_kind(False, True, False, 4, 3) is OfferKind.DROP
    assert offer_kind(False, False, False, 2, 3) is OfferKind.DROP
    # Only a node our data directory recorded as a member (at that address): never a
    # stranger's rows (without CURVE anyone can send an OFFER).
    assert offer_kind(False, True, False, 2, 3, recorded=False) is OfferKind.DROP
    assert offer_kind(False, True, False, 3, 3, recorded=False) is OfferKind.HOLD
    assert is_recorded({"a": "a:7400"}, peer("a"))
    assert not is_recorded({"a": "a:7400"}, Peer("a", "evil:1", "i1", 0))
    assert not is_recorded({}, peer("a"))


def peer(name: str, incarnation: str = "i1") -> Peer:
    return Peer(name, f"{name}:7400", incarnation, 0)


def test_a_node_that_left_is_remembered_by_incarnation_for_a_while() -> None:
    left = LeftSenders()
    a = peer("a")
    assert not left.admits(a, 0.0)
    left.add(a, 10.0)
    assert left.admits(a, 10.0) and left.admits(a, 10.0 + REMEMBER_S - 0.01)
    assert not left.admits(a, 10.0 + REMEMBER_S)  # (it gave its results up by then)
    assert not left.admits(peer("a", "i2"), 11.0)  # another life of it: not this one
    for i in range(MAX_LEFT_SENDERS):
        left.add(peer(f"n{i}"), 12.0)
    assert not left.admits(a, 12.0)  # (the oldest went first)
    assert left.admits(peer(f"n{MAX_LEFT_SENDERS - 1}"), 12.0)
    left.clear()
    assert not left.admits(peer("n0"), 12.0)


def test_a_refused_node_is_told_our_claim_once_a_second() -> None:
    left = LeftSenders()
    a, b = peer("a"), peer("b")
    assert left.tell(a, 5.0) and not left.tell(a, 5.0 + TELL_EVERY_S / 2)
    assert left.tell(b, 5.1)
    assert left.tell(a, 5.0 + TELL_EVERY_S)


def test_a_leave_from_a_node_a_manager_does_not_list() -> None:
    """Default mode: the manager's core hands the task layer a LEAVE from a node it does not
    list (``LeftUnlisted``: maybe a node that left, after its OFFER); not counted as a bad
    frame there (the task layer counts it when it held no OFFER of it). A follower drops it
    as before."""
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    stranger = peer("z", "zz")
    assert net.do(a, Received(Leave(stranger, 1))) == [LeftUnlisted(stranger)]
    assert "not_member" not in a.dropped
    assert net.do(b, Received(Leave(stranger, 1))) != [LeftUnlisted(stranger)]
    assert b.dropped["not_member"] == 1
    # A member's LEAVE is a member's, as before.
    net.do(c, LeaveRequested())
    net.run()
    assert "c" not in a.members
