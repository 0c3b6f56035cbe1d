"""The agent's traffic with its core: what arrives is decoded and fed to
:class:`clerk._core.NodeCore` as events, and the effects it returns are carried out (sends
batched per peer, deliveries to the task layer, membership and manager changes, voter writes).

Split from :mod:`clerk._agent`, which mixes :class:`AgentFeed` in and keeps the loop itself
(when to poll, tick, drain the mailbox, leave) and the node's set-up. Apart because this is
where a new message or effect is wired in, and the loop's timing should not move with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from clerk._agentattrs import AgentAttrs
from clerk._batch import decode_frames
from clerk._codec import DecodeError, EncodeError, encode
from clerk._core import (
    Deliver,
    Dropped,
    Effect,
    Event,
    LeftHeard,
    LeftUnlisted,
    ManagerChanged,
    MemberDown,
    MemberUp,
    OfferAgain,
    PeerDown,
    PeerUp,
    Received,
    Refused,
    Role,
    Send,
    StaleExecute,
    StateHandedOver,
    Stopped,
    WriteCommitted,
)
from clerk._coretypes import QuorumChanged, VoterWrite
from clerk._leftoffers import is_recorded
from clerk._messages import Election, Execute, Message, Ok, Result

if TYPE_CHECKING:
    from collections import deque

    from clerk._metrics import NodeMetrics
    from clerk._transport import Inbound

__all__ = ["AgentFeed"]

log = logging.getLogger("clerk.node")
BAD_FRAME_LOG_EVERY = 5.0


class AgentFeed(AgentAttrs):
    """Mixed into :class:`clerk._agent.Agent` (which provides these attributes)."""

    if TYPE_CHECKING:
        metrics: NodeMetrics
        _bad_logged_at: float
        _bad_since_log: int
        _urgent: bool
        _ran: bool
        _done: bool
        _stop_reason: str
        _members_epoch: int
        _loopback: deque[Message]
        _looping: bool

        def _open_links(self) -> None: ...
        def _precise(self) -> bool: ...
        def _deliver(self, msg: Message, now: float) -> None: ...

    def _on_inbound(self, inbound: Inbound, now: float) -> None:
        if inbound.kind == "down":
            self._feed(PeerDown(inbound.address), now)
            return
        if inbound.kind == "up":
            self._feed(PeerUp(inbound.address), now)
            return
        try:
            msgs = decode_frames(inbound.frames)  # one message, or a batch (clerk._batch)
        except DecodeError as exc:
            self._bad_frame(exc.reason, exc.detail, now)
            return
        stats = self.outgoing.stats
        stats["messages_received"] += len(msgs)
        if len(msgs) > 1:
            stats["batches_received"] += 1
        self.outgoing.learn(msgs[0].sender)
        self._inbound = inbound
        try:
            for msg in msgs:
                if isinstance(msg, Execute):
                    self.metrics.executes_received += 1
                    self._ran = True  # (see clerk._agent.Agent._results_now)
                self._feed(Received(msg), now)
        finally:
            self._inbound = None

    def _bad_frame(self, reason: str, detail: str, now: float) -> None:
        self.bad_frames[reason] += 1
        self._bad_since_log += 1
        if now - self._bad_logged_at >= BAD_FRAME_LOG_EVERY:
            log.warning("dropped %d malformed frame(s) (latest: %s: %s); totals %s",
                        self._bad_since_log, reason, detail[:200], dict(self.bad_frames))
            self._bad_logged_at = now
            self._bad_since_log = 0

    def _feed(self, event: Event, now: float) -> None:
        try:
            was_candidate = self.core.role is Role.CANDIDATE
            effects = self.core.handle(event, now)
            if self.core.role is Role.CANDIDATE and not was_candidate:
                self.metrics.elections_started += 1
            self.apply(effects, now)
        except Exception:  # a bug must not take the node down; count it and carry on
            self.bad_frames["handler_error"] += 1
            log.exception("error handling %s", type(event).__name__)
            return
        self._drain_loopback(now)
        # The list's own epoch: the member epoch also moves with every replicated table.
        if self.core.members.list_epoch != self._members_epoch:
            self._members_epoch = self.core.members.list_epoch
            self.metrics.members_alive = sum(1 for i in self.core.member_list() if i.alive)
            self._open_links()

    def _drain_loopback(self, now: float) -> None:
        """Feed the messages this node sent itself to its core, one after the other (never
        nested: a message fed here may send itself another, handled in the same loop)."""
        if self._looping or not self._loopback:
            return
        self._looping = True
        inbound, self._inbound = self._inbound, None  # not an answer to what came in
        try:
            while self._loopback:
                self._feed(Received(self._loopback.popleft()), now)
        finally:
            self._looping = False
            self._inbound = inbound

    # --- effects ----------------------------------------------------------------------------

    def send(self, to: str, msg: Message, now: float,
             encoded: dict[int, list[bytes]] | None = None) -> None:
        """Send ``msg`` to ``to``. ``encoded``: frames of messages already encoded in this
        batch of effects, by ``id`` (the batch holds the messages, so ids are not reused)."""
        if to == self.me.address and self.quorum.enabled:
            # Quorum mode: a voter that is the candidate or manager answers its own PREPARE
            # and ACCEPT: fed back to the core on this loop (see _drain_loopback).
            self._loopback.append(msg)
            return
        self.transport.stats["out_" + type(msg).__name__] += 1  # sent by kind (clerk status)
        frames = encoded.get(id(msg)) if encoded is not None else None
        if frames is None:
            try:
                frames = encode(msg)
            except EncodeError as exc:
                log.error("cannot send %s to %s: %s", type(msg).__name__, to, exc)
                return
            if encoded is not None:
                encoded[id(msg)] = frames
        inbound = self._inbound
        if isinstance(msg, Election):
            self.transport.request(to, frames, now)
        elif (
            isinstance(msg, Ok) and inbound is not None and inbound.via_req
            and inbound.rid is not None
        ):
            self.transport.reply(inbound.rid, True, frames)
        else:
            # Sent at the end of the loop turn (_flush), a run or a result sooner if a
            # replication round comes first (flush_urgent).
            self.outgoing.add(to, frames, now, msg.sender.name != self.me.name)
            if type(msg) is Execute or type(msg) is Result:
                self._urgent = True

    def _flush(self, now: float) -> None:
        """Send what this loop turn queued, a batch per peer that reads them (clerk._batch)."""
        self._urgent = False
        if self.outgoing:
            transport = self.transport
            self.outgoing.flush(lambda to, frames: transport.send(to, frames, now))

    def flush_urgent(self, now: float) -> None:
        """Send what this turn queued now if a run (EXECUTE) or a result is among it and runs
        leave at their due times (``_precise``), not after a replication round's encoding;
        with a lead they go at the end of the turn, one batch per node with the round's."""
        if self._urgent and self._precise():
            self._flush(now)

    def apply(self, effects: list[Effect], now: float) -> None:
        # One heartbeat round sends the same message object to every member: encode it once.
        encoded: dict[int, list[bytes]] = {}
        writes: list[VoterWrite] = []  # consecutive VoterWrites: one write (clerk._quorumshell)
        for effect in effects:
            if isinstance(effect, VoterWrite):
                writes.append(effect)
                continue
            if writes:
                self._voter_writes(writes)
                writes = []
            if isinstance(effect, Send):
                if isinstance(effect.msg, Result) and effect.msg.outcome == "refused":
                    # The core refuses EXECUTEs from a lower term (stale) or an unknown sender.
                    if effect.msg.error.startswith("stale"):
                        self.metrics.executes_stale += 1
                    else:
                        self.metrics.executes_refused += 1
                self.send(effect.to, effect.msg, now, encoded)
            elif isinstance(effect, Deliver):
                self._deliver(effect.msg, now)
            elif isinstance(effect, ManagerChanged):
                self.metrics.manager_changes += 1
                if effect.is_me:
                    log.info("this node is now the manager (term %d)", effect.term)
                    alone = not any(i.alive and i.name != self.me.name
                                    for i in self.core.member_list())
                    if alone and self.config.join:
                        # Not fatal: a manager keeps probing its seeds and merges with
                        # whatever cluster answers later.
                        log.warning("no seed answered (%s); running alone and retrying them "
                                    "every %gs", ", ".join(self.config.join),
                                    self.core.timings.probe_interval)
                elif effect.manager is None:
                    log.info("manager lost (term %d); electing", effect.term)
                else:
                    log.info("manager is %s (term %d)", effect.manager, effect.term)
                    self._open_links()  # a REQ to the manager, for when it is suspected
                self.tasks.on_manager_changed(effect, now, self.clock.wall())
            elif isinstance(effect, MemberUp):
                log.info("member %s %s at %s", effect.info.name, effect.how, effect.info.address)
                self.tasks.on_member_up(effect.info.name, effect.info.incarnation, now)
            elif isinstance(effect, MemberDown):
                log.info("member %s down (%s)", effect.name, effect.reason)
                if effect.reason != "left":
                    # A member that left gracefully finishes its runs in flight and sends
                    # their results (clerk._runner.LEAVE_WAIT): they end by those results, or
                    # at their deadlines, not now (failing them dropped their updates, and
                    # let the next slot overlap the run still going on the leaving node).
                    self.tasks.on_member_down(effect.name, now)
                else:  # ... bounded (clerk._adoptedruns.bound_runs_of)
                    self.tasks.on_member_left(effect.name)
            elif isinstance(effect, StateHandedOver):
                log.info("received %s from %s",
                         "a merged table" if effect.merge else "the manager's hand-over",
                         effect.sender)
                self.tasks.on_handover(effect, now, self.clock.wall())
            elif isinstance(effect, OfferAgain):
                self.tasks.on_offer_again(effect, now)  # (clerk._core, "OFFERs again")
            elif isinstance(effect, LeftHeard):
                self.tasks.on_left_heard(effect, now)  # (clerk._core, "A node that left")
            elif isinstance(effect, LeftUnlisted):
                if not (is_recorded(self.core.recorded, effect.sender)  # (_leftoffers)
                        and self.tasks.on_left_unlisted(effect.sender, now)):
                    s = effect.sender
                    self._bad_frame("not_member", f"LEAVE from {s.name!r} "
                                    f"({s.incarnation!r}): not a member", now)
            elif isinstance(effect, Dropped):
                self._bad_frame(effect.reason, effect.detail, now)
            elif isinstance(effect, WriteCommitted):
                self.tasks.on_write_committed(effect.seq, now)
            elif isinstance(effect, StaleExecute):
                self.tasks.on_stale_execute(effect)
            elif isinstance(effect, Refused):
                log.error("refused by the cluster: %s", effect.reason)
            elif isinstance(effect, Stopped):
                self._done = True
                self._stop_reason = effect.reason
            elif isinstance(effect, QuorumChanged):
                self.quorum.quorum_changed(effect)
        if writes:
            self._voter_writes(writes)

    def _voter_writes(self, writes: list[VoterWrite]) -> None:
        """Durable first, then the answers, on the loop (see clerk._quorumshell)."""
        def then(effects: list[Effect]) -> None:
            now = self.clock.monotonic()
            self.apply(effects, now)
            self._drain_loopback(now)

        self.quorum.voter_writes(writes, then)
