"""A manager and the OFFER and RESULTs of a node that left as a member, which it does not list.

A node that left as a member with a run in flight or a result no manager acknowledged keeps
them, bounded (``LEAVE_ACK_WAIT``), and gives them to a manager it hears of that may lack them
(:mod:`clerk._leftmember`, ``LeftHeard``): its OFFER (its rows, from its replica, and its runs
in flight: :mod:`clerk._offerruns`), its results, then its LEAVE. That manager often does not
list it: the nodes came back after a full stop without it (it was the last one up, and left).
Before, such a manager took none of it:

* the OFFER, at a term below ours (the node's term is the claim it followed), was dropped as
  a stranger's (``offer_not_member``); at our term (the claim's holder restarted and took the
  very same claim again) it was held as a joining node's until that node joined, never;
* the RESULTs were dropped (``result_not_member``): the run is in no row of this table.

So the run's update was lost, or, with the rows of an older copy and the result of a run that
continued a newer lineage, dropped as a conflict: the count repeated (on real processes:
tests/integration/test_last_node_up_leaves.py). The rule (:func:`offer_kind`, default mode):

* a member's OFFER: merged, as before;
* a non-member's at our term: held until it joins (a node offers as soon as it follows us,
  which may be before its JOIN reaches us), or until its LEAVE comes (``LeftUnlisted``: a
  node that left, whose OFFER went at our term), then merged as a node that left's;
* a non-member's below our term: a node that left (a joining node offers at our term):
  merged, rows by lineage and version as any merge (a stale row changes nothing), and its
  runs in flight adopted (so no slot goes beside them and their results count);
* but only from a node our data directory recorded as a member, at that address
  (``CoreState.recorded``: the nodes that come back after a full stop recorded the one that
  was last up), never a stranger's rows (without CURVE anyone can send an OFFER);
* its RESULTs then pass as a member's would (:class:`LeftSenders`, that incarnation, for
  ``REMEMBER_S``): a result for a run this table never showed counts if it continues the row
  (``Running._unseen_run``), else it is dropped as a conflict, counted, as before;
* a RESULT refused from a non-member that our data directory recorded as a member, at that
  address (``CoreState.recorded``), gets our claim (a COORDINATOR, once a second at most):
  a node that left sends its results to the claim it knows, which a restart may have given
  the same key (:mod:`clerk._leftmember`, "A claim's holder restarted"). Never a stranger
  (a forged RESULT would make us connect where it says), and the sender gains no trust by
  it (not ``CoreState.tell``: a merge HANDOVER or a REFUSE from it stays refused).

Quorum mode is unchanged: a member's OFFER is an answer only there, and a node that left keeps
its results in its outbox for a manager it follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from clerk._messages import Peer

__all__ = ["MAX_LEFT_SENDERS", "REMEMBER_S", "TELL_EVERY_S", "LeftSenders", "OfferKind",
           "is_recorded", "offer_kind"]

#: How long a node whose OFFER was merged as a node that left's has its RESULTs taken (s):
#: longer than it keeps them (``clerk._routing.LEAVE_ACK_WAIT``, 10 s from its leave).
REMEMBER_S = 15.0
#: At most this many such nodes are remembered (the oldest go first).
MAX_LEFT_SENDERS = 64
#: A non-member whose RESULT was refused gets our claim at most once per this many seconds.
TELL_EVERY_S = 1.0


class OfferKind(StrEnum):
    MEMBER = "member"  # merged as a member's
    HOLD = "hold"  # kept until it joins, or until its LEAVE (a node that left)
    LEFT = "left"  # merged as a node that left's
    DROP = "drop"


def offer_kind(member: bool, manager: bool, quorum: bool, term: int, our_term: int,
               recorded: bool = True) -> OfferKind:
    """What a node does with an OFFER (see the module docstring): ``member``, from a member
    (that incarnation); ``manager``, this node is one; ``quorum``, quorum mode; ``term``, the
    OFFER's; ``our_term``, this node's; ``recorded``, its sender is a member our data
    directory recorded, at that address (only such a node's is merged as a node that left's:
    never a stranger's rows)."""
    if member:
        return OfferKind.MEMBER
    if not manager:
        return OfferKind.DROP
    if term == our_term:
        return OfferKind.HOLD
    if not quorum and recorded and term < our_term:
        return OfferKind.LEFT
    return OfferKind.DROP


def is_recorded(recorded: Mapping[str, str], sender: Peer) -> bool:
    """Did our data directory record ``sender`` as a member, at its address
    (``CoreState.recorded``)?"""
    return recorded.get(sender.name) == sender.address


class LeftSenders:
    """The nodes whose OFFER a manager merged as a node that left's: their RESULTs are taken
    (that incarnation, ``REMEMBER_S`` from the OFFER), and the nodes a refused RESULT came
    from, told our claim (``TELL_EVERY_S``)."""

    def __init__(self) -> None:
        self._left: dict[str, tuple[str, float]] = {}  # name -> (incarnation, until)
        self._told: dict[str, float] = {}  # name -> when we last told it our claim

    def add(self, sender: Peer, now: float) -> None:
        self._left.pop(sender.name, None)
        self._left[sender.name] = (sender.incarnation, now + REMEMBER_S)
        while len(self._left) > MAX_LEFT_SENDERS:
            del self._left[next(iter(self._left))]

    def admits(self, sender: Peer, now: float) -> bool:
        """Is ``sender`` a node that left whose OFFER we merged (that incarnation, lately)?"""
        entry = self._left.get(sender.name)
        return entry is not None and entry[0] == sender.incarnation and now < entry[1]

    def tell(self, sender: Peer, now: float) -> bool:
        """Should a refused RESULT's ``sender`` get our claim now (once per ``TELL_EVERY_S``)?"""
        last = self._told.get(sender.name)
        if last is not None and now - last < TELL_EVERY_S:
            return False
        self._told.pop(sender.name, None)
        self._told[sender.name] = now
        while len(self._told) > MAX_LEFT_SENDERS:
            del self._told[next(iter(self._told))]
        return True

    def clear(self) -> None:
        self._left.clear()
        self._told.clear()
