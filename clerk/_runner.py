"""The task layer of a node: the manager's scheduler and this node's executor, wired to the
agent's loop (cluster events, the loop's deadline and tick, status, close).

:class:`TaskRunner` is assembled from parts, each in a module that opens with the rules it owns:
:mod:`clerk._runnerdefs` (shared state; eligible when ready; rolling deploys),
:mod:`clerk._replication` (the table to the members, OFFERs, the data directory),
:mod:`clerk._routing` (EXECUTE in, results out: no late runs, results reach a new manager),
:mod:`clerk._runleave` (leaving, and a table handed over to this node).

* **No dispatch from an unconfirmed manager** (``NodeCore.dispatch_ok``): a manager that
  stalled dispatches nothing until a member confirms its claim.
* **Activation** starts at the next tick after this node became the manager: it loads the
  replicated table, resolves the definitions, activates the scheduler (graceful after a
  hand-over), resolves the runs it adopted, and replicates at once. The load and the
  activation run in slices of ``LOAD_BUDGET`` between the loop's other work
  (:meth:`TaskRunner._take_over_step`); meanwhile results are not acknowledged (resent),
  OFFERs wait, and status answers from the table as it is (``taking_over``).
* **Quorum mode**: activation takes the voters' rows first, dispatches wait for their
  reservation's commit, results for their record's (:mod:`clerk._runquorum`).
"""

from __future__ import annotations

import logging
import math
import random
import time

from clerk._adopt import takeover_waits
from clerk._answered import Answered
from clerk._clockskew import CORRECT_MS, AsSent
from clerk._core import ManagerChanged, OfferAgain, Send
from clerk._deploy import Resolver
from clerk._executor import Executor
from clerk._host import Host
from clerk._leftoffers import LeftSenders
from clerk._messages import Json, Offer, Result, reads_table_at
from clerk._nodes_guard import NodesGuard
from clerk._offerjob import OfferParts
from clerk._offerruns import adopt_runs
from clerk._outbox import Outbox
from clerk._reclaim import reload_at_claim
from clerk._replica import Replica, ReplicaLog, RowEncoder
from clerk._replication import LOAD_BUDGET, MAX_HELD_OFFERS, REPLICATE_SHARE, short_runs
from clerk._resultacks import PendingAcks
from clerk._runleave import LEAVE_WAIT, TAKEOVER_BEFORE_LEAVE, Leaving, _confirm
from clerk._runnerdefs import RESOLVE_PAUSE
from clerk._schedule import Scheduler
from clerk._statusrows import StatusRows
from clerk._store import Store
from clerk._tasks import TaskDef, load_task_class

__all__ = ["LEAVE_WAIT", "MAX_HELD_OFFERS", "REPLICATE_SHARE", "TAKEOVER_BEFORE_LEAVE",
           "TaskRunner"]

log = logging.getLogger("clerk.tasks")


