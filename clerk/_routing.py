"""The task layer's messages: EXECUTE in, results out, and where each result goes.

* **No late runs.** An EXECUTE that reaches this node after its deadline, or more than one
  interval after its slot was due, is not run: it is answered ``refused``, counted (``stale``
  in status) and logged; so is one from a claim below the highest this node has seen (the
  core refuses it). Clocks of the nodes are assumed to agree within a small part of an
  interval (NTP). A run sent ahead of its due time is held until it (:mod:`clerk._lead`);
  one due more than ``EARLY_LIMIT_MS`` ahead is refused the same way. A leaving node refuses
  new runs.
* **Results reach a new manager** (see :mod:`clerk._outbox`): every result is kept until the
  manager acknowledges it (RESULT_ACK) and is sent again to each new manager; a manager that
  adopts runs in flight asks their nodes about them (``RUN_QUERY``) instead of waiting for
  their deadlines, and fails at once those whose node it saw go; a run on a node it does
  not list stays open until its result or deadline: that node may have left with the run
  going (:mod:`clerk._adoptedruns`). A leaving manager's own
  results are *held* until its successor's claim is known (and applied to its own last table
  while it drains); so are the members' results it applies while it drains after a
  hand-over (the successor adopted those runs), sent to the member it handed over to if it
  stopped before that member confirmed.
* **A member that left keeps its results until a manager takes them.** After its stop
  request a member (not the manager) refuses new runs, lets its runs in flight finish
  (``clerk._runner.LEAVE_WAIT``) and then waits, up to ``LEAVE_ACK_WAIT`` from its leave,
  until a manager acknowledged every ``ok`` result of its runs: they go to the highest claim
  it knows, and again every ``RESEND_INTERVAL``. A manager elected after its LEAVE died with
  the old one still lists it and announces itself (COORDINATOR, which the core of a node
  that left still reads: ``LeftHeard``); it gets the member's OFFER (the runs in flight
  here: its table may lack them), then the results, then the LEAVE (``on_left_heard``), so
  it neither fails those runs (a member silent past the member timeout) nor sends their
  next slots beside them. Before, the member sent its results once, to a manager that may
  have crashed, and exited: the next manager ran the next slot from the state before, and
  nothing was counted. Past the bound each one is logged as a WARNING (task, slot, run,
  the state lost) and counted (``results_lost_on_leave`` in the metrics).
* **A result is acknowledged once its row is on every live member** (:mod:`clerk._resultacks`):
  applied at once, but its RESULT_ACK waits until every live member acknowledged the table
  log's sequence holding it, so a manager that dies in between loses nothing (the node
  resends the result to the next manager).
* **Quorum mode** (:mod:`clerk._runquorum`): a result counts, and is acknowledged, only once
  the record it produced is committed by a majority of voters.
* **One log line per finished run** (task, slot, node, duration, outcome): DEBUG when ok,
  WARNING otherwise, with the remote traceback; a run refused as stale: a WARNING at most
  once per ``STALE_LOG_S`` (the others at DEBUG, counted into the next line).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

from clerk._adoptedruns import (
    UNLISTED_RUN_WAIT_S,
    bound_runs_of,
    bounded_at_takeover,
    fails_at_takeover,
)
from clerk._clockskew import local_due
from clerk._core import Role, StaleExecute
from clerk._dispatch import Dispatch, Finished
from clerk._lead import EARLY_LIMIT_MS, too_late
from clerk._messages import Claim, Execute, Result, ResultAck, RunQuery
from clerk._replication import LOCAL_GAP_S, REPLICATE_GAP_S
from clerk._runquorum import QuorumWriting
from clerk._transport import Inbound
from clerk._workerdeaths import HELD_BACK

__all__ = ["LEAVE_ACK_WAIT", "LOCAL_GAP_S", "MAX_WAITING_RESULTS", "REPLICATE_GAP_S",
           "STALE_LOG_S", "ResultRouting"]

#: One WARNING per this many seconds at most for stale EXECUTEs (the first of a burst in full,
#: the others counted into the next line, each at DEBUG). On an overloaded node nearly every
#: run can arrive stale, and a synchronous WARNING per run (~5 % of a follower's loop under
#: py-spy at 1,200 runs/s) fed the overload that made them stale.
STALE_LOG_S = 1.0
#: RESULTs kept while this node takes over (until its table is loaded): one per run in flight
#: in the table at most; the bound is for forgeries.
MAX_WAITING_RESULTS = 4096
#: A member that left waits this long at most, from its leave, for a manager to acknowledge
#: its results (s). A crashed manager is replaced within about a second (the manager
#: timeout, 0.7 s by default, and an election), a run in flight takes up to ``LEAVE_WAIT``
#: (5 s) more, and the agent has 15 s to stop (clerk._node.AGENT_SHUTDOWN_MS).
LEAVE_ACK_WAIT = 10.0

log = logging.getLogger("clerk.tasks")


class ResultRouting(QuorumWriting):
    """EXECUTE, RESULT, RESULT_ACK, RUN_QUERY and the outbox (see the module docstring)."""

    #: When the cost pacing alone lets the next round go (``_replicate_after`` without the
    #: gap); see ``_replicate_result``.
    _paced_after: float = -math.inf
    #: A step of replication that leaves rows to encode sends a round only once the gap has
    #: passed since the last one (clerk._replication.Replication._replicate).
    _slice_round_gap = REPLICATE_GAP_S
    #: Stale EXECUTEs since the last one logged as a WARNING, and until when the next ones
    #: are only counted (monotonic): see ``_stale``.
    _stale_unlogged = 0
    _stale_quiet_until = -math.inf
    #: The manager's lines for refused runs (``_log_finished``): as ``_stale``'s.
    _refused_unlogged = 0
    _refused_quiet_until = -math.inf

    def on_execute(self, msg: Execute, now: float, inbound: Inbound | None) -> None:
        msg = self._in_my_time(msg, now)
        late = self._late(msg, self.agent.clock.wall())
        if late:
            self._stale(msg, late)
            self._send_result(Result(self.agent.me, self.agent.core.term, msg.task, msg.run_id,
                                     msg.slot, "refused", None, 0.0, f"stale: {late}"),
                              msg.sender.address)
            return
        if self._leave_started is not None:
            self.agent.metrics.executes_refused += 1
            self._send_result(Result(self.agent.me, self.agent.core.term, msg.task, msg.run_id,
                                     msg.slot, "refused", None, 0.0, "node is leaving"),
                              msg.sender.address)
            return
        if self.executor is None:
            self.agent.metrics.executes_refused += 1
            self._send_result(Result(self.agent.me, self.agent.core.term, msg.task, msg.run_id,
                                     msg.slot, "error", None, 0.0,
                                     f"node {self.agent.me.name} has no tasks loaded"),
                              msg.sender.address)
            return
        self.executor.submit(msg, msg.sender.address, now)

    def _in_my_time(self, msg: Execute, now: float) -> Execute:
        """``msg`` with its due time and deadline moved into this node's time base when its
        clock is off from its sender's (clerk._clockskew.local_due; the estimate must come from
        that manager's heartbeats), else as it is."""
        skew = self.agent.core.clock_skew
        off = (skew.offset(now, self.agent.clock.wall()) if skew.source and skew.source
               == f"{msg.sender.name}/{msg.sender.incarnation}" else None)
        moved = local_due(off, msg.due_ms, msg.deadline_ms)
        if moved is None:
            # (Judged by our own clock: status clock.unestimated_runs; not our own runs.)
            skew.unestimated += off is None and msg.sender.name != self.agent.me.name
            return msg
        ex = self.executor
        self.as_sent.note(msg.run_id, msg.due_ms, msg.deadline_ms,
                          lambda: {m.run_id for m in ex.runs_in_flight()} if ex else set())
        return dataclasses.replace(msg, due_ms=moved[0], deadline_ms=moved[1])

    def _late(self, msg: Execute, wall: float) -> str:
        """Why this EXECUTE must not run (it arrived too late, or far too early), or ""."""
        wall_ms = wall * 1000
        if msg.due_ms and msg.due_ms - wall_ms > EARLY_LIMIT_MS:
            return (f"arrived {msg.due_ms - wall_ms:.0f} ms before its due time, more than "
                    f"{EARLY_LIMIT_MS} ms (do the clocks of this node and the manager agree?)")
        d = self.defs.get(msg.task)
        return too_late(wall_ms, msg.due_ms, msg.deadline_ms, d.interval if d else None)

    def _stale(self, msg: Execute, why: str) -> None:
        """Count a stale EXECUTE (the status's ``stale``) and log it: the first of a burst as
        a WARNING, the others of the next ``STALE_LOG_S`` counted into the next WARNING (each
        at DEBUG)."""
        self.stale += 1
        now = self.agent.clock.monotonic()
        if now < self._stale_quiet_until:
            self._stale_unlogged += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("dropped a stale EXECUTE task=%s slot=%d term=%d run=%s from %s: %s",
                          msg.task, msg.slot, msg.term, msg.run_id, msg.sender.name, why)
            return
        more, self._stale_unlogged = self._stale_unlogged, 0
        self._stale_quiet_until = now + STALE_LOG_S
        log.warning("dropped a stale EXECUTE task=%s slot=%d term=%d run=%s from %s: %s%s",
                    msg.task, msg.slot, msg.term, msg.run_id, msg.sender.name, why,
                    f" (and {more} more since the last such line, logged at DEBUG only; the "
                    f"status's stale count has them all)" if more else "")

    #: This node left as a member (``on_leave`` while not scheduling): its results wait for
    #: a manager's RESULT_ACK (``left_results_taken``); the claim they last went to.
    _left_as_member = False
    _left_to: Claim | None = None

    def left_results_taken(self, now: float) -> bool:
        """A member that left: has a manager acknowledged every ``ok`` result of its runs (or
        has it no use for them)? True too once ``LEAVE_ACK_WAIT`` passed since the leave:
        then each one still waiting is logged (a WARNING: task, slot, run, the state lost)
        and counted (``results_lost_on_leave``)."""
        if not self._left_as_member or self._leave_started is None:
            return True
        waiting = [r for r in self.outbox.waiting() if r.outcome == "ok"]
        if not waiting:
            return True
        if now - self._leave_started < LEAVE_ACK_WAIT:
            return False
        claim = self.agent.core.highest
        for result in waiting:
            self.agent.metrics.results_lost_on_leave += 1
            log.warning("leaving with the result of run task=%s slot=%d run=%s that no manager "
                        "acknowledged within %.0f s (last sent to %s): its update is lost "
                        "(state %s)", result.task, result.slot, result.run_id,
                        LEAVE_ACK_WAIT, claim.name if claim is not None else "nobody",
                        json.dumps(result.state)[:200],
                        extra={"task": result.task, "slot": result.slot, "run": result.run_id})
        return True

    def _resend_left(self, now: float) -> None:
        """A member that left, with results no manager acknowledged: to the highest claim it
        knows, at once when that claim is new (a COORDINATOR), else every
        ``RESEND_INTERVAL``."""
        claim = self.agent.core.highest
        if claim is None or self.offer_pending(claim.address):
            return  # (an OFFER under way to it sends them all once it is sent)
        if claim != self._left_to:
            self._left_to = claim
            results = self.outbox.unacked(now)
        else:
            results = self.outbox.due(now)
        if claim.address != self.agent.me.address:
            for result in results:
                self.agent.send(claim.address, result, now)

    def on_stale_execute(self, effect: StaleExecute) -> None:
        """The core refused an EXECUTE from a stale claim."""
        self._stale(effect.msg, effect.reason)

    def on_result_ack(self, msg: ResultAck) -> None:
        self.outbox.ack(msg.run_id)

    def on_run_query(self, msg: RunQuery, now: float) -> None:
        """Our manager adopted this run and asks what became of it."""
        result = self.outbox.find(msg.run_id)
        if result is not None:
            self.agent.send(msg.sender.address, result, now)
        elif self.executor is None or not self.executor.has_run(msg.run_id):
            self._send_result(self._unknown_run(msg.task, msg.run_id, -1), msg.sender.address)
        # else: still running; its result goes to our manager when it ends.

    def _unknown_run(self, task: str, run_id: str, slot: int) -> Result:
        return Result(self.agent.me, self.agent.core.term, task, run_id, slot, "refused", None,
                      0.0, f"node {self.agent.me.name} has no record of run {run_id} (its "
                      "EXECUTE was lost with the previous manager)")

    def expects(self, msg: Result) -> bool:
        """A RESULT for a run in flight, from the node it was sent to (which may have left the
        member list since: a manager that handed over while running a task itself)."""
        return self.scheduler.active and self.scheduler.expects(msg.task, msg.run_id,
                                                                msg.sender.name)

    def runs_on(self, node: str) -> bool:
        """Does the table show a run in flight on ``node`` (O(runs in flight))? A node that
        left with one going answers a new manager's COORDINATOR with its OFFER, its results
        and its LEAVE (clerk._adoptedruns): its OFFER is not an intruder's."""
        sched = self.scheduler
        if not sched.active:
            return False
        for name in sched.in_flight():
            run = sched.records[name].running
            if run is not None and run["node"] == node:
                return True
        return False

    def on_result(self, msg: Result, now: float, wall: float) -> bool:
        """Apply a RESULT; False if this node is not scheduling (yet): then it is not
        acknowledged, and its node sends it again."""
        if not self.scheduler.active:
            if self._activate is not None and self.agent.core.is_manager \
                    and msg.sender.name != self.agent.me.name:
                # Taking over (the table loads in slices): its node sent it to us as its new
                # manager, and would send it again only after RESEND_INTERVAL. Applied once
                # the table is loaded (the newest per run; at most one per run in flight).
                self._results_waiting.pop(msg.run_id, None)
                self._results_waiting[msg.run_id] = msg
                while len(self._results_waiting) > MAX_WAITING_RESULTS:
                    del self._results_waiting[next(iter(self._results_waiting))]
            return False
        if self.wa is None and self._acks.holds(msg.run_id):
            return True  # applied; its node resent it before the ACK left (see below)
        fin = self.scheduler.on_result(msg.task, msg.run_id, msg.sender.name, msg.outcome,
                                       msg.state, msg.duration_ms, msg.error, wall,
                                       slot=msg.slot)
        if self.wa is not None:  # quorum mode: it counts once its record is committed
            local = msg.sender.name == self.agent.me.name
            if fin is not None:
                self._log_conflicts()
                self._quorum_result(fin, msg.task, None if local else msg.sender.address,
                                    msg.run_id, now, wall)
                return not local
            if msg.run_id in self._uncommitted:
                return False  # a resend while its record is being committed: ack comes then
            if local:
                return True
        elif fin is None and self.scheduler.keeps_result(msg.run_id):
            # An offered run's result that came while the run waits behind the row's run in
            # flight: kept, applied once the run is adopted (clerk._unseen). Not acknowledged
            # until then: its node keeps it (and gives it to the next manager if we die).
            return False
        elif fin is not None:
            self._log_finished(fin)
            self._log_conflicts()
            self._replicate_result(msg.sender.name == self.agent.me.name, now)
            if self.store is not None:
                self.store.mark()
            if (self.scheduler.draining and self.agent.core._successor
                    and msg.sender.name != self.agent.me.name):
                # A leaving manager applied it to its own last table: its successor adopted
                # the run with the table and needs it too (else the newest count is only on
                # this node's disk, which the successor does not wait for at a restart).
                self._held.append(msg)
        if msg.sender.name == self.agent.me.name:
            return True
        if self.wa is None and not (self.scheduler.draining
                                    and self._left_member(msg.sender.name,
                                                          msg.sender.incarnation)):
            # Applied, or of no use to us (not a run in flight): acknowledged once every live
            # member holds the table as it is now (clerk._resultacks): until then its node
            # keeps the result and gives it to the next manager if this one dies. (A leaving
            # manager acknowledges a node that left at once: its table is handed over and
            # written last, and that node waits for the ACK to exit.)
            if self._acks.hold(msg.sender.address, msg.task, msg.run_id, now) \
                    and not self._replicate_dirty:
                self._stamp_acks()
            return True
        self.agent.send(msg.sender.address, ResultAck(self.agent.me, self.agent.core.term,
                                                      msg.task, msg.run_id), now)
        return True

    def _left_member(self, name: str, incarnation: str) -> bool:
        """Is the node ``name`` (that incarnation) no longer a member (it left)?"""
        row = self.agent.core.members.get(name)
        return row is None or row.peer.incarnation != incarnation

    def _acks_now(self, now: float) -> None:
        """A leaving manager stops managing: the RESULT_ACKs it holds for nodes that are no
        longer live members (they left, and wait for them) go now; the others are dropped
        as before, their nodes resending to the next manager (clerk._resultacks)."""
        core = self.agent.core
        live = {m.peer.address for m in core.members.others() if m.alive}
        for ack in self._acks.take_all():
            if ack.to not in live:
                self.agent.send(ack.to, ResultAck(self.agent.me, core.term, ack.task,
                                                  ack.run_id), now)

    def _stamp_acks(self) -> None:
        """Every change so far is in the table log: the held ACKs wait for its sequence."""
        log = self.agent.core.table_log
        if log.complete and self._acks.waiting_stamp():
            self._acks.stamp(log.log, log.seq)

    def release_acks(self, now: float) -> None:
        """End of a loop turn that sent a heartbeat round (or when the oldest waited
        ``ACK_WAIT``): send the RESULT_ACKs whose rows every live member holds now. They leave
        in the same batch as the heartbeat each member gets in that round (clerk._batch): one
        message, one wake-up of the member, instead of one per acknowledgement."""
        acks = self._acks
        core = self.agent.core
        if not len(acks) or (core.heartbeat_rounds == self._acks_round
                             and now < acks.next_deadline()):
            return
        self._acks_round = core.heartbeat_rounds
        for ack in acks.release(core.table_log.log, core.replicated_upto(), now):
            self.agent.send(ack.to, ResultAck(self.agent.me, core.term, ack.task, ack.run_id),
                            now)

    def _log_conflicts(self) -> None:
        for c in self.scheduler.conflicts_out:
            log.warning("conflict task=%s: %d update(s) dropped (kept %s; dropped %s)",
                        c.task, c.dropped, c.kept, c.lost)
        self.scheduler.conflicts_out.clear()

    def _send_result(self, result: Result, reply_to: str) -> None:
        """Results go to the manager this node follows now (it may have changed during the
        run; a leaving node's successor), else back to the sender."""
        core = self.agent.core
        now = self.agent.clock.monotonic()
        if result.sender.name == self.agent.me.name:
            self.outbox.add(result, now)
        claim = core.manager_claim
        if core.role in (Role.LEAVING, Role.STOPPED) or claim is None:
            claim = core.highest
        to = claim.address if claim is not None else reply_to
        if to == self.agent.me.address and core.is_manager:  # local: no network needed
            if self.on_result(result, now, self.agent.clock.wall()):
                self.outbox.ack(result.run_id)
            return
        if to == self.agent.me.address and core.role in (Role.LEAVING, Role.STOPPED):
            # A leaving manager's own run: its successor (who adopted the run with the table)
            # is not confirmed yet, and this node no longer schedules. Hold the result until
            # the successor's claim arrives (see _flush_held) instead of losing it.
            self._held.append(result)
            if self.scheduler.draining:  # and into our own last table (a full stop)
                self.on_result(result, self.agent.clock.monotonic(), self.agent.clock.wall())
            return
        if to == self.agent.me.address:
            to = reply_to
        if self.offer_pending(to):
            return  # after our OFFER to it (kept in the outbox: clerk._offerjob)
        self.agent.send(to, result, now)

    def _flush_held(self, now: float) -> bool:
        """Send held results to the successor once its claim is known; True if sent. A node
        that stopped before its successor confirmed (``handover_timeout``: the successor was
        frozen or slow) hears no claim any more: they go to the member it handed over to."""
        core = self.agent.core
        claim = core.highest
        if claim is not None and claim.address != self.agent.me.address:
            to = claim.address
        else:
            if core.role is Role.STOPPED and not core._successor and self.scheduler.draining:
                # The last manager of a full stop (it handed over to nobody): they are in the
                # table it writes last, and nobody is there to take them. Kept, they held
                # its exit for LEAVE_WAIT (5 s) after its own last run.
                self._held = []
                return False
            row = core.members.get(core._successor) if core._successor else None
            if core.role is not Role.STOPPED or row is None:
                return False
            to = row.peer.address
        held, self._held = self._held, []
        for result in held:
            self.agent.send(to, result, now)
        log.info("sent %d result(s) applied while leaving to the successor (%s)", len(held),
                 ", ".join(f"task={r.task} run={r.run_id}" for r in held[:5]))
        return True

    def on_member_left(self, name: str) -> None:
        """``name`` left (its LEAVE reached us): its runs in flight stay open for their
        results, ``UNLISTED_RUN_WAIT_S`` at most (clerk._adoptedruns, ``bound_runs_of``: a
        member stops a run still going after LEAVE_WAIT and sends no result for it)."""
        if self.scheduler.active:
            for task in bound_runs_of(self.scheduler, name, self.agent.clock.wall()):
                log.info("task=%s: its node %s left with the run going: the run stays open "
                         "until its result or deadline, %.0f s at most", task, name,
                         UNLISTED_RUN_WAIT_S)

    def _resolve_adopted(self, now: float, wall: float, graceful: bool) -> None:
        """Runs in flight we adopted with the table: ask their nodes rather than wait out
        their deadlines. After a crash, a run whose node this manager holds as dead fails now,
        one on a node it does not list stays open, ``UNLISTED_RUN_WAIT_S`` at most (after a
        hand-over too: clerk._adoptedruns); one on this node
        that is neither running nor finished here was never received (lost with the old
        manager). A graceful hand-over's leaving manager reports its own run by itself."""
        core = self.agent.core
        me = self.agent.me
        for name in self.scheduler.in_flight():  # (not every row: 10,000 at a takeover)
            rec = self.scheduler.records[name]
            run = rec.running
            if run is None:
                continue
            node, run_id = str(run["node"]), str(run["run"])
            if node == me.name:
                result = self.outbox.find(run_id)
                if result is not None:
                    # Acked now unless quorum mode holds it until its record commits
                    # (on_result says which; the commit acks it then).
                    if self.on_result(result, now, wall):
                        self.outbox.ack(run_id)
                elif self.executor is None or not self.executor.has_run(run_id):
                    self.on_result(self._unknown_run(name, run_id, int(run["slot"])), now,
                                   wall)
                continue
            row = core.members.get(node)
            if row is not None and row.alive:
                self.agent.send(row.peer.address, RunQuery(me, core.term, name, run_id), now)
            elif fails_at_takeover(row is not None, False, graceful, core.quorum is not None):
                for fin in self.scheduler.fail_node(node, wall):
                    self._log_finished(fin)
            elif bounded_at_takeover(row is not None, False, graceful, core.quorum is not None):
                # Not listed: it may have left with the run going (its LEAVE reached the
                # manager that crashed or handed over since); it answers our COORDINATOR
                # with the result, or died meanwhile: bounded either way.
                self.scheduler.bound_run(name, (wall + UNLISTED_RUN_WAIT_S) * 1000)
                log.info("task=%s run=%s: its node %s is not a member (it may have left with "
                         "the run going): the run stays open until its result or deadline, "
                         "%.0f s at most", name, run_id, node, UNLISTED_RUN_WAIT_S)

    def _apply_waiting_results(self, now: float, wall: float) -> None:
        """The RESULTs that came while the table was loading (on_result), now that it is."""
        waiting, self._results_waiting = self._results_waiting, {}
        for result in waiting.values():
            self.on_result(result, now, wall)

    def _resend(self, now: float, wall: float) -> None:
        """Unacknowledged results: to the manager we follow, or apply them if it is us."""
        core = self.agent.core
        if self._left_as_member and core.role is Role.STOPPED:
            if self.outbox.pending():
                self._resend_left(now)
            return
        due = self.outbox.due(now)
        if self.scheduler.active:
            if self.outbox.pending():
                for result in self.outbox.unacked(now):
                    if self.on_result(result, now, wall):
                        self.outbox.ack(result.run_id)
            return
        claim = core.manager_claim
        if claim is None or claim.address == self.agent.me.address or core.role in (
                Role.LEAVING, Role.STOPPED) or self.offer_pending(claim.address):
            return  # (an OFFER under way sends them all once it is sent)
        for result in due:
            self.agent.send(claim.address, result, now)

    def _replicate(self, now: float, force: bool = False) -> None:
        """Replication (clerk._replication), once the runs and results this turn queued have
        left: a round (the changed rows encoded, a heartbeat per member) took ~100-250 µs of
        the loop, and an EXECUTE sent with it in one batch also waited at its node for the
        heartbeat's decoding before it was handed to a worker. Queued since the dispatch
        tick began, they leave microseconds apart, as before, and the round follows at once
        in the same turn."""
        if (force or now >= self._replicate_after) and self.agent.core.is_manager:
            self.agent.flush_urgent(now)
            super()._replicate(now, force)
            self._paced_after = self._replicate_after  # the cost pacing's, without the gap
            if not self._replicate_dirty:  # a round that sent every change: the next waits
                self._replicate_after = max(self._replicate_after, now + REPLICATE_GAP_S)
            return
        super()._replicate(now, force)

    def _replicate_result(self, local: bool, now: float) -> None:
        """A result was applied: replicate it, after the gap, unless it is of a run on this
        node (no other node's outbox holds it: see REPLICATE_GAP_S), whose round waits only
        ``LOCAL_GAP_S`` after the last one (and the cost pacing)."""
        if local:
            self._replicate_after = min(self._replicate_after,
                                        max(self._paced_after, self._round_went + LOCAL_GAP_S))
        self._replicate(now)

    def _dispatch(self, d: Dispatch, now: float) -> None:
        core = self.agent.core
        member = core.members.get(d.node)
        if member is None:
            return
        msg = Execute(self.agent.me, core.term, d.task, d.run_id, d.slot, d.state,
                      d.timeout_ms, d.init, d.due_ms, d.deadline_ms)
        if d.node == self.agent.me.name:
            if self.executor is not None:
                self.executor.submit(msg, self.agent.me.address, now)
        else:
            self.agent.send(member.peer.address, msg, now)

    def send_dispatch(self, d: Dispatch, now: float) -> None:
        self._dispatch(d, now)

    def _log_finished(self, fin: Finished) -> None:
        if fin.outcome in ("ok", "error", "timeout"):  # runs, not skipped or refused slots
            self.agent.metrics.observe_run(fin.task, fin.duration_ms, fin.lateness_ms)
        # One line per run: DEBUG when it went well (at 1,000 runs/s an INFO line per run costs
        # the manager's loop more than the run's round trip), WARNING when it did not.
        level = logging.DEBUG if fin.outcome == "ok" else logging.WARNING
        more = ""
        if fin.outcome == "refused" and (fin.error.startswith("stale: ")
                                         or HELD_BACK in fin.error):
            # A run its node refused as stale (it reached the node or a worker too late). On
            # an overloaded cluster that can be most runs, and the node already logged each
            # one (``_stale``, a WARNING a second at most). Other refusals (the node is
            # leaving, has no record of the run, does not follow this manager) are rare and
            # logged nowhere else: a WARNING each (tests/unit/test_review9_refused.py). A
            # WARNING per run here was ~6 % of the manager's loop under py-spy at 1,400
            # runs/s (~200 a second), and fed the overload. So with a run refused because
            # its task is held back on its node (it killed its worker there: a task doing so
            # every 100 ms has ~10 a second; clerk._workerdeaths). As there: the first of a burst
            # in full, the others of the next ``STALE_LOG_S`` at DEBUG and counted into the
            # next line; the task's ``refused`` count has them all.
            now = self.agent.clock.monotonic()
            if now < self._refused_quiet_until:
                self._refused_unlogged += 1
                level = logging.DEBUG
            else:
                if self._refused_unlogged:
                    more = (f" (and {self._refused_unlogged} more refused runs, stale or held "
                            "back, since the "
                            "last such line, logged at DEBUG only; the tasks' refused counts "
                            "have them all)")
                self._refused_unlogged = 0
                self._refused_quiet_until = now + STALE_LOG_S
        if not log.isEnabledFor(level):
            return
        extra = {"task": fin.task, "slot": fin.slot, "run": fin.run_id or None}
        log.log(level, "run task=%s slot=%d node=%s duration_ms=%.1f rtt_ms=%.2f outcome=%s%s%s",
                fin.task, fin.slot, fin.node or "-", fin.duration_ms, fin.round_trip_ms,
                fin.outcome,
                f" error={fin.error.splitlines()[-1] if fin.error else ''!r}"
                if fin.outcome != "ok" else "", more, extra=extra)
        if fin.outcome == "error" and "\n" in fin.error:
            log.warning("task=%s slot=%d remote traceback from %s:\n%s", fin.task, fin.slot,
                        fin.node, fin.error, extra=extra)
