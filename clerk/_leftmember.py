"""A node that left as a member, stopped: what its core still takes.

Functions over a :class:`~clerk._corestate.CoreState`; :class:`~clerk._core.NodeCore` routes
every event of a STOPPED core here (:func:`stopped`). Rules:

* **Results.** A RESULT from another node is delivered (a node that left keeps its loop
  until its runs in flight end; the last manager of a full stop waits there for its runs'
  results on members). Nothing in our own name.
* **A node that left keeps its results.** One with a result no manager acknowledged yet (its
  manager crashed before or after it left, and the run's update is on no other node) does
  not drop it: its task layer waits, bounded, for a manager to acknowledge it
  (``TaskRunner.ready_to_leave``), sending it to the highest claim it knows, again every
  ``RESEND_INTERVAL``; so the STOPPED core hands that layer every RESULT_ACK from a manager
  at least as recent as the highest claim it has seen, and learns a new manager's claim from
  its COORDINATOR (a manager elected after the LEAVE died with the old one still lists this
  node, and announces itself to it). A node that stopped as a member then gives that manager
  its OFFER (the runs in flight on it, which that manager's table may lack), its results,
  and its LEAVE (``LeftHeard``, ``leave_again``): else that manager kept the node listed,
  waited for its OFFER, and dropped it as silent after the member timeout, failing its run
  in flight, or sent the run's next slot beside it. A COORDINATOR counts only from the
  claim's holder, within the term bound, and above ``highest`` (a repeat or a lower claim
  changes nothing).
* **A lower claim is told the higher one.** A COORDINATOR from its holder *below* ``highest``
  gets, from a node that left as a member, the claim it knows (``COORDINATOR(highest)``, as
  any live node tells a stale claim's holder: :func:`clerk._election.on_claim`). Its results
  wait for a manager of that claim or above, and the nodes that come back after a full stop
  may know none of it (the last node up left with a result of a manager's run that crashed:
  every node that knew the term was down, and a restart forgets it): they elect at a lower
  term, which the node that left ignored until its bound, giving the result up (a count
  repeated). Told, that manager follows the claim as any higher one (it steps down to its
  holder: a follower of its own now, which takes the table over above it, as from a
  leaving manager; or a node gone, and the manager timeout elects again above it, when the
  manager has a live member: no directed test covers that case), and the
  node that left gives the manager above its claim its OFFER, results and LEAVE. Not a lone
  claim (``LONE_TERM``, :mod:`clerk._claims`: a node that came back alone): it can only
  claim alone again, at the same term, and would step down to the claim every manager
  timeout until this node exits (the simulator showed it flapping for 5 s), to no avail.
* **A claim's holder restarted.** A restart forgets its terms (default mode: no data
  directory records one), so the holder of the claim we know can claim the very same key
  again (it took over by a hand-over at the term it was given, or claimed it anew), with a
  table that lacks our run and its lineage. A COORDINATOR of the claim we know from another
  incarnation of its holder than the one we followed (``_left_holder``) is a new manager:
  ``LeftHeard``, as for a higher claim (on real processes the returning nodes elected at
  term 1, were told ours, and handed the table to the holder at term 2: our results went to
  it as before and were refused, the count repeated).
* A manager that left (handed over, then stopped) hears nothing more: it sends no LEAVE.
"""

from __future__ import annotations

from clerk._claims import LONE_TERM
from clerk._corestate import CoreState
from clerk._coretypes import Deliver, Effect, Event, LeftHeard, Received, Role, Send
from clerk._messages import Coordinator, Leave, Result, ResultAck

__all__ = ["TELL_LOWER_CLAIMS", "leave_again", "stopped"]

#: A node that left as a member tells a lower claim's holder the claim it knows (see "A lower
#: claim is told the higher one"); False: it ignores that COORDINATOR, as before (the
#: simulator's tests of the exposure set it).
TELL_LOWER_CLAIMS = True


def stopped(core: CoreState, event: Event, now: float) -> list[Effect]:
    """A STOPPED core's event (see the module docstring): a RESULT from another node, a
    RESULT_ACK whose term is at least the highest this node has seen, delivered; a
    COORDINATOR above ``highest`` raises it, and for a node that left as a member tells
    its task layer (``LeftHeard``: its OFFER, its results, then :func:`leave_again`); one
    below it gets, from a node that left as a member, the claim it knows."""
    if not isinstance(event, Received):
        return []
    msg = event.msg
    if msg.sender.name == core.me.name:
        return []
    if isinstance(msg, Result):
        return [Deliver(msg)]
    if isinstance(msg, ResultAck) and msg.term >= core.highest_term:
        return [Deliver(msg)]
    if (isinstance(msg, Coordinator) and msg.claim.name == msg.sender.name
            and core.term_ok(msg, now)):
        if core.highest is None or msg.claim.key > core.highest.key:
            core.raise_highest(msg.claim)
            core._left_holder = msg.sender.incarnation
            if core._left_as_member:
                # A manager that lists us: our LEAVE died with the one before, or never went
                # (we left between two managers). Our OFFER first, then the LEAVE.
                core._out.append(LeftHeard(msg.claim.name, msg.claim.address))
        elif (core._left_as_member and msg.claim.key == core.highest.key
              and core._left_holder and msg.sender.incarnation != core._left_holder):
            # The claim we know, from another life of its holder: it restarted and claimed
            # the same term again (a restart forgets its terms in default mode), and its
            # table lacks what we hold (module docstring, "A claim's holder restarted").
            core._left_holder = msg.sender.incarnation
            core._out.append(LeftHeard(msg.claim.name, msg.claim.address))
        elif (TELL_LOWER_CLAIMS and core._left_as_member and msg.claim.term > LONE_TERM
              and msg.claim.key < core.highest.key):
            # A claim the cluster made without knowing ours: tell it (module docstring).
            core.send(msg.sender.address, Coordinator(core.me, core.term, core.highest))
    out, core._out = core._out, []
    return out


def leave_again(core: CoreState, address: str) -> list[Effect]:
    """A node that left as a member: its LEAVE to the manager at ``address`` (after its
    OFFER: see ``LeftHeard``), which removes it as "left" (its runs in flight end by their
    results) and stops waiting for its OFFER. Nothing for any other node."""
    if core.role is not Role.STOPPED or not core._left_as_member:
        return []
    return [Send(address, Leave(core.me, core.term))]
