"""Merge and hand-over: how a manager's table and state pass to another manager.

Functions over a :class:`~clerk._corestate.CoreState`; :class:`~clerk._core.NodeCore` routes
HANDOVER and leave requests to them, :mod:`clerk._election` calls :func:`step_down_to`. Rules:

* **Partitions heal.** Two managers that meet resolve by claim order (:mod:`clerk._claims`):
  the lower one hands its member list and state to the higher one (HANDOVER), tells its
  members the winner's claim, and follows it (:func:`step_down_to`). The members it lost are in
  no list the winner gets: it keeps probing them as orphans (:mod:`clerk._joining`).
* **Merge HANDOVER.** A manager takes a merge HANDOVER only from a member or a node it sent
  its claim to, with a claim below its own (:func:`accept_merge`); anything else is dropped
  and counted (``handover_stranger``). A follower that gets a HANDOVER not from the manager it
  knows as current (it stepped down since) passes it on to the manager it follows, once per
  node (:func:`forward`, ``FORWARD_MEMORY``): followers can briefly follow each other in a loop
  after restarts, and the message would circle at network speed.
* **Graceful leave.** A leaving manager sends HANDOVER (members and replicated state) to the
  highest-ranked live member (:func:`leave_as_manager`), which takes over with a new term at
  once; nothing is lost. The leaver stops on its successor's COORDINATOR, or after
  ``handover_timeout``. A follower that leaves sends LEAVE to its manager and stops.
"""

from __future__ import annotations

from clerk._corestate import CoreState
from clerk._coretypes import Role, StateHandedOver
from clerk._joining import learn
from clerk._messages import Claim, Coordinator, Handover, Leave

__all__ = [
    "FORWARD_MEMORY",
    "accept_merge",
    "forward",
    "from_current_manager",
    "leave",
    "leave_as_manager",
    "step_down_to",
]

#: How many HANDOVERs a follower remembers having passed on (each is passed on once).
FORWARD_MEMORY = 16


def step_down_to(core: CoreState, claim: Claim) -> None:
    """We are a manager and met a higher claim: hand our table to the winner, and tell our
    own members who the manager is now. Otherwise they would learn it only if the winner took
    our list (it may drop a HANDOVER it cannot vouch for) or after our heartbeats stop and
    their manager timeout runs out (0.7 s)."""
    core.send(claim.address, Handover(core.me, core.term, core.members.infos(),
                                      core.replicated_packed()))
    # The members we lost are in no list the winner gets: keep probing them.
    core._orphans.update(core._lost)
    for row in core.members.others():
        if row.alive and row.peer.address != claim.address:
            core.send(row.peer.address, Coordinator(core.me, claim.term, claim))


def accept_merge(core: CoreState, msg: Handover, now: float) -> None:
    """Manager: a lower manager stepped down to us: merge its members and state. Only from a
    member or a node we sent our claim to, with a claim below ours."""
    s = msg.sender
    row = core.members.get(s.name)
    known = (row is not None and row.peer.incarnation == s.incarnation
             and row.peer.address == s.address) or s.address in core._told
    if not known or (msg.term, s.priority, s.name) >= core.my_claim().key:
        core.drop("handover_stranger", f"HANDOVER from {s.name!r} at {s.address!r}: "
                                       "not a member, nor a manager we deposed")
        return
    learn(core, msg.members, now)
    core._out.append(StateHandedOver(s.name, msg.state, True))


def from_current_manager(core: CoreState, msg: Handover) -> bool:
    """Is this HANDOVER from the manager we know as current (a graceful leave to us)?"""
    h = core.highest
    return h is not None and h.name == msg.sender.name and h.term == msg.term


def forward(core: CoreState, msg: Handover) -> None:
    """Not from the manager we know as current, so not a graceful leave: a manager that
    stepped down to us while we were still one (a merge) and we have stepped down since.
    Taking over would depose the real manager with a needless new term; pass the table and
    state on to the manager we follow instead, once per node."""
    s = msg.sender
    key = (s.name, s.incarnation, msg.term)
    if core.role is Role.FOLLOWER and core._claim is not None and key not in core._forwarded:
        core._forwarded[key] = None
        if len(core._forwarded) > FORWARD_MEMORY:
            del core._forwarded[next(iter(core._forwarded))]
        core.send(core._claim.address, msg)


def leave_as_manager(core: CoreState, now: float) -> None:
    """Hand everything to the highest-ranked live member, then wait for its COORDINATOR."""
    live = [r for r in core.members.others() if r.alive
            and (core.quorum is None or r.name in core.quorum.voters)]  # quorum: voters only
    if not live:
        core.stop("left; no member to hand over to")
        return
    successor = max(live, key=lambda r: r.peer.rank)
    members = tuple(i for i in core.members.infos() if i.name != core.me.name)
    core.send(successor.peer.address,
              Handover(core.me, core.term, members, core.handover_state(successor)))
    core.role = Role.LEAVING
    core._successor = successor.name
    core._deadline = now + core.timings.handover_timeout


def leave(core: CoreState, now: float) -> None:
    """``LeaveRequested``: a manager hands over first; a follower says goodbye and stops."""
    if core.role is Role.MANAGER:
        leave_as_manager(core, now)
    elif core.role is Role.FOLLOWER and core._claim is not None:
        core.send(core._claim.address, Leave(core.me, core.term))
        core.stop("left")
    else:
        core.stop("left")


