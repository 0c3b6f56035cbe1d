"""A node's core takes a message: the checks every message passes, then its handler.

:class:`CoreMessages` is a base of :class:`clerk._core.NodeCore` (whose ``handle`` passes it
every ``Received`` message): it checks each message and routes it to its handler, most of
them in the modules that own their rules (:mod:`clerk._election`, :mod:`clerk._joining`,
:mod:`clerk._heartbeats`, :mod:`clerk._handover`, :mod:`clerk._setfetch`, and quorum mode's
through :class:`clerk._corequorum.CoreQuorum`); the few that are only a check and a hand-off
are here: a graceful HANDOVER taken, EXECUTE fenced, and what is delivered to the task layer.

Rules owned here:

* **Checks before the handler.** Every message passes the impersonation check (a message in
  this node's own name and incarnation is a forgery, except our own merge HANDOVER passed
  back to us, which is counted in ``returned_handovers``), the term bound, and the
  duplicate-name check (a message from a second node in a live member's name is dropped and
  its sender refused, :mod:`clerk._dupname`) before its handler.
* **Fencing for the layer above.** An EXECUTE is delivered only from the claim this node
  follows. One from a claim below the highest seen is refused as stale (``StaleExecute``, and
  its holder is told the higher claim); one from the manager we just gave up on (queued while
  we were frozen) is refused the same way; any other was never announced (managers announce
  themselves, COORDINATOR or WELCOME, before they dispatch, on the same connection) and is
  dropped as ``execute_unannounced``. RESULT_ACK and RUN_QUERY are delivered only from the
  manager this node follows now. RESULT, OFFER, STATUS, STATUS_REPLY, CONTROL and CONTROL_REPLY
  are delivered as they come (a RESULT also counts as a sign of life of its sender, for a manager).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clerk import _dupname, _election, _handover, _heartbeats, _joining, _quorumcore, _setfetch
from clerk._claims import claim_of
from clerk._corequorum import CoreQuorum
from clerk._coretypes import Deliver, Role, StaleExecute, StateHandedOver
from clerk._handparts import is_part
from clerk._messages import (
    Accept,
    Accepted,
    Ack,
    Control,
    ControlReply,
    Coordinator,
    Election,
    Execute,
    Handover,
    Heartbeat,
    Join,
    Leave,
    Merged,
    Message,
    Offer,
    Ok,
    Prepare,
    Promise,
    Refuse,
    Reject,
    Result,
    ResultAck,
    RunQuery,
    Status,
    StatusReply,
    TableAt,
    TasksQuery,
    TasksReply,
    Welcome,
    reads_table_at,
)

__all__ = ["CoreMessages"]


class CoreMessages(CoreQuorum):
    """The checks every message passes, and its routing (see the module docstring)."""

    def _on_message(self, msg: Message, now: float) -> None:
        if msg.sender.name == self.me.name and msg.sender.incarnation == self.me.incarnation:
            if self.quorum is not None and _quorumcore.from_self(msg):
                self._m_quorum(msg, now)  # our own vote, durable now
                return
            if isinstance(msg, Handover):
                # Our own merge HANDOVER, passed on by followers (each passes it on once)
                # back to us: an ordinary fault (we stepped down, then our successor did
                # too), not an attack. Nothing to do with it.
                self.returned_handovers += 1
                return
            # A node never sends to itself: a forgery (a JOIN in our own name would rewrite
            # our own row, e.g. the tasks we run).
            self.drop("impersonation", f"{type(msg).__name__} in this node's own name")
            return
        if not self.term_ok(msg, now):
            return
        if isinstance(msg, _dupname.CHECKED) and _dupname.from_duplicate(self, msg, now):
            return  # a second node in a live member's name: nothing it says counts
        if self._awaited and self._awaited.pop(msg.sender.name, None) is not None:
            _joining.heard(self, msg.sender, now)
        self.see_term(msg.term)
        if self.quorum is not None:
            _quorumcore.heard(self, msg, now)
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg, now)

    def _m_handover(self, msg: Handover, now: float) -> None:
        s = msg.sender
        if self.role is Role.MANAGER:
            _handover.accept_merge(self, msg, now)
            return
        if self.role in (Role.LEAVING, Role.STOPPED):
            return
        if not _handover.from_current_manager(self, msg):
            _handover.forward(self, msg)
            return
        if is_part(msg.state):  # (its table in parts: we take over once we have them all)
            try:
                whole = self.parts_in.add(msg)
            except ValueError:
                self.drop("handover_part", f"a malformed hand-over part from {s.name!r}")
                return
            if whole is None:
                if self.role is Role.FOLLOWER:
                    self.heard_manager(now)  # (a sign of life of our manager)
                return
            msg = whole
        # Our manager is leaving and chose us: take over now, with a new term, and tell it
        # where our replica stands (it sends the rows it lacks: clerk._handover).
        self.replicated = msg.state
        self.table_from = s.name
        _election.become_manager(self, now,
                                 members=tuple(m for m in msg.members if m.name != s.name))
        # (TableAt("", -1): our replica is caught up with no log; None would say nothing.)
        at = (self.replica.position() or TableAt("", -1)) if reads_table_at(s) else None
        self.send(s.address, Coordinator(self.me, self.term, self.my_claim(), at))
        self._took_from = s.address  # (its merge HANDOVER of that rest is then taken)
        self._out.append(StateHandedOver(s.name, msg.state, False))

    def _m_execute(self, msg: Execute, now: float) -> None:
        s = msg.sender
        if s.name == self.me.name:  # a manager runs its own dispatches without the network
            self.drop("impersonation", f"EXECUTE in this node's own name ({s.incarnation!r})")
            return
        c = self._claim  # the key of the sender's claim (term, priority, name) is the claim's
        if c is not None and msg.term == c.term and s.priority == c.priority and s.name == c.name:
            self._out.append(Deliver(msg))  # (every run: no Claim built to compare it)
            return
        claim = claim_of(s, msg.term)
        if self.highest is not None and claim.key < self.highest.key:
            _election.on_claim(self, claim, now)  # stale: tells its holder about the newer claim
            error = f"stale term {msg.term} < {self.highest_term}"
            self._out.append(StaleExecute(msg, f"from claim {claim.key}, below the highest "
                                               f"seen {self.highest.key}"))
        elif self._claim is None and self.highest is not None and claim.key == self.highest.key:
            # From the manager we followed until we gave up on it (we are electing): it was
            # announced, so not a forgery; most likely queued while this node was frozen.
            error = "this node is electing a manager: its manager went silent"
            self._out.append(StaleExecute(msg, "arrived while electing: the manager that sent "
                                               "it had gone silent"))
        else:
            # Managers announce themselves (COORDINATOR, WELCOME) before they dispatch, on the
            # same connection: an EXECUTE is never the first word of a claim, so it is neither
            # followed nor run (a forged one would otherwise both install and use a manager).
            self.drop("execute_unannounced", f"EXECUTE from {s.name!r} at term {msg.term}: "
                                              "not from the manager this node follows")
            error = "not from the manager this node follows"
        self.send(s.address, Result(self.me, self.term, msg.task, msg.run_id, msg.slot,
                                     "refused", None, 0.0, error))

    def _m_join(self, msg: Join, now: float) -> None:
        _joining.m_join(self, msg, now, _election.graduate)

    def _m_from_manager(self, msg: Message, now: float) -> None:
        """RESULT_ACK and RUN_QUERY: only from the manager this node follows now (a deposed
        manager's are moot, a stranger's forged)."""
        claim = self._claim
        if (claim is not None and self.role is Role.FOLLOWER and msg.sender.name == claim.name
                and msg.sender.address == claim.address and msg.term == claim.term):
            self._out.append(Deliver(msg))

    def _m_deliver(self, msg: Message, now: float) -> None:
        if isinstance(msg, Result) and self.role is Role.MANAGER:
            self.members.touch(msg.sender.name, msg.sender.incarnation, now)
        self._out.append(Deliver(msg))


_HANDLERS: dict[type, Callable[[CoreMessages, Any, float], None]] = {
    Join: CoreMessages._m_join,
    Welcome: _election.m_welcome,
    Refuse: _joining.m_refuse,
    Heartbeat: _election.m_heartbeat,
    Ack: _heartbeats.m_ack,
    Election: _election.m_election,
    Ok: _election.m_ok,
    Coordinator: _election.m_coordinator,
    Leave: _election.m_leave,
    Handover: CoreMessages._m_handover,
    Execute: CoreMessages._m_execute,
    Result: CoreMessages._m_deliver,
    Offer: CoreMessages._m_deliver,
    ResultAck: CoreMessages._m_from_manager,
    RunQuery: CoreMessages._m_from_manager,
    Status: CoreMessages._m_deliver,
    StatusReply: CoreMessages._m_deliver,
    Control: CoreMessages._m_deliver,
    ControlReply: CoreMessages._m_deliver,
    Prepare: CoreMessages._m_quorum,
    Promise: CoreMessages._m_quorum,
    Accept: CoreMessages._m_quorum,
    Accepted: CoreMessages._m_quorum,
    Reject: CoreMessages._m_quorum,
    TasksQuery: _setfetch.m_tasks_query,
    TasksReply: _setfetch.m_tasks_reply,
    Merged: _handover.m_merged,
}
