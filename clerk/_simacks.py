"""The simulated node's results and their acknowledgements (default mode), as the real
node's (:mod:`clerk._outbox`, :mod:`clerk._resultacks`, :mod:`clerk._routing`): a manager
releases its held RESULT_ACKs once every live member holds their rows (or ``ACK_WAIT``
passed), and a leaving manager at once; a node resends its unacknowledged results to its
manager every ``RESEND_S``; and a member that left keeps them until a manager acknowledges
them, its process up until then (``exits_at``), or gives them up, counted, at
``LEAVE_ACK_WAIT_S``.

Split out of :mod:`clerk._simtasks` (and :mod:`clerk._simledgerrun`) to keep each module under
~600 lines when a member that left started waiting for its results' acknowledgements.
:class:`LedgerAcks` is a mixin of :class:`clerk._simtasks.LedgerLayer`: the attributes it
declares are the layer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clerk._core import Event, LeftHeard, Role, Tick
from clerk._messages import Execute, Result, ResultAck
from clerk._resultacks import ACK_WAIT, PendingAcks
from clerk._simattrs import LedgerAttrs
from clerk._simledgerrun import LEAVE_ACK_WAIT_S, LEAVE_WAIT_S, RESEND_S

if TYPE_CHECKING:
    pass

__all__ = ["AckedResult", "LedgerAcks"]


@dataclass(frozen=True)
class AckedResult:
    """A RESULT_ACK a manager sent (default mode) for a result it applied."""

    at: float  # simulated time
    manager: str
    node: str  # where the run ran
    run_id: str
    value: int  # the counter the run returned
    #: The nodes that held its row when it was acknowledged (the manager and every live
    #: member); empty when it was acknowledged after ACK_WAIT without that.
    holders: tuple[str, ...] = ()


class LedgerAcks(LedgerAttrs):
    """A node's RESULT_ACKs and resends (see the module docstring)."""

    acks: PendingAcks
    _applied: dict[str, tuple[str, int]]
    unacked: dict[str, Result]
    in_flight: dict[str, Execute]
    _offer_to: str | None
    _resend_at: float
    #: When this node acted on a stop request as a member (not the manager), and the claim
    #: its unacknowledged results last went to since (``_left_resend``).
    _left_at: float | None = None
    _left_to: Any = None
    #: Its LEAVE goes to this address once its OFFER there is sent (``_left_heard``).
    _leave_after_offer: str | None = None

    if TYPE_CHECKING:  # (clerk._simledgerrun.LedgerRuns, after this class in the layer's MRO)
        def _offer(self, to: str, manager: str, whole: bool = False) -> None: ...

    def _acks_and_resends(self, event: Event) -> None:
        """Default mode: release the held ACKs whose rows every live member holds (or that
        waited ACK_WAIT); resend unacknowledged results every RESEND_S."""
        core = self.node.core
        if (len(self.acks) and self.scheduler.draining and core.role is Role.STOPPED
                and self.world.leave_keeps_results):
            self._acks_now()  # a leaving manager that stopped (it exits)
        if len(self.acks) and core.is_manager:
            log = core.table_log
            if log.complete and self.acks.waiting_stamp():
                self.acks.stamp(log.log, log.seq)
            live = (self.node.name, *(m.name for m in core.members.others() if m.alive))
            for ack in self.acks.release(log.log, core.replicated_upto(), self.net.now):
                applied = self._applied.pop(ack.run_id, None)
                if applied is not None:
                    waited_out = ack.since + ACK_WAIT <= self.net.now
                    self.world.acked.append(AckedResult(self.net.now, self.node.name,
                                                        applied[0], ack.run_id, applied[1],
                                                        () if waited_out else live))
                self.net.send(self.node.name, ack.to,
                              ResultAck(core.me, core.term, ack.task, ack.run_id))
        if self._left_at is not None and core.role is Role.STOPPED:
            if self.unacked and self.world.leave_keeps_results:
                self._left_resend(event)  # (clerk._simledgerrun)
            return
        claim = core.manager_claim
        if (isinstance(event, Tick) and self.unacked and self.net.now >= self._resend_at
                and claim is not None and not core.is_manager
                and claim.address != self._offer_to):
            self._resend_at = self.net.now + RESEND_S
            for result in self.unacked.values():
                self.net.send(self.node.name, claim.address, result)

    def _acks_now(self) -> None:
        """A leaving manager stops managing (or exits): the ACKs it holds for nodes that are
        no longer live members go now, the others are dropped (their nodes resend to the
        next manager), as the real one's (clerk._resultacks, ``take_all``)."""
        core = self.node.core
        live = {m.peer.address for m in core.members.others() if m.alive}
        for ack in self.acks.take_all():
            if ack.to not in live:
                self._ack_one(ack.to, ack.task, ack.run_id)

    def _ack_one(self, to: str, task: str, run_id: str) -> None:
        """Send one RESULT_ACK now (recorded in ``SimLedger.acked`` if it applied a value)."""
        core = self.node.core
        applied = self._applied.pop(run_id, None)
        if applied is not None:
            self.world.acked.append(AckedResult(self.net.now, self.node.name, applied[0],
                                                run_id, applied[1]))
        self.net.send(self.node.name, to, ResultAck(core.me, core.term, task, run_id))

    def _left_node(self, name: str, incarnation: str) -> bool:
        """Is the node ``name`` (that incarnation) no longer a member (it left)?"""
        row = self.node.core.members.get(name)
        return row is None or row.peer.incarnation != incarnation

    # --- a member that left (clerk._routing.left_results_taken) ---------------------------

    def exits_at(self, now: float) -> float | None:
        """A member that left (``SimLedger.leave_keeps_results``) is a process still up until
        its runs in flight ended (``LEAVE_WAIT_S`` at most) and a manager acknowledged their
        results (``LEAVE_ACK_WAIT_S`` at most, from its leave): until when, None if not."""
        left = self._left_at
        if left is None or not self.world.leave_keeps_results:
            return None
        if self.unacked and now >= left + LEAVE_ACK_WAIT_S:
            self._give_up()  # (its exit: before the restart)
        until = max(left + LEAVE_WAIT_S if self.in_flight else 0.0,
                    left + LEAVE_ACK_WAIT_S if self.unacked else 0.0)
        return until if until > now else None

    def _left_heard(self, effect: LeftHeard) -> None:
        """A manager that lists this node (which left) announced itself: with a run in flight
        here or a result not acknowledged, our OFFER (every row, the runs in flight), our
        results and then our LEAVE; else our LEAVE at once (the real node's
        ``on_left_heard``)."""
        if not self.world.leave_keeps_results:
            return
        if not self.in_flight and not self.unacked:
            self.net.apply(self.node, self.node.core.leave_again(effect.address))
            return
        self._left_to = self.node.core.highest  # (our results go after the OFFER)
        self._leave_after_offer = effect.address
        self._offer(effect.address, effect.manager, whole=True)

    def _give_up(self) -> None:
        """The bound passed: the results no manager acknowledged are lost, and counted."""
        for result in self.unacked.values():
            self.world.lost_on_leave.append((self.node.name, result.task, result.run_id,
                                             result.state))
        self.unacked.clear()

    def _left_resend(self, event: Event) -> None:
        """A member that left, with results no manager acknowledged: they go to the highest
        claim it knows, at once when that claim is new (a COORDINATOR), else every
        ``RESEND_S``, as the real node's (clerk._routing._resend_left). At
        ``LEAVE_ACK_WAIT_S`` they are given up and counted (``SimLedger.lost_on_leave``), as
        the real node logs and counts them."""
        core = self.node.core
        now = self.net.now
        assert self._left_at is not None
        if now >= self._left_at + LEAVE_ACK_WAIT_S:
            self._give_up()
            return
        claim = core.highest
        if claim is None or claim.address == self._offer_to or (claim == self._left_to and (
                not isinstance(event, Tick) or now < self._resend_at)):
            return
        self._left_to, self._resend_at = claim, now + RESEND_S
        if claim.address != core.me.address:
            for result in self.unacked.values():
                self.net.send(self.node.name, claim.address, result)
