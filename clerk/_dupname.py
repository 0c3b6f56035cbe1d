"""Duplicate names: a second node that calls itself by the name of a live member.

Two processes started with one configuration on two hosts (or a node started again at another
address while its old process still runs) share a name but not an address or an incarnation.
Names are the identity the whole protocol orders by (claims are ``(term, priority, name)``,
member rows, voters), so the second one must never take part: it never becomes, nor stays,
anyone's manager, and never displaces the cluster's. The live member keeps its name. Rules:

* **Who holds a name.** A node at ``address`` calling itself ``name`` is a duplicate, for this
  node, when this node's member table holds ``name`` alive at another address (a manager:
  also heard from within ``member_timeout``, the admission rule of :mod:`clerk._membership`),
  or ``name`` is this node's own name at another address (:func:`holder_of`). A node
  restarted at its own address is not one (the old process cannot hold the port), nor is a
  member whose row is dead or silent (it is replaced, as a JOIN would replace it).
* **Nothing from a duplicate counts** (:func:`from_duplicate`). A manager's or a candidate's
  message from one (COORDINATOR, HEARTBEAT, WELCOME, OK, ELECTION, EXECUTE, HANDOVER, ACK,
  LEAVE, quorum mode's votes) is dropped (``Dropped("duplicate_name")``) before its term is
  even seen, and the sender is sent a REFUSE that names the name and both addresses (at most
  once per ``heartbeat_interval`` per address). A claim held at a duplicate's address and
  relayed by a third node is never followed either (:func:`duplicate_claim`,
  :func:`clerk._election.on_claim`). JOIN keeps its own path: a manager refuses a duplicate
  by admission, anyone else WELCOMEs it with the claim it follows, whose holder refuses it.
* **A duplicate stops on its refusal** (:func:`clerk._joining.m_refuse`): a REFUSE from its
  manager, from a seed while it joins or is a candidate, and, while it is a manager of
  nobody (no live member acknowledged its claim or joined under it), from a seed or a node
  it sent its claim to. That last case
  is a duplicate that ran out of ``join_timeout`` before any seed answered (a slow start on
  a loaded machine) and elected itself: before this rule its claim, at the cluster's term
  and with a name above the manager's, won the merge, and the cluster followed it (and
  handed it its table) until it was refused, ~25 s later. (Such a claim is a lone one now,
  at term 0, below the cluster's: :mod:`clerk._claims`; these rules hold at any term, for a
  duplicate of an older build, or one that had been part of a cluster.)

A manager that manages members is not stopped by a seed's REFUSE: two clusters that each
hold a node of one name (a node started again elsewhere during a partition) do not merge
while both live; each keeps its own.
"""

from __future__ import annotations

from clerk._corestate import MAX_LOST, CoreState
from clerk._coretypes import Role
from clerk._membership import duplicate_reason
from clerk._messages import (
    Accept,
    Accepted,
    Ack,
    Claim,
    Coordinator,
    Election,
    Execute,
    Handover,
    Heartbeat,
    Leave,
    Message,
    Ok,
    Peer,
    Prepare,
    Promise,
    Refuse,
    Reject,
    Welcome,
)

__all__ = ["CHECKED", "duplicate_claim", "from_duplicate", "holder_of", "refuse_accepted"]

#: The messages that a duplicate's name makes void (JOIN: see the module docstring).
CHECKED = (Coordinator, Heartbeat, Welcome, Ok, Election, Execute, Handover, Ack, Leave,
           Prepare, Promise, Accept, Accepted, Reject)


def holder_of(core: CoreState, name: str, address: str, now: float) -> Peer | None:
    """The live node that holds ``name`` at another address than ``address`` (a node at
    ``address`` calling itself ``name`` is then a duplicate), or None."""
    if name == core.me.name:
        return core.me if address != core.me.address else None
    row = core.members.get(name)
    if row is None or not row.alive or row.peer.address == address:
        return None
    if core.role is Role.MANAGER and now - row.last_seen >= core.timings.member_timeout:
        return None  # silent: a JOIN from the other address would replace it
    return row.peer


def duplicate_claim(core: CoreState, claim: Claim, now: float) -> bool:
    """Is ``claim`` held by a duplicate of a live member (not in our own name: a claim in
    our name at another address may be our previous incarnation's, relayed)?"""
    return claim.name != core.me.name and holder_of(core, claim.name, claim.address,
                                                    now) is not None


def from_duplicate(core: CoreState, msg: Message, now: float) -> bool:
    """A message from a duplicate of a live member: drop it and refuse its sender (rules in
    the module docstring). True if it was one."""
    s = msg.sender
    holder = holder_of(core, s.name, s.address, now)
    if holder is None or holder.incarnation == s.incarnation:
        return False
    reason = duplicate_reason(s.name, holder, holder is core.me, s.address)
    core.drop("duplicate_name", f"{type(msg).__name__} from {s.name!r} at {s.address}: "
                                f"{reason}")
    refused = core.refused_dups
    if now - refused.get(s.address, -float("inf")) >= core.timings.heartbeat_interval:
        refused[s.address] = now
        if len(refused) > MAX_LOST:
            del refused[next(iter(refused))]
        core.send(s.address, Refuse(core.me, core.term, reason))
    return True


def refuse_accepted(core: CoreState, msg: Refuse) -> bool:
    """Does this REFUSE stop us, besides one from our manager (module docstring)? From a
    seed while joining or electing; as a manager of nobody, from a seed or a node we sent
    our claim to."""
    s = msg.sender
    if core.role in (Role.JOINING, Role.CANDIDATE):
        return s.address in core.seeds
    if core.role is Role.MANAGER:
        # Nobody follows us: no live member acknowledged our claim, nor joined under it.
        alone = not any(r.alive and r.acked_epoch >= 0 for r in core.members.others())
        return alone and (s.address in core.seeds or s.address in core._told)
    return False
