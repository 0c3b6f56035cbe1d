"""The simulated manager's side of the members' OFFERs (:mod:`clerk._simtasks`), as the real
agent's (:mod:`clerk._agentreplies`, :mod:`clerk._replication`, :mod:`clerk._leftoffers`):

* a member's OFFER is merged (its rows, and its runs in flight adopted: clerk._offerruns);
* a non-member's at our term is held until its node joins (``MemberUp``), or its LEAVE comes
  (``LeftUnlisted``: then merged as a node that left's, from a node our data directory
  recorded);
* a recorded node that left, below our term: merged as a node that left's, its RESULTs
  taken for a while (``LeftSenders``); any other: dropped.

Split out of :mod:`clerk._simtasks` to keep each module under ~600 lines.
:class:`LedgerOffers` is a mixin of :class:`clerk._simtasks.LedgerLayer`: the attributes it
declares are the layer's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clerk._leftoffers import LeftSenders, OfferKind, is_recorded, offer_kind
from clerk._messages import Offer
from clerk._offerjob import OfferParts
from clerk._offerruns import adopt_runs, offered_runs
from clerk._simattrs import LedgerAttrs

if TYPE_CHECKING:
    pass

__all__ = ["LedgerOffers"]


class LedgerOffers(LedgerAttrs):
    """A node's handling of the OFFERs it gets as manager (see the module docstring)."""

    offer_parts: OfferParts
    left_senders: LeftSenders
    _held_offers: dict[str, list[Offer]]

    if TYPE_CHECKING:  # (the layer's)
        def wall(self) -> float: ...

        def _member(self, sender: Any) -> bool: ...

    def _on_offer(self, msg: Offer) -> bool:
        """An OFFER to this node, a manager; True if the table changed."""
        core = self.node.core
        kind = offer_kind(self._member(msg.sender), True, core.quorum is not None, msg.term,
                          core.term, is_recorded(core.recorded, msg.sender))
        if not self.world.left_offers and kind is OfferKind.LEFT:
            kind = OfferKind.DROP
        if self.world.agent_filters and kind is OfferKind.DROP:
            return False  # (as the real agent: offer_not_member)
        if self.world.agent_filters and kind is OfferKind.HOLD:
            # As the real agent: held until its node joins (MemberUp), or its LEAVE comes
            # (LeftUnlisted: then merged as a node that left's).
            self._held_offers.setdefault(msg.sender.name, []).append(msg)
            return False
        if kind is OfferKind.LEFT:  # (as the real agent: on_left_offer)
            self.left_senders.add(msg.sender, self.net.now)
        return self._merge_offer(msg)

    def _merge_offer(self, msg: Offer) -> bool:
        """A member's OFFER, or a node that left's (as the real runner's ``on_offer``)."""
        core = self.node.core
        changed = self.scheduler.merge(msg.state, self.wall(), source=msg.sender.name)
        if self.world.offer_runs and core.quorum is None:
            changed |= adopt_runs(self.scheduler, offered_runs(msg.state),
                                  msg.sender.name, self.wall(),
                                  as_sent=True)  # (clerk._offerruns)
        if not self.world.whole_offers or self.offer_parts.add(msg.sender, msg.term,
                                                                msg.state):
            self.scheduler.offer_from(msg.sender.name)
        return changed

    def _release_offers(self, sender: Any, left: bool) -> bool:
        """The OFFERs held from ``sender`` (that incarnation): merged once it joined, or, as a
        node that left's, once its LEAVE came (``left``: remembered, its RESULTs taken)."""
        held = [m for m in self._held_offers.pop(sender.name, [])
                if m.sender.incarnation == sender.incarnation]
        if not held or not self.node.core.is_manager:
            return False
        if left:
            self.left_senders.add(sender, self.net.now)
        changed = False
        for msg in held:
            changed |= self._merge_offer(msg)
        return changed
