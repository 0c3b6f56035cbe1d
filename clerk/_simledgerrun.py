"""The simulated node's side of a ledger run (:mod:`clerk._simtasks`): an EXECUTE held until
its due time, the ledger's execution, where its RESULT goes, and the OFFER to a new manager
(the results wait behind it; its last part carries the runs in flight here, as the real
node's: :mod:`clerk._offerruns`); and the quorum-mode manager's write-ahead steps.

Split out of :mod:`clerk._simtasks` (the layer's event handling, replication, merging OFFERs
and the simulated disk stay there) to keep each module under ~600 lines. :class:`LedgerRuns`
is a mixin of :class:`clerk._simtasks.LedgerLayer`: the attributes and methods it declares
are the layer's.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clerk._clockskew import local_due
from clerk._core import OfferAgain, Role
from clerk._messages import Execute, Offer, Result, reads_table_at
from clerk._offerjob import number_parts
from clerk._offerruns import run_of, with_runs
from clerk._replica import offer_keys, row_key
from clerk._replication import offer_parts
from clerk._schedule import pack_table
from clerk._simattrs import LedgerAttrs
from clerk._writeahead import WriteAhead

if TYPE_CHECKING:
    pass

__all__ = ["DISPATCH_HOLD_S", "LEAVE_ACK_WAIT_S", "LEAVE_WAIT_S", "RESEND_S", "RUN_S",
           "TAKEOVER_BEFORE_LEAVE_S", "WALL0", "LedgerRun", "LedgerRuns"]

#: The simulated wall clock: simulated time 0 is this wall time (a realistic slot number).
WALL0 = 1_700_000_000.0
#: How long a run takes on its node (s): well under the interval, like the issue's ledger.
RUN_S = 0.002
#: ``SimLedger.hold_dispatches``: how long a dispatch-only tick's rows may wait for a round
#: (s): the reverted runner's ``DISPATCH_HOLD_S``, under exploration again now that a
#: member's OFFER carries its runs in flight (clerk._offerruns).
DISPATCH_HOLD_S = 0.025
#: A leaving node waits this long for its runs in flight (clerk._runner.LEAVE_WAIT).
LEAVE_WAIT_S = 5.0
#: ... and, from its leave, this long at most for a manager to acknowledge its results
#: (clerk._runner.LEAVE_ACK_WAIT).
LEAVE_ACK_WAIT_S = 10.0
#: Default mode: an unacknowledged result goes again to the current manager this often (s),
#: as the real outbox's RESEND_INTERVAL.
RESEND_S = 1.0
#: A node asked to leave while it takes over finishes that first, this long at most
#: (clerk._runner.TAKEOVER_BEFORE_LEAVE).
TAKEOVER_BEFORE_LEAVE_S = 2.0


@dataclass(frozen=True)
class LedgerRun:
    """One execution of the ledger task."""

    at: float  # simulated time
    slot: int
    node: str
    term: int
    manager: str
    before: int | None  # None: an init
    after: int
    whole_for: float  # how long the network had been whole (-1: partitioned)
    managers: int  # live managers when it ran (2+: a split brain, e.g. restarted seeds)
    took: float = RUN_S  # how long it ran (s)
    run_id: str = ""



class LedgerRuns(LedgerAttrs):
    """A node's runs of the ledger (see the module docstring)."""

    wa: WriteAhead | None
    never_left: set[tuple[str, str]]  # held dispatches of a lost ballot (quorum mode)
    outbox: deque[Result]
    unacked: dict[str, Result]
    #: The manager our OFFER is under way to (sent after ``world.offer_delay``): our results
    #: to it wait for it, as the real node's (clerk._offerjob).
    _offer_to: str | None
    #: The EXECUTEs held for their due time or running here (an executor's queue and
    #: workers): what an OFFER says is in flight here (clerk._offerruns), by run id.
    in_flight: dict[str, Execute]

    _resend_at: float
    _left_at: float | None  # (clerk._simacks)
    _left_to: Any
    _leave_after_offer: str | None

    #: The rows waiting for ``_round_due`` are a dispatch-only tick's, held
    #: (``SimLedger.hold_dispatches``): the next change's round takes them at once.
    _held = False
    _round_due: float | None

    def wall(self) -> float:
        raise NotImplementedError

    def _hold(self) -> None:
        """A tick sent runs of short tasks and changed nothing else: their rows (in flight)
        wait for the next change's round, or ``DISPATCH_HOLD_S``; a round already due (the
        gap's) takes them as it is."""
        if self._round_due is None:
            self._round_due, self._held = self.net.now + DISPATCH_HOLD_S, True
        elif self.net.now >= self._round_due:
            self._replicate()

    def _send_execute(self, d: Any) -> None:
        raise NotImplementedError

    def _replicate(self) -> None:
        raise NotImplementedError

    def _changed(self, local: bool = False, urgent: bool = False) -> None:
        raise NotImplementedError

    def _persist(self, changed: bool) -> None:
        raise NotImplementedError

    # --- quorum mode (the manager's write-ahead) -------------------------------------------

    def _quorum_table(self, proposer: Any) -> WriteAhead:
        """Take the rows phase 1 learned: merge their records, continue after their
        reservations."""
        table = self.node.core.quorum_table
        records = {t: row.record for t, row in table.items() if isinstance(row.record, dict)}
        if records:
            self.scheduler.merge({"tasks": records}, self.wall(), source="voters",
                                  committed=True)  # (whatever clocks said)
        wa = WriteAhead({t: row.reserved for t, row in table.items()}, proposer.reserved)
        wa.continue_after(self.scheduler.records, self.never_left)
        self.never_left = set()
        return wa

    def _write(self, rows: dict[str, Any]) -> list[int]:
        assert self.wa is not None
        seqs, effects = self.node.core.quorum_write(rows, self.net.now)
        self.net.apply(self.node, effects)
        self.wa.wrote(seqs, self.wall() * 1000)
        return seqs

    def _result(self, task: str) -> None:
        """A run finished on the manager: write its record; it counts once committed."""
        assert self.wa is not None
        rec = self.scheduler.records[task].to_json()
        rec["running"] = None
        seqs = self._write({task: {"reserved": None, "record": rec}})
        self.wa.hold_result((task, int(rec.get("version", 0))), task, seqs)

    def _committed(self, seq: int) -> bool:
        assert self.wa is not None
        changed = False
        for item in self.wa.on_committed(seq, self.wall() * 1000):
            if isinstance(item, tuple):
                self.world.committed.append((self.net.now, self.node.name,
                                             self.node.core.term, item[1]))
                changed = True
            else:
                self._send_execute(item)
        if changed:
            self._replicate()
            self._persist(True)
        return False

    # --- execution ------------------------------------------------------------------------

    def _execute(self, msg: Execute, local: bool) -> None:
        """Run the ledger at the run's due time (it may arrive ahead: clerk._lead) if this node
        is still up then; the result leaves RUN_S later (if it is still up)."""
        # The due time by this node's own wall clock (it may be off: world.offsets), moved
        # into it from the manager's by the offset estimate (clerk._clockskew), as the real
        # node's (clerk._routing._in_my_time).
        due_ms, corrected = msg.due_ms, False
        skew = self.node.core.clock_skew
        if skew.source == f"{msg.sender.name}/{msg.sender.incarnation}":
            moved = local_due(skew.offset(self.net.now, self.wall()), msg.due_ms,
                              msg.deadline_ms)
            if moved is not None:
                due_ms, corrected = moved[0], True
        start = self.net.now + (due_ms / 1000 - self.wall()) if due_ms else self.net.now
        self.in_flight[msg.run_id] = msg
        if start <= self.net.now:
            self._started(msg, corrected)
            self._run(msg, local)
            return
        incarnation = self.node.core.me.incarnation
        node = self.node

        def held() -> None:
            if node.up and node.core.me.incarnation == incarnation and node.layer is self:
                self._started(msg, corrected)
                self._run(msg, local)  # else: crashed meanwhile, the run never started

        self.net.at(start, held)

    def _started(self, msg: Execute, corrected: bool) -> None:
        self.world.starts.append((self.net.now, msg.sender.name, msg.due_ms, self.node.name,
                                  corrected))

    def _run(self, msg: Execute, local: bool) -> None:
        before = None if msg.init else int(msg.state)
        after = 1 if before is None else before + 1  # init gives 0, the run adds 1
        self.world.runs.append(LedgerRun(self.net.now, msg.slot, self.node.name, msg.term,
                                         msg.sender.name, before, after,
                                         self.net.whole_for(), len(self.net.managers())))
        core = self.node.core
        run_s = self.world.run_s
        if msg.run_id in self.world.long_run_ids or (
                self.world.long_run_chance > 0
                and self.net.rng.random() < self.world.long_run_chance):
            run_s = self.world.long_run_s  # a short task that suddenly runs long
        self.world.runs[-1] = dataclasses.replace(self.world.runs[-1], took=run_s,
                                                  run_id=msg.run_id)
        result = Result(core.me, core.term, msg.task, msg.run_id, msg.slot, "ok", after,
                        run_s * 1000, "")
        incarnation = core.me.incarnation
        node = self.node

        def deliver() -> None:
            if not node.up or node.core.me.incarnation != incarnation or node.layer is not self:
                return  # crashed or restarted meanwhile: the run's result is lost
            self.in_flight.pop(msg.run_id, None)
            self.world.ended.add(msg.run_id)
            to = msg.sender.address
            if core.quorum is not None:
                self.outbox.append(result)
            else:
                # As the real node (clerk._routing._send_result): to the manager this node
                # follows now (a leaving node's successor), which may be itself.
                claim = core.manager_claim
                if core.role in (Role.LEAVING, Role.STOPPED) or claim is None:
                    claim = core.highest
                if claim is not None:
                    to = claim.address
            if local or to == core.me.address:
                if not self.scheduler.active and core.is_manager and core.quorum is None:
                    # Taking over (its table still loading): kept, and applied once it
                    # schedules, as the real node's outbox keeps it (clerk._outbox).
                    self.unacked[result.run_id] = result
                if self.scheduler.active and self.scheduler.on_result(
                        result.task, result.run_id, node.name, "ok", after, run_s * 1000, "",
                        self.wall(), slot=None if local or not self.world.unseen_runs
                        else msg.slot) is not None:
                    if self.wa is not None:
                        self._result(result.task)
                        return
                    self._changed(local=True)
                    self._persist(True)
                if not core.is_manager and core.quorum is None:
                    self._to_successor(result, core, self.net.now + LEAVE_WAIT_S)
            else:
                if core.quorum is None:
                    self.unacked[result.run_id] = result
                    if self._left_at is not None and self.world.leave_keeps_results:
                        # (a member that left: again to all, if unacknowledged, in RESEND_S)
                        self._left_to, self._resend_at = core.highest, self.net.now + RESEND_S
                if to != self._offer_to:  # (else with the OFFER: kept above)
                    self.net.send(node.name, to, result)

        self.net.at(self.net.now + run_s, deliver)

    def _to_successor(self, result: Result, core: Any, until: float) -> None:
        """A result a leaving manager got after it stopped scheduling (its own run's, or a
        member's it applied to its own last table while draining): the successor adopted the
        run with the table, so the result goes there once its claim is known, as the real
        node's held results do (``_flush_held``). A node that stopped before the successor
        confirmed (``handover_timeout``, a second stop request) hears no claim any more: it
        goes to the member it handed over to."""
        if not self.node.up or self.node.core is not core:
            return  # crashed or restarted meanwhile
        claim = core.highest
        successor = core.members.get(core._successor) if core._successor else None
        if claim is not None and claim.address != core.me.address:
            self.net.send(self.node.name, claim.address, result)
        elif core.role is Role.STOPPED and successor is not None:
            self.net.send(self.node.name, successor.peer.address, result)
        elif self.net.now < until:
            self.net.at(self.net.now + 0.05, lambda: self._to_successor(result, core, until))

    def _always_offers(self, name: str) -> bool:
        row = self.node.core.members.get(name)
        return row is not None and reads_table_at(row.peer)

    def _offer_again(self, effect: OfferAgain) -> None:
        """The link to the manager we follow is up again: our OFFER to it again (the first
        may have been lost), as the real runner's ``on_offer_again``; not while one is under
        way to it (``SimLedger.offer_again``)."""
        claim = self.node.core.manager_claim
        if (self.world.offer_again and claim is not None and claim.address == effect.address
                and self._offer_to != effect.address):
            self._offer(claim.address, effect.manager)

    def _offer(self, to: str, manager: str, whole: bool = False) -> None:
        """The rows this node holds with a state, as the real node's ``Replication._offer``
        chooses them (see ``SimLedger.offers``)."""
        core = self.node.core
        sched = self.scheduler
        sched.load(core.replicated)
        source = core.table_log if core.table_log.complete else core.replica
        row = core.members.get(manager)
        fellow = row is not None and row.alive and manager != core.me.name
        mode = "beyond_replica" if self.node.name in self.net.older else self.world.offers
        newer: set[str] | None = None
        if whole:
            pass  # (every row: a node that left, to a manager it heard of since)
        elif fellow and mode == "beyond_replica" and source.items():
            newer = set()
        elif fellow and mode == "position":
            newer = offer_keys(source, core.manager_table)
        self.world.offered["all" if newer is None else "partial"] += 1
        if newer is not None:
            held = {k for k, t in source.items() if t is not None}
            rows = {name: rec.to_json() for name, rec in sched.records.items()
                    if rec.has_state and (name in sched.kept_own or row_key(name) not in held
                                          or row_key(name) in newer)}
        else:
            rows = {name: rec.to_json() for name, rec in sched.records.items()
                    if rec.has_state}
        limit = self.node.core.part_chars  # (in parts as the real node's: offer_parts)
        parts = offer_parts(rows, limit) if self.net.max_bytes else number_parts(
            [pack_table({"tasks": rows})])
        me, term, claim = core.me, core.term, core.manager_claim

        def send() -> None:
            if core is not self.node.core or core.manager_claim != claim:
                return  # restarted, or follows another claim by now (it offers that one)
            if (self.world.offer_runs and parts  # (clerk._offerruns: in the last part)
                    and self.node.name not in self.world.no_offered_runs):
                parts[-1] = with_runs(parts[-1], [run_of(m) for m in self.in_flight.values()])
            for part in parts:
                self.net.send(self.node.name, to, Offer(me, term, part))
            # Then our results the old manager may have died with (as the real node's,
            # clerk._offerjob: the new manager applies a result to the row its run started
            # from, maybe only in this OFFER).
            self._offer_to = None
            for result in self.outbox:  # (quorum mode: see OUTBOX_KEEP)
                self.net.send(self.node.name, to, result)
            for result in self.unacked.values():  # (default mode)
                self.net.send(self.node.name, to, result)
            if self._leave_after_offer == to:  # (a node that left: then its LEAVE)
                self._leave_after_offer = None
                self.net.apply(self.node, core.leave_again(to))

        self._offer_to = to

        if self.world.offer_delay > 0:
            self.net.at(self.net.now + self.world.offer_delay, send)
        else:
            send()
