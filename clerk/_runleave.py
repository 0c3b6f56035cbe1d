"""The task layer's side of leaving and of a table handed over.

:class:`Leaving` is a part of :class:`clerk._runner.TaskRunner` (a mixin, as
:mod:`clerk._routing` is; the state they share is declared in :mod:`clerk._runnerdefs`): a
stop request and what a leaving node waits for before it exits, a member that left and hears
of a manager still listing it, and a table handed over to this node (a merge's HANDOVER, or a
graceful hand-over's).

* **Leaving**: a leaving manager drains (no more dispatches, results still applied); a leaving
  node lets its runs in flight finish for up to ``LEAVE_WAIT`` s, and a member then waits
  for a manager to acknowledge their results (:mod:`clerk._routing`, ``LEAVE_ACK_WAIT``). A
  member first sends the OFFER under way to its manager. A manager asked to leave
  while it takes over finishes that first, then waits for the members' OFFERs its dispatches
  wait for, bounded as they are (:mod:`clerk._leaveoffers`): its hand-over carries their runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection

from clerk._core import LeftHeard, Send, StateHandedOver
from clerk._covers import covers_of
from clerk._host import Host
from clerk._leaveoffers import offers_awaited_until
from clerk._messages import Json
from clerk._routing import ResultRouting
from clerk._runnerdefs import RESOLVE_PAUSE

__all__ = ["LEAVE_WAIT", "TAKEOVER_BEFORE_LEAVE", "Leaving"]

log = logging.getLogger("clerk.tasks")
LEAVE_WAIT = 5.0  # a leaving node lets its runs in flight finish for up to this long
#: A node asked to leave while it takes over (it became the manager and its table is still
#: loading: a few ms, ~1 s at 10,000 tasks on a loaded machine) finishes the take-over first,
#: for this long at most (s), and then leaves as a manager that drains. Why: in a full stop a
#: successor can get its manager's hand-over just before its own stop request (the node
#: process passes SIGTERM on to its agent within 0.2 s). Leaving before its scheduler ran, it
#: applied no result of the runs in flight it had adopted (its own run's included), wrote the
#: handed-over table as it was, and the manager that handed over did not wait for them: that
#: update was on no disk, and the restarted cluster repeated the count
#: (tests/unit/test_sim_restart.py, a successor that leaves while it loads). With the waits
#: of a leave after it, well inside the node's 15 s for its agent to stop.
TAKEOVER_BEFORE_LEAVE = 2.0


def _confirm(agent: Host, confirm: Send | None, now: float) -> None:
    """Send a merge HANDOVER part's MERGED: it is in the table this node schedules."""
    if confirm is not None:
        agent.send(confirm.to, confirm.msg, now)