class TaskRunner(Leaving, StatusRows):
    """Scheduling (when this node is the manager) and execution (always) of tasks."""

    def __init__(self, agent: Host) -> None:
        self.agent = agent
        self.defs: dict[str, TaskDef] = {d.name: d for d in agent.config.tasks}
        self._classes = {name: load_task_class(d.target, name=name)
                         for name, d in self.defs.items()}
        self.nodes_guard = NodesGuard(self._classes)  # nodes() within a budget, off the loop
        self.answered = Answered()  # operator commands applied, by request (clerk._ops)
        self.as_sent = AsSent()  # runs' times as their manager sent them (clerk._clockskew)
        self._ahead_ms = 0.0  # our clock ahead of the manager we followed (on_tick), ms
        self.scheduler = Scheduler(list(self.defs.values()),
                                   random.Random(agent.rng.getrandbits(64)),
                                   self.nodes_guard, await_offers=True,
                                   dispatch_lead_ms=agent.config.dispatch_lead)
        self.scheduler.always_offers = self._always_offers
        agent.core.covers = self._covers  # (our merge HANDOVER's, clerk._covers)
        # What the live members announce (clerk._deploy), kept current as the list changes.
        self._resolved_epoch = -1
        self._resolver = Resolver(list(self.defs.values()))
        self._variants = self._resolver.variants  # (the resolver's, kept current)
        self._loaded = self._resolver.loaded
        self._resolving = False  # work left (see next_deadline)
        self._resolve_wake = -math.inf  # monotonic: the next slice of it
        self._offer_wake = -math.inf  # monotonic: the next slice of an OFFER (_offer_step)
        self._adopting: list[str] = []
        self._adopt_at = 0
        # The data directory: its rows are this node's first table (merged by lineage with
        # whatever the cluster holds once this node follows a manager, see on_manager_changed).
        self.store: Store | None = None
        self._disk_states = False  # states were read from it (see _take_over_step)
        path = agent.config.data_path
        if path is not None:
            self.store = Store(path, agent.me.name, agent.config.source)
            me = agent.me.name
            self.store.members = lambda: {m.name: m.address for m in agent.core.member_list()
                                          if m.alive and m.name != me}
            rows = self.store.open()
            if self.store.recorded and agent.config.rejoin_timeout > 0:
                # A restart: wait for the members it recorded before running alone
                # (clerk._joining, "Restarts").
                agent.core.rejoin(self.store.recorded, agent.config.rejoin_timeout / 1000)
                log.info("data directory %s recorded %d other member(s) (%s): waiting up to "
                         "%.1f s for them before running alone", path, len(self.store.recorded),
                         ", ".join(sorted(self.store.recorded)),
                         agent.config.rejoin_timeout / 1000)
            if rows is not None:
                self.scheduler.load(rows)
                for rec in self.scheduler.records.values():
                    rec.running = None  # a run of a previous incarnation is unknowable
                held = sum(1 for r in self.scheduler.records.values() if r.has_state)
                log.info("data directory %s: %d task state(s) read", path, held)
                self._disk_states = held > 0
        self._persisted: object = None  # the table version last marked for the disk
        self._disk_rows: ReplicaLog | Replica | None = None  # the rows the disk last took whole
        # Replication (clerk._replication): the rows' encoder into the table log, and the
        # (log, sequence) last announced with a heartbeat round.
        self._encoder = RowEncoder()
        self._sent: tuple[str, int] = ("", -1)
        self._held_offers: dict[str, list[Offer]] = {}  # from nodes not admitted yet (parts)
        self._left_senders = LeftSenders()  # nodes that left, whose OFFER we merged
        self._activate: bool | None = None  # pending activation: graceful or not
        self._loading = None  # the activation's sliced load of the table (_load_step)
        self._offers_waiting: dict[str, list[Offer]] = {}  # from members, until it is loaded
        self._offer_parts = OfferParts()  # which parts of each member's OFFER are in
        # Merge HANDOVERs (sender, table, MERGED to send) that came while the table was loading:
        # the load would overwrite what a merge did then; merged once it is loaded, before the
        # OFFERs, and confirmed only then (dropped unconfirmed if this node stops being the
        # manager first: the sender sends them again to the next one).
        self._merges_waiting: list[tuple[str, Json, Send | None]] = []
        self._results_waiting: dict[str, Result] = {}  # the same for RESULTs (by run id)
        # Replica rows a follower's scheduler was brought up to (_follow_replica), by key:
        # their text objects. None: the scheduler's rows are not just those (any more).
        self._rows_seen: dict[str, str | None] | None = None
        self._leave_started: float | None = None
        self._leave_asked: float | None = None  # a stop request waiting for a take-over
        self._leave_wake = math.inf  # monotonic: ... or for OFFERs until then (may_leave)
        self._replicate_dirty = False
        self._held: list[Result] = []  # results of a leaving manager's own runs (see below)
        self.wa = None  # quorum mode, manager: this ballot's write-ahead (clerk._runquorum)
        self._uncommitted = set()
        self._rows_out, self._results_out = {}, []
        self._replicate_after = -math.inf  # monotonic
        self.outbox = Outbox()
        self._acks = PendingAcks()  # manager: RESULT_ACKs held until replicated
        self._acks_round = -1  # the heartbeat round they were last looked at
        self.stale = 0  # EXECUTEs dropped as late or from a stale claim
        self._stalls_logged = 0
        self.executor: Executor | None = None
        if self.defs:
            self.executor = Executor(
                node=agent.me.name, defs=self.defs, workers=agent.config.workers,
                add_reader=agent.transport.add_reader,
                remove_reader=agent.transport.remove_reader,
                send_result=self._send_result, me=lambda: (agent.me, agent.core.term),
                now=agent.clock.monotonic, wall=agent.clock.wall,
                log_level=agent.config.log_level,
                log_to=agent.config.log_to, on_ready=self._workers_ready,
                on_capacity=self._worker_capacity, on_stale=self._stale,
                on_failed=agent.fail, sent_due=self.as_sent.due,
            )
            # Not announced until every worker is up (_workers_ready): a trigger of one of
            # them meanwhile is "not loaded yet", not "no longer loaded" (clerk._operator).
            self.scheduler.loading_here = frozenset(self.defs)

    def _always_offers(self, name: str) -> bool:
        """Does member ``name``'s build always OFFER a manager it follows? (Every build that
        reads ``Coordinator.table`` does: clerk._adopt, ``OFFER_WAIT_SURE_MS``.)"""
        row = self.agent.core.members.get(name)
        return row is not None and reads_table_at(row.peer)

    # --- cluster events -------------------------------------------------------------------------

    def on_manager_changed(self, effect: ManagerChanged, now: float, wall: float) -> None:
        self._quorum_drop()
        self._offer_parts.clear()  # (counted anew under each claim, as Scheduler.offered)
        if self.scheduler.draining:  # (leaving: ACKs for nodes that left: clerk._resultacks)
            self._acks_now(now)
        self._acks.clear()  # held ACKs of a claim of ours: their nodes resend to the next
        self._offer_job = None  # (to a manager we no longer follow)
        if effect.is_me or self._activate is not None or self.scheduler.active:
            self._rows_seen = None  # its rows become (became) this manager's own
        if effect.is_me:
            if self.scheduler.active:
                # A claim again while managing: our table is our own since this node became the
                # manager, not a replica of the one it followed before (Scheduler.followed).
                self.scheduler.followed = ""
            if self._activate is None:
                self._activate = False
            elif self.scheduler.activating:
                # A new claim of ours while activating under the previous one: over again
                # (the table is loaded again: the activation began changing its rows).
                self.scheduler.deactivate()
        else:
            self._activate = self._loading = None
            self._offers_waiting.clear()
            self._merges_waiting.clear()
            self._results_waiting.clear()
            if self.scheduler.active or self.scheduler.activating:
                self.scheduler.deactivate()
            core = self.agent.core
            if effect.manager is not None:  # (whose table a takeover's replica followed)
                self.scheduler.followed = effect.manager
            claim = core.manager_claim
            if effect.manager is not None and claim is not None:
                # A fellow member taking over said where its table stands (its COORDINATOR:
                # its replica, caught up with a log at a sequence): offer only what we may
                # hold beyond that (clerk._replica.offer_keys). Every row otherwise: it did
                # not say (an older build, a replica not caught up, a claim we learnt from
                # someone else), or it is a manager from elsewhere (a merge; a cluster we
                # just joined).
                row = core.members.get(effect.manager)
                fellow = (row is not None and row.alive and effect.manager != core.me.name)
                # (In slices; then our results the old manager may have died with: the new
                # one applies a result to the row its run started from, maybe only in this.)
                self._offer(claim.address, now, core.manager_table if fellow else None)
                self._offer_wake = self.agent.clock.monotonic() + RESOLVE_PAUSE

    def on_offer_again(self, effect: OfferAgain, now: float) -> None:
        """The link to the manager we follow is up again (clerk._core, "OFFERs again"): our
        OFFER to it again, as when we started following it (the first may have been lost
        while the link was down), unless one is under way to it."""
        core = self.agent.core
        claim = core.manager_claim
        if (core.is_manager or claim is None or claim.address != effect.address
                or self.offer_pending(claim.address)):
            return
        log.info("link to manager %s up again: sending it our OFFER again", effect.manager)
        row = core.members.get(effect.manager)
        fellow = row is not None and row.alive and effect.manager != core.me.name
        self._offer(claim.address, now, core.manager_table if fellow else None)
        self._offer_wake = self.agent.clock.monotonic() + RESOLVE_PAUSE

    def on_member_down(self, name: str, now: float) -> None:
        self._acks_round = -1  # one member fewer to wait for: look at the next turn
        if self.scheduler.active:
            wall = self.agent.clock.wall()
            for fin in self.scheduler.fail_node(name, wall):
                self._log_finished(fin)
            self._replicate(now)


    # --- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        best = math.inf
        if self._activate is not None:
            return -math.inf  # activate now
        if self.executor is not None:
            best = self.executor.next_deadline()
        if self.store is not None:
            best = min(best, self.store.next_deadline())
        best = min(best, self.outbox.next_deadline(), self._acks.next_deadline())
        if self._resolving or self.agent.core.members.list_epoch != self._resolved_epoch:
            best = min(best, self._resolve_wake)
        if self._offer_job is not None:
            best = min(best, self._offer_wake)
        if self._leave_started is None:  # (a stop request waiting for OFFERs: may_leave)
            best = min(best, self._leave_wake)
        # While a stalled manager's claim is unconfirmed nothing is dispatched, so what is due
        # must not wake the loop (it would spin without ever reading the confirmation); the
        # core's heartbeat timer brings the next look.
        if self.scheduler.active and self.agent.core.dispatch_ok:
            if self._replicate_dirty:
                best = min(best, self._replicate_after)
            clock = self.agent.clock
            wall = clock.wall()  # both clocks read once, together
            mono = clock.monotonic()
            wall_next = self.scheduler.next_deadline(wall)
            if self.wa is not None:  # quorum mode: wake up to reserve ahead of due times
                wall_next = min(wall_next,
                                self.wa.next_reserve_ms(self.scheduler) / 1000)
            if wall_next != math.inf:
                best = min(best, mono + (wall_next - wall))
        return best

    def _take_over_step(self, now: float, wall: float) -> bool:
        """One slice of taking over (each at most ~``LOAD_BUDGET`` of the loop): loading
        the table, then activating the scheduler (``Scheduler.activate_step``); True once
        this node schedules. Until then results and OFFERs wait (applied once it schedules;
        not acknowledged meanwhile), status answers from the table as it is."""
        core = self.agent.core
        sched = self.scheduler
        if not sched.activating:
            # What the members announce (usually current already: every node keeps it so),
            # then the table, in slices of one budget a turn.
            deadline = time.perf_counter() + LOAD_BUDGET
            # A claim again while scheduling keeps the scheduler's own rows: its log lacks
            # the rows whose round waits (runs in flight, results applied; clerk._reclaim).
            reload = reload_at_claim(core.quorum is not None, sched.active and not sched.draining)
            if not self._resolve(wall, deadline) or (reload and not self._load_step(deadline)):
                return False
            if core.quorum is not None:
                self._quorum_activate(wall)
            # No table from any manager of this incarnation (a full-cluster restart): the
            # members' OFFERs may hold newer copies; dispatches wait for them (clerk._adopt).
            sched.from_disk = self._disk_states and not core.replica.items()
            # A crash takeover from a replica (this node joined moments ago, lagged, or lost
            # the last deltas, which a caught-up position cannot tell): dispatches wait for
            # the members' OFFERs (clerk._adopt), and recorded members heard since a restart.
            takeover_waits(sched, core, bool(self._activate), now)
            sched.begin_activation(wall, graceful=bool(self._activate),
                                   claim=(core.term, self.agent.me.name),
                                   ahead_ms=self._ahead_ms,
                                   ahead_of=core.clock_skew.ahead_by_manager(now, wall),
                                   table_of=core.table_from)
            self._ahead_ms = 0.0
            return False  # this turn's slice went to the load
        if not sched.activate_step(time.perf_counter() + LOAD_BUDGET):
            return False
        graceful = bool(self._activate)
        self._activate = None
        for name in sched.in_defs_order(sched.defs.keys() - self.defs.keys()):
            if name not in sched.gone:  # adopted before this node was the manager
                log.info("task=%s is loaded by a live member: scheduling it", name)
        log.info("scheduling %d task(s) as manager (%s)", len(sched.defs),
                 "hand-over" if graceful else "takeover")
        self._resolve_adopted(now, wall, graceful)
        if core.quorum is None:  # our own runs in flight, which the table may not show
            adopt_runs(sched, self._runs_in_flight(as_sent=False), self.agent.me.name, wall)
        # The OFFERs that came while the table was loading, then the RESULTs: a result
        # continues the row its run started from (clerk._running), which may be only in a
        # member's OFFER (this node's replica lacked the row, or held an older state): applied
        # first, it would be dropped, and the member's state then continued without it.
        merges, self._merges_waiting = self._merges_waiting, []
        for sender, table, _ in merges:
            self._rows_seen = None
            self.scheduler.merge(table, wall, source=sender)
            self._handed_over(sender, table)
        if merges:
            self._log_conflicts()
        for _, _, confirm in merges:
            _confirm(self.agent, confirm, now)
        waiting, self._offers_waiting = self._offers_waiting, {}
        for parts in waiting.values():
            for msg in parts:
                self.on_offer(msg, now, wall)
        self._apply_waiting_results(now, wall)
        # At once, but in slices: a big table fills the new log over the next turns.
        self._replicate_after = -math.inf
        self._replicate(now)
        return True

    def on_tick(self, now: float, wall: float) -> None:
        if self.executor is not None:
            self.executor.expire(now)
        core = self.agent.core
        if not core.is_manager:
            core.clock_skew.watch(now, wall)  # a WARNING when far off (clerk._clockskew)
            self._ahead_ms = 0.0
        elif core.clock_skew.source:
            # No manager's clock to be off from; how far ours was ahead of the one we
            # followed moves its runs' deadlines at our takeover (Adoption.begin_activation).
            off = core.clock_skew.offset(now, wall)
            self._ahead_ms = off * 1000 if off is not None and off * 1000 >= CORRECT_MS else 0.0
            core.clock_skew.reset()
        if self._activate is not None and core.is_manager:
            if not self._take_over_step(now, wall):
                return  # the rest at the next turns (next_deadline: at once)
        elif self._activate is not None:
            self._activate = self._loading = None
            self._offers_waiting.clear()
            self._merges_waiting.clear()
            self._results_waiting.clear()
            if self.scheduler.activating:
                self.scheduler.deactivate()
        if self._offer_job is not None and now >= self._offer_wake:
            # A slice of our OFFER to the manager we follow (clerk._offerjob), then a turn
            # that reads the sockets.
            self._offer_step(now)
            self._offer_wake = self.agent.clock.monotonic() + RESOLVE_PAUSE
        self._resend(now, wall)
        if self._resolving or core.members.list_epoch != self._resolved_epoch:
            # A slice of what a change of the member list brings (clerk._deploy): every node
            # keeps it current; the manager's scheduler adopts it as it goes.
            self._resolve(wall, time.perf_counter() + LOAD_BUDGET, adopt=self.scheduler.active)
            self._resolve_wake = self.agent.clock.monotonic() + RESOLVE_PAUSE
        if not self.scheduler.active:
            return
        if self._replicate_dirty and now >= self._replicate_after:
            self._replicate(now)
        if not core.dispatch_ok:
            if core.stalls != self._stalls_logged:
                self._stalls_logged = core.stalls
                log.warning("this manager's loop stalled past the manager timeout: its claim "
                            "is unconfirmed, dispatching nothing until a member confirms it "
                            "(or it learns of a newer manager)")
            return  # stalled: our claim is not confirmed yet (NodeCore.dispatch_ok)
        dispatches, finished = self.scheduler.tick(wall, self._loaded)
        for fin in finished:
            self._log_finished(fin)
        if self.wa is not None:
            self._quorum_dispatch(dispatches, now, wall)
        else:
            for d in dispatches:
                self._dispatch(d, now)
        # The runs leave now when they leave at their due times (flush_urgent): not after the
        # next runs' nodes() calls, the replication check below and the turn's held ACKs
        # (release_acks encodes each before the turn's own flush).
        self.agent.flush_urgent(now)
        self.nodes_guard.ask_ahead()  # the next runs' nodes(), now that these are sent
        if dispatches or finished:
            # A long run's dispatch goes to the members at once, gap or pacing: a new manager
            # that did not know of it would overlap it (clerk._replication.SHORT_RUN_MS).
            records = self.scheduler.records
            self._replicate(now, force=any(not short_runs(records[d.task].last)
                                           for d in dispatches if d.task in records))

    def close(self) -> None:
        self.nodes_guard.close()
        if self.executor is not None:
            self.executor.close()
        if self.store is not None:
            self.store.mark()
            self.persist(self.agent.clock.monotonic(), final=True)
            self.store.close()
