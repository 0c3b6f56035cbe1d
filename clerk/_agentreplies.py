"""The agent's answers: the messages its loop delivers to the task layer, and the replies to a
client's STATUS and CONTROL on the connection they came in on (split from :mod:`clerk._agent`,
which mixes :class:`AgentReplies` in). A status too big for one message goes in parts
(:mod:`clerk._statusparts`)."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from clerk._agentattrs import AgentAttrs
from clerk._codec import EncodeError, encode
from clerk._deploy import task_names
from clerk._leftoffers import OfferKind, is_recorded, offer_kind
from clerk._messages import (
    Control,
    Coordinator,
    Execute,
    Message,
    Offer,
    Result,
    ResultAck,
    RunQuery,
    Status,
    StatusReply,
)
from clerk._ops import handle_control
from clerk._statusjob import Slice, Steps, release, run

if TYPE_CHECKING:

    from clerk._metrics import NodeMetrics
    from clerk._statusjob import StatusJobs
    from clerk._statusparts import StatusParts

__all__ = ["AgentReplies"]

log = logging.getLogger("clerk.node")


class AgentReplies(AgentAttrs):
    """Mixed into :class:`clerk._agent.Agent` (which provides these attributes)."""

    if TYPE_CHECKING:
        status_parts: StatusParts
        status_jobs: StatusJobs
        metrics: NodeMetrics
        _started_wall: float

        def _bad_frame(self, reason: str, detail: str, now: float) -> None: ...

        def send(self, to: str, msg: Message, now: float) -> None: ...

    def reply(self, msg: Message) -> None:
        """Answer the message being handled on the connection it came in on."""
        inbound = self._inbound
        if inbound is None or inbound.rid is None:
            return
        try:
            frames = encode(msg)
        except EncodeError as exc:
            log.error("cannot reply %s: %s", type(msg).__name__, exc)
            return
        self.transport.reply(inbound.rid, inbound.via_req, frames)

    def _deliver(self, msg: Message, now: float) -> None:
        # A run and its result's acknowledgement first: one of each per run on a follower
        # (the kinds are distinct classes: the order of the tests changes nothing else).
        if isinstance(msg, Execute):
            self.tasks.on_execute(msg, now, self._inbound)
        elif isinstance(msg, ResultAck):
            self.tasks.on_result_ack(msg)
        elif isinstance(msg, Status):
            inbound = self._inbound
            if msg.snapshot is not None or msg.part == 0:  # a part, or the brief status
                body = self.status_parts.answer(msg, self.status)  # (clerk._statusparts)
                self.reply(StatusReply(self.me, self.core.term, body))
            elif inbound is not None and inbound.rid is not None:
                # A whole status: built in slices between loop turns (clerk._statusjob).
                self.status_jobs.ask((inbound.rid, inbound.via_req), self._status_reply)
        elif isinstance(msg, Control):
            self.reply(handle_control(self.tasks, msg, now, self.clock.wall()))
        elif isinstance(msg, Result):
            row = self.core.members.get(msg.sender.name)
            member = row is not None and row.peer.incarnation == msg.sender.incarnation
            if not member and not self.tasks.expects(msg) and (
                    msg.sender.name not in self.tasks.scheduler.expected  # (clerk._joining)
                    and not self.tasks.takes_results_of(msg.sender, now)):  # (_leftoffers)
                self._bad_frame("result_not_member", f"RESULT from {msg.sender.name!r} "
                                f"({msg.sender.incarnation!r}): not a member", now)
                core, s = self.core, msg.sender
                if (core.is_manager and is_recorded(core.recorded, s)
                        and self.tasks.tells_claim_to(s, now)):
                    # A member our data directory recorded, maybe one that left, sending to
                    # a claim of ours it knew from another life of this node: our claim
                    # (clerk._leftoffers). Not to a stranger's address, and it gains no trust
                    # (not core.tell: a merge HANDOVER from it stays refused).
                    self.send(s.address, Coordinator(self.me, core.term, core.my_claim()), now)
                return
            self.tasks.on_result(msg, now, self.clock.wall())
        elif isinstance(msg, Offer):
            row = self.core.members.get(msg.sender.name)
            member = row is not None and row.peer.incarnation == msg.sender.incarnation
            kind = offer_kind(member, self.core.is_manager, self.core.quorum is not None,
                              msg.term, self.core.term, is_recorded(self.core.recorded, msg.sender))
            if kind is OfferKind.MEMBER:
                self.tasks.on_offer(msg, now, self.clock.wall())
            elif kind is OfferKind.HOLD:
                # A node offers as soon as it follows us, which may be before its JOIN
                # reaches us: keep it until that node is admitted (MemberUp), or its LEAVE
                # says it left (LeftUnlisted: clerk._leftoffers).
                self.tasks.hold_offer(msg)
            elif kind is OfferKind.LEFT:
                self.tasks.on_left_offer(msg, now, self.clock.wall())  # (clerk._leftoffers)
            elif self.tasks.runs_on(msg.sender.name):
                # A node that left with a run in flight answering our COORDINATOR (its
                # result follows: clerk._adoptedruns); its rows are not merged.
                log.info("OFFER from %s, which left with a run in flight: not merged (its "
                         "result counts when it comes)", msg.sender.name)
            else:
                self._bad_frame("offer_not_member", f"OFFER from {msg.sender.name!r} "
                                f"({msg.sender.incarnation!r}): not a member", now)
        elif isinstance(msg, RunQuery):
            self.tasks.on_run_query(msg, now)

    # --- status -----------------------------------------------------------------------------

    def status(self, brief: bool = False) -> dict[str, Any]:
        """The node's status (what ``clerk status --json`` prints); ``brief``: without the
        tasks and the task layer's keys (the whole one takes ~1 s at 10,000 tasks: the
        loop builds it in slices, ``status_step``)."""
        return run(self._status_steps(brief, Slice()))

    def _status_steps(self, brief: bool, sl: Slice) -> Steps:
        st = self.core.status()
        for m in st.get("members", []):
            if brief:
                m.pop("tasks", None)
            else:
                m["tasks"] = list(task_names(m.get("tasks", [])))
                if sl.over():
                    yield
        st["incarnation"] = self.me.incarnation
        st["address"] = self.me.address
        st["secure"] = not self.config.insecure
        st["uptime_s"] = round(self.clock.wall() - self._started_wall, 3)
        st["bad_frames"] = dict(self.bad_frames)
        # This node's clock against its manager's (clerk._clockskew): none on the manager.
        st["clock"] = (self.core.clock_skew.status(self.clock.monotonic(), self.clock.wall())
                       if not self.core.is_manager else {
                           "offset_ms": None, "manager": "", "samples": 0,
                           "window_s": self.core.clock_skew.window, "corrected": False,
                           "judged_by": "own (manager)",
                           "unestimated_runs": self.core.clock_skew.unestimated})
        # The loop's longest busy turn (ms): since the start, and since the last status read
        # (this one starts a new window: clerk._metrics.LoopTurns).
        turns = self.metrics.turns
        st["transport"] = {**self.transport.stats, **self.outgoing.stats,
                           "links": len(self.transport.peers()),
                           "turn_ms_max": round(turns.longest * 1000, 1),
                           "turn_ms_max_recent": round(turns.take_status() * 1000, 1)}
        if brief:
            st["brief"] = True
        else:
            st["status_jobs"] = self.status_jobs.stats()
            yield from self.tasks.status_steps(st, sl)
        st["quorum"] = self.quorum.status(st)
        return st

    def _status_reply(self, sl: Slice) -> Generator[None, None, Any]:
        """The frames of the STATUS_REPLY to a whole STATUS (a job of ``status_jobs``): the
        status, or its summary and the parts kept for the client to ask for next."""
        st = yield from self._status_steps(False, sl)
        yield  # (the last look at the rows took this step)
        body = yield from self.status_parts.first_steps(st, sl)
        if body is not st:
            yield from release(st.pop("tasks", []), sl)
        yield  # the message's encoding in a step of its own
        try:
            return encode(StatusReply(self.me, self.core.term, body))
        except EncodeError as exc:
            log.error("cannot reply StatusReply: %s", exc)
            return None

    def status_step(self) -> None:
        """A slice of the status under way; its answer to each asker once it is done."""
        done = self.status_jobs.step()
        if done is None:
            return
        askers, frames = done
        if frames is None:
            return
        for rid, via_req in askers:
            self.transport.reply(rid, via_req, frames)