class Leaving(ResultRouting):
    """Leaving, and a table handed over (see the module docstring)."""

    _leave_asked: float | None  # a stop request waiting for a take-over (may_leave)
    _leave_wake: float  # monotonic: ... or for OFFERs until then (may_leave)

    def on_left_heard(self, effect: LeftHeard, now: float) -> None:
        """This node left as a member, and a manager that still lists it announced itself
        (clerk._coretypes.LeftHeard). With a run in flight here or a result no manager
        acknowledged: our OFFER to it (it lists those runs: that manager's table may lack
        them), our results after it, and then our LEAVE (``_offer_step``); else our LEAVE
        at once."""
        core = self.agent.core
        busy = self.executor is not None and self.executor.busy()
        if not busy and not self.outbox.pending():
            self.agent.apply(core.leave_again(effect.address), now)
            return
        log.info("left with runs in flight or results not acknowledged: giving them to the "
                 "new manager %s (an OFFER), then leaving it", effect.manager)
        self._left_to = core.highest  # (our results go after the OFFER)
        self._leave_after_offer = effect.address
        self._offer(effect.address, now)
        self._offer_wake = self.agent.clock.monotonic() + RESOLVE_PAUSE

    def on_handover(self, effect: StateHandedOver, now: float, wall: float) -> None:
        if effect.merge and self.agent.core.quorum is not None:
            # Quorum mode: a deposed manager's table may hold results not committed yet (its
            # scheduler applies a result before the write of its record commits); everything
            # it committed is in the voters' rows this manager's phase 1 merged. Importing it
            # would continue from a state a majority never held.
            log.info("quorum mode: the table handed over by %s is not merged (the voters' "
                     "rows are the committed state)", effect.sender)
            _confirm(self.agent, effect.confirm, now)  # (taken: not to be sent again)
            return
        if effect.merge and self._activate is not None:
            # Taking over (our own merge not confirmed before we claimed again, or a manager
            # that stepped down to us at once): the load would overwrite a merge done now.
            self._merges_waiting.append((effect.sender, effect.state, effect.confirm))
            return
        if effect.merge:
            self._rows_seen = None
            changed = self.scheduler.merge(effect.state, wall, source=effect.sender)
            self._handed_over(effect.sender, effect.state)
            self._log_conflicts()
            if changed and self._activate is None:  # (else replicated once it schedules)
                self._replicate(now)
            _confirm(self.agent, effect.confirm, now)
        elif self.agent.core.is_manager:
            self._activate = True
            if self.scheduler.activating:  # a crash takeover under way: this table instead
                self.scheduler.deactivate()

    def _handed_over(self, sender: str, state: Json) -> None:
        """A merge HANDOVER part from ``sender`` is merged: it counts as its OFFER, and one
        from the manager our replica followed as the OFFERs of the members its table covers
        (clerk._covers, ``Scheduler.handed_over_by``). Not one of our own
        (``take_back_merge``)."""
        if sender != self.agent.me.name:
            covered = self.scheduler.handed_over_by(sender, covers_of(state))
            if covered:
                log.info("the table %s handed over covers %d member(s) (%s): their OFFERs "
                         "are no longer awaited", sender, len(covered), ", ".join(sorted(covered)))

    def _covers(self) -> Collection[str]:
        """The members whose rows our table covers (clerk._covers): those whose OFFER it
        merged, once it schedules; none while it takes over (its table is loading)."""
        sched = self.scheduler
        return sched.offered if sched.active and self._activate is None else ()

    def on_leave(self, now: float) -> None:
        # A member (not scheduling): its results wait for a manager's RESULT_ACK
        # (left_results_taken), sent first to the claim it follows now.
        self._left_as_member = not self.scheduler.active
        self._left_to = self.agent.core.highest
        if self.scheduler.active:
            # The successor takes over with the table. Until this node exits it dispatches
            # nothing but still applies results of runs in flight: if every node is stopping
            # (a full-cluster stop) no successor confirms, and this table, written to the data
            # directory last, is the one that holds them.
            self.scheduler.drain()
            self._encode_rows(math.inf)  # the hand-over carries every row, now
        self._leave_started = now

    def may_leave(self, now: float) -> bool:
        """May this node act on a stop request now? Not while it takes over (the manager,
        its table still loading): it finishes that first, for ``TAKEOVER_BEFORE_LEAVE`` s at
        most, and then leaves as a manager that drains (results still applied to its table,
        its runs in flight waited for), not with a table no scheduler ran. Nor while its
        dispatches wait for the members' OFFERs (:mod:`clerk._leaveoffers`): until they are
        in or the wait's bound passed, so its hand-over carries the runs they list."""
        if self._activate is None or not self.agent.core.is_manager:
            # A member first sends the OFFER under way (a slice per turn): it lists the runs
            # in flight here, which the manager it follows may not know (a re-claim, a
            # takeover from a replica without the dispatch), and that manager stops waiting
            # for our OFFER at our LEAVE: it would send those runs' slots again beside them.
            return self._offer_job is None and self._offers_in(now)
        if self._leave_asked is None:
            self._leave_asked = now
            log.info("asked to leave while taking over: finishing the take-over first")
        return now - self._leave_asked >= TAKEOVER_BEFORE_LEAVE

    def _offers_in(self, now: float) -> bool:
        """Has this manager the members' OFFERs its dispatches wait for (or waited them out)?
        If not, the loop wakes at the wait's bound (``next_deadline``); an OFFER wakes it
        earlier."""
        wall = self.agent.clock.wall()
        until = offers_awaited_until(self.scheduler, self._loaded, wall * 1000) \
            if self.agent.core.is_manager else 0.0
        if not until:
            self._leave_wake = math.inf
            return True
        if self._leave_wake == math.inf:
            log.info("asked to leave while waiting for the members' OFFERs (the runs in flight "
                     "they list go into the hand-over): waiting up to %.1f s",
                     until / 1000 - wall)
        self._leave_wake = now + max(0.0, until / 1000 - wall)
        return False

    def ready_to_leave(self, now: float) -> bool:
        """A leaving node first lets its runs in flight finish (for up to LEAVE_WAIT s), and
        a member that left waits for its results' ACKs (``left_results_taken``). A leaving
        manager sends the RESULT_ACKs it holds for nodes that left as it exits
        (clerk._resultacks)."""
        if not self._ready_to_leave(now):
            return False
        if self.scheduler.draining and len(self._acks):
            self._acks_now(now)
        return True

    def _ready_to_leave(self, now: float) -> bool:
        if self._held and self._flush_held(now):
            return False  # sent now: give the loop a turn to put it on the wire
        # A draining manager that stops without a successor (the last node of a full stop)
        # writes the table last: it waits for the results of its runs in flight elsewhere too
        # (a run sent a dispatch lead ahead can start on a member after the SIGTERMs went out;
        # its update was lost when this node stopped first). A member's loss or the run's
        # deadline ends the wait early; LEAVE_WAIT bounds it.
        # After a confirmed hand-over those results go to the successor: no wait then, but for
        # runs on a node no longer listed (it left before the hand-over: it never heard of the
        # successor and sends its result here, which is then passed on, _flush_held).
        core = self.agent.core
        handed_over = bool(core._successor) and core.highest is not None \
            and core.highest.name == core._successor
        members = core.members
        elsewhere = self.scheduler.active and any(
            rec.running is not None and (not handed_over or members.get(
                str(rec.running.get("node"))) is None)
            for rec in self.scheduler.records.values())
        if (self.executor is None or not self.executor.busy()) and not self._held \
                and not elsewhere:
            return self.left_results_taken(now)
        if self._leave_started is None or now - self._leave_started < LEAVE_WAIT:
            return False
        if not self.left_results_taken(now):
            return False  # (a member's results wait for their ACKs, busy or not: bounded)
        if self.executor is not None:
            for msg in self.executor.runs_in_flight():
                log.warning("leaving with run task=%s slot=%d run=%s still going after %.0f s: "
                            "it is stopped, and its update is lost", msg.task, msg.slot,
                            msg.run_id, now - self._leave_started)
        return True
