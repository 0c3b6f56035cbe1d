"""The simulator learns state: the real Scheduler above each simulated core, with a ledger task.

``SimLedger(net)`` is a layer factory for :class:`clerk._simnet.SimNetwork`: every node gets a
:class:`LedgerLayer` that does what the real node's task layer (``clerk._runner``) does, with
the same pure pieces:

* as manager: the real :class:`~clerk._schedule.Scheduler` (``await_offers`` on, the default
  dispatch lead), activated on ``ManagerChanged``/``StateHandedOver`` with its claim, ticking
  on the simulated wall clock; EXECUTE and RESULT travel over the simulated network (delays,
  loss, partitions), and a run sent ahead starts at its due time on its node; every change
  is replicated at once with a heartbeat round; merges on a partition's HANDOVER;
* as follower: an OFFER of its rows to each manager it follows;
* a simulated data directory per node that outlives crashes and restarts: the table the node
  holds, written after every event that changed it (:mod:`clerk._simdisk`; no coalescing:
  the disk is as fresh as it can be, which is what "acknowledged" means below). A restarted
  node starts from it.

The task is a ledger: state = counter; ``init`` gives 0 and every run adds 1 (so after ``init``
the counter equals the lineage's version). Every execution is recorded
(:attr:`SimLedger.runs`) with how long the network had been whole when it ran; ``acknowledged()`` is
the counter that a majority of nodes hold on disk. The property tests check the history.

In quorum mode (``SimNetwork(voters=...)``) the manager does what the real runner does with a
:class:`~clerk._writeahead.WriteAhead`: it continues after the reservations its phase 1
learned, reserves each slot ahead of its due time, sends EXECUTE only once the reservation is
committed, and writes each result's record before it counts it (``committed``: every record
a majority of voters accepted, in order, for the property tests). Like the real node's outbox
(:mod:`clerk._outbox`), a node keeps its last ``OUTBOX_KEEP`` results and sends them again to
every manager it follows later, and a new manager applies its own kept results (the real one
finds them for the runs in flight it adopted): a result may reach a manager long after its run,
and the scheduler must not apply it to a state it was not computed from.
"""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from typing import Any

from clerk._adoptedruns import bound_runs_of
from clerk._core import (
    Deliver,
    Effect,
    Event,
    LeftHeard,
    LeftUnlisted,
    ManagerChanged,
    MemberDown,
    MemberUp,
    OfferAgain,
    Send,
    StateHandedOver,
    Tick,
    WriteCommitted,
)
from clerk._lead import DISPATCH_LEAD_MS
from clerk._leftoffers import LeftSenders, OfferKind, is_recorded, offer_kind
from clerk._messages import Coordinator, Execute, Offer, Result, ResultAck
from clerk._offerjob import OfferParts
from clerk._offerruns import adopt_runs, offered_runs
from clerk._record import TaskRecord
from clerk._replica import RowEncoder
from clerk._replication import LOCAL_GAP_S, short_runs
from clerk._resultacks import ACK_WAIT, PendingAcks
from clerk._schedule import Scheduler
from clerk._simacks import AckedResult, LedgerAcks
from clerk._simdisk import LedgerDisk
from clerk._simledgerrun import (
    LEAVE_ACK_WAIT_S,
    LEAVE_WAIT_S,
    RESEND_S,
    RUN_S,
    WALL0,
    LedgerRun,
    LedgerRuns,
)
from clerk._simnet import SimNetwork, SimNode
from clerk._simtakeover import LedgerTakeover
from clerk._tasks import TaskDef
from clerk._writeahead import WriteAhead

__all__ = ["LEAVE_ACK_WAIT_S", "LEAVE_WAIT_S", "LEDGER", "OUTBOX_KEEP", "RESEND_S", "RUN_S",
           "WALL0", "AckedResult", "LedgerLayer", "LedgerRun", "SimLedger"]

LEDGER = "ledger"
#: Quorum mode: results a node keeps and resends to each new manager (the real outbox keeps
#: them until acknowledged; a few cover every run in flight across a failover).
OUTBOX_KEEP = 8


class SimLedger:
    """The world of the ledger: the layer factory, the disks, and the history."""

    def __init__(self, interval_ms: int = 200, timeout_ms: int = 1000,
                 lead_ms: float = DISPATCH_LEAD_MS, fillers: int = 0) -> None:
        self.task = TaskDef(name=LEDGER, target="sim:Ledger", interval=interval_ms,
                            timeout=timeout_ms, instant=False, enabled=True, args=None)
        #: ``fillers`` tasks beside the ledger, disabled (never run, no state): rows that make
        #: the table big (with ``SimNetwork(max_bytes=...)``: in parts); an operator's pause
        #: of one is a fact of the table that only a HANDOVER carries (an OFFER holds the
        #: rows with a state).
        self.fillers = [TaskDef(name=f"filler{i:03d}", target="sim:Filler", interval=60_000,
                                timeout=timeout_ms, instant=False, enabled=False, args=None)
                        for i in range(fillers)]
        self.disks: dict[str, dict[str, Any]] = {}
        #: What each disk recorded besides the table: the other live members (name ->
        #: address) at its last write, as the real data directory does (clerk._store).
        self.disk_members: dict[str, dict[str, str]] = {}
        #: ``disk_counter``'s answer per node with the table it read it from (checks ask it
        #: after every event, ~5 % of the simulations' time).
        self._counters: dict[str, tuple[dict[str, Any], int]] = {}
        #: Read the recorded members at a restart (``NodeCore.rejoin``); False: as before.
        self.rejoin = True
        #: A manager whose table is only its disk's waits for the members' OFFERs before any
        #: dispatch (``Scheduler.from_disk``, clerk._adopt); False: only ``init`` waits.
        self.offers_first = True
        #: A node asked to leave while it takes over finishes that first (``leave_at``, as
        #: the real agent); False: it leaves at once, as before.
        self.finish_takeover = True
        self.leave_waits_offers = True  # ... then for its OFFERs (clerk._leaveoffers); False: not
        self.runs: list[LedgerRun] = []
        self.layers: dict[str, LedgerLayer] = {}
        self.tasks = (LEDGER, *(f.name for f in self.fillers))  # what every node advertises
        #: Quorum mode: (time, manager, term, version) of every result record committed.
        self.committed: list[tuple[float, str, int, int]] = []
        #: Quorum mode: (time, manager, term, slot) of every EXECUTE sent.
        self.dispatched: list[tuple[float, str, int, int]] = []
        #: Per node, how far its wall clock is off (s): clock offsets between machines.
        self.offsets: dict[str, float] = {}
        #: Managers stamp heartbeats with their wall clock and a node holds and judges a run
        #: in its manager's time base (clerk._clockskew), as the real node; False: by its own
        #: clock, as before. ``starts``: (time, manager, due ms, node, corrected) of each run
        #: started, for the property that none starts before due by its manager's clock.
        self.clock_estimates = True
        self.starts: list[tuple[float, str, int, str, bool]] = []
        self.lead_ms = lead_ms  # runs are sent this far ahead and start at their due time
        #: Quorum mode: replicate the table at each dispatch, as the real runner does, so the
        #: followers' replicas show the run in flight (off by default: with it, the property
        #: tests' long pause under a 2 s clock offset stalls commits; not understood yet).
        self.replicate_dispatches = False
        #: Default mode: a manager acknowledges a result only once every live member holds
        #: its row (clerk._resultacks); False: at once, as before (the loss it allowed).
        self.ack_after_replication = True
        #: A manager applies a result for a run its table never showed if the run id says it
        #: continues the row (clerk._running); False: dropped, as before.
        self.unseen_runs = True
        #: Default mode: every RESULT_ACK sent for a result applied (for the property tests).
        self.acked: list[AckedResult] = []
        #: What a member OFFERs a fellow member taking over: ``"position"``, as the real node
        #: does (clerk._replication): the rows it may hold beyond where the new manager's
        #: table stands (its COORDINATOR says); ``"beyond_replica"``, only the rows beyond
        #: its own replica, assumed to be the new manager's too (the old rule, and a node of
        #: an older build: ``SimNetwork.older``); ``"all"``, every row.
        self.offers = "position"
        #: OFFERs sent: ``"all"`` (every row) or ``"partial"`` (only rows a new manager may lack).
        self.offered: Counter[str] = Counter()
        #: Seconds a member takes to build its OFFER (a real node parses the replica rows its
        #: scheduler has not seen: a big table's are ~1 s on a loaded machine); sent then, if
        #: the member is still up and follows the same claim.
        self.offer_delay = 0.0
        #: A manager counts a member as having offered once it holds every part of its
        #: OFFER (clerk._offerjob, "Numbered parts"); False: at its first part, as before.
        self.whole_offers = True
        #: A crash takeover from a replica caught up with the last manager's log waits for
        #: the members' OFFERs too (its last deltas may have been lost); False: only one
        #: whose replica was not caught up waits, as before.
        self.wait_caught_up = True
        #: A new manager waits up to ``OFFER_WAIT_SURE_MS`` for the OFFER of a member whose
        #: build always offers, and a crash takeover from a replica that was not caught up
        #: waits for the members' OFFERs before any dispatch (``Scheduler.stale``), as the
        #: real runner does (clerk._adopt); False: ``OFFER_WAIT_MS`` for all, ``init`` only.
        self.sure_offers = True
        #: Default mode: after a round, the manager's next one waits this long (s), as the
        #: real runner's (``clerk._routing.REPLICATE_GAP_S``, 25 ms; a result of a run on its
        #: own node ``LOCAL_GAP_S``); 0: every change replicated at once, as before.
        self.replicate_gap_s = 0.0
        #: A dispatch of a task whose runs are not short replicates at once, gap or not
        #: (clerk._replication.SHORT_RUN_MS); False: it waits for the gap like any change.
        self.long_runs_at_once = True
        #: How long a run takes on its node (s).
        self.run_s = RUN_S
        #: ... except that a run takes ``long_run_s`` with this chance (drawn from the
        #: network's random stream, only when above 0): a short task that suddenly runs long.
        self.long_run_chance = 0.0
        self.long_run_s = 0.0
        self.long_run_ids: set[str] = set()  # ... and so do these runs
        #: The run ids whose run ended on a node that was still up (its result left).
        self.ended: set[str] = set()
        #: Default mode: a member's OFFER carries the runs in flight on it, and a new manager
        #: adopts them, and its own (clerk._offerruns); False: neither, as before.
        self.offer_runs = True
        #: Default mode: a tick that only dispatched runs of short tasks holds their rows
        #: for the next change's round (their results', normally) or ``DISPATCH_HOLD_S``
        #: (clerk._simledgerrun), whichever first; False: as any change (the gap's rule).
        self.hold_dispatches = False
        #: A manager that claims again while scheduling keeps its scheduler's rows
        #: (clerk._reclaim); False: reloaded from its table log, as before.
        self.reclaim_keeps = True
        #: Nodes of a build before the runs in the OFFER (a rolling deploy): their OFFERs
        #: carry no runs, whatever ``offer_runs`` says.
        self.no_offered_runs: set[str] = set()
        #: Seconds a new manager takes to load the table it takes over (0: at once); merges
        #: and results wait meanwhile, as on a real node (clerk._runner._take_over_step).
        self.load_s = 0.0
        #: A merged merge HANDOVER counts as an OFFER and may end a ``stale`` wait
        #: (``Scheduler.handed_over_by``); False: neither, as before.
        self.handover_ends_wait = True
        #: A stepped-down manager's HANDOVER says which members its table covers
        #: (clerk._covers); False: it says nothing (an older build: the winner waits).
        self.handover_covers = True
        self.offer_again = True  # OFFER again at a manager's link up (clerk._core); False: not
        #: A member that left keeps its results until a manager acknowledges them (resent to
        #: the highest claim it knows; a manager that announces itself gets its OFFER, results
        #: and LEAVE), and a restart waits for that process to exit (``LedgerAcks.exits_at``);
        #: False: as before (sent once, to the highest claim). ``lost_on_leave``: (node, task,
        #: run id, state) given up at the bound.
        self.leave_keeps_results = True
        self.lost_on_leave: list[tuple[str, str, str, Any]] = []
        #: A crash takeover keeps a run in flight on a node it does not list (one that left
        #: with it going) until its result or deadline (clerk._adoptedruns); False: fails it
        #: at once, as the real runner did (the simulator did not model that before).
        self.unlisted_runs_wait = True
        #: ... and so does a graceful hand-over, bounded alike (``UNLISTED_RUN_WAIT_S``:
        #: clerk._adoptedruns); False: it kept the run open to its deadline, as before.
        self.bound_after_handover = True
        #: ... and so does the manager a member leaves, from its LEAVE (``bound_runs_of``);
        #: False: it kept the member's runs open to their deadlines, as before.
        self.bound_left_runs = True
        #: A manager takes a RESULT from a node that is not a member only for the run in
        #: flight on it, and an OFFER only at its own term (an OFFER that came before its
        #: sender's JOIN), as the real agent (clerk._agentreplies); False: any, as before.
        self.agent_filters = True
        #: ... but a node that left as a member gives a manager that does not list it its
        #: OFFER (merged: below our term, or at it once its LEAVE came) and then its RESULTs
        #: (taken), and a refused RESULT's node gets our claim (clerk._leftoffers); False:
        #: dropped (below our term) or merged and its RESULTs dropped, as before.
        self.left_offers = True
        #: A first takeover after a restart waits for the OFFERs of the recorded members it
        #: heard from that are not members (clerk._joining, "Restarts"); False: not, as before.
        self.rejoin_heard = True

    def __call__(self, net: SimNetwork, node: SimNode) -> LedgerLayer:
        layer = LedgerLayer(self, net, node)
        self.layers[node.name] = layer
        return layer

    def disk_row(self, name: str) -> TaskRecord | None:
        table = self.disks.get(name)
        if table is None:
            return None
        return TaskRecord.from_json(table["tasks"].get(LEDGER))

    def disk_counter(self, name: str) -> int:
        table = self.disks.get(name)
        got = self._counters.get(name)
        if got is not None and got[0] is table:  # (a write replaces the table: a new object)
            return got[1]
        row = self.disk_row(name)
        counter = int(row.state) if row is not None and row.has_state else -1
        if table is not None:
            self._counters[name] = (table, counter)
        return counter

    def acknowledged(self, names: list[str]) -> int:
        """The highest counter a majority of ``names`` hold on disk (-1: none)."""
        values = sorted((self.disk_counter(n) for n in names), reverse=True)
        return values[len(values) // 2]


class LedgerLayer(LedgerTakeover, LedgerDisk, LedgerAcks, LedgerRuns):
    """One node's task layer in the simulator (see the module docstring)."""

    #: When this manager's last round went, and when the changes made since go
    #: (``SimLedger.replicate_gap_s``; None: none waits). Simulated time.
    _round_at = float("-inf")
    _round_due: float | None = None

    def __init__(self, world: SimLedger, net: SimNetwork, node: SimNode) -> None:
        self.world = world
        self.net = net
        self.node = node
        if world.clock_estimates:  # (heartbeats stamped with this node's wall clock)
            node.core.wall_ms = lambda: int(self.wall() * 1000)
        self.scheduler = Scheduler([world.task, *world.fillers],
                                   random.Random(net.rng.getrandbits(64)),
                                   await_offers=True, dispatch_lead_ms=world.lead_ms)
        if world.sure_offers:
            self.scheduler.always_offers = self._always_offers
        disk = world.disks.get(node.name)
        self._disk_states = False
        if disk is not None:
            self.scheduler.load(disk)
            self._disk_states = any(r.has_state for r in self.scheduler.records.values())
            if world.rejoin:
                node.core.rejoin(world.disk_members.get(node.name, {}))
        self._activate: bool | None = None
        # Merges that came while activating (sender, table, MERGED to send once merged).
        self._merges_waiting: list[tuple[str, Any, Send | None]] = []
        self._loaded_at: float | None = None  # (``SimLedger.load_s``) the activation's load
        self._leave_asked: float | None = None  # a stop request waiting for a take-over
        self._seen_replicated: object = None
        self.wa: WriteAhead | None = None  # quorum mode, manager: this ballot's write-ahead
        self.never_left: set[tuple[str, str]] = set()  # held dispatches of a lost ballot
        self._encoder = RowEncoder()
        self.left_senders = LeftSenders()  # (clerk._leftoffers)
        self._held_offers: dict[str, list[Offer]] = {}  # non-members' at our term (as real)
        self.outbox: deque[Result] = deque(maxlen=OUTBOX_KEEP)  # quorum mode (module doc)
        # Default mode, as the real node (clerk._outbox, clerk._resultacks): results kept
        # until the manager acknowledges them, resent to each new manager and every
        # RESEND_S to the current one; a manager's held ACKs and the values it applied.
        self.unacked: dict[str, Result] = {}
        self._resend_at = 0.0
        self._offer_to: str | None = None  # (clerk._simledgerrun.LedgerRuns)
        self.in_flight: dict[str, Execute] = {}  # (clerk._simledgerrun.LedgerRuns)
        self.acks = PendingAcks()
        self._applied: dict[str, tuple[str, int]] = {}  # run id -> (node, value)
        self.offer_parts = OfferParts()  # as manager: the members' OFFERs' parts held
        node.core.covers = self._covers  # (our merge HANDOVER's, clerk._covers)

    def next_deadline(self) -> float:
        if self._activate is not None:
            return self._loaded_at if self._loaded_at is not None else self.net.now
        wall_next = self.scheduler.next_deadline(self.wall())
        if self.wa is not None:  # quorum mode: wake up to reserve ahead of due times
            wall_next = min(wall_next, self.wa.next_reserve_ms(self.scheduler) / 1000)
        due = self._round_due if self._round_due is not None else float("inf")
        if self._left_at is not None and self.unacked and self.world.leave_keeps_results:
            due = min(due, self._resend_at, self._left_at + LEAVE_ACK_WAIT_S)  # (_left_resend)
        if wall_next == float("inf"):
            return due
        return min(due, wall_next - WALL0 - self.world.offsets.get(self.node.name, 0.0))

    def after(self, event: Event, effects: list[Effect]) -> None:
        core = self.node.core
        changed = urgent = held = False
        for effect in effects:
            if isinstance(effect, ManagerChanged):
                self._offer_to = None  # (an OFFER to a manager we no longer follow)
                self.offer_parts.clear()
                if effect.is_me:
                    if self.scheduler.active:  # (a claim again: as the real runner)
                        self.scheduler.followed = ""
                    if self._activate is None:
                        self._activate = False
                    self._loaded_at = None  # (a new claim while loading: loaded again)
                else:
                    self._activate = self._loaded_at = None
                    self._merges_waiting.clear()
                    if self.scheduler.draining and self.world.leave_keeps_results:
                        self._acks_now()  # (leaving: as the real runner)
                    self.acks.clear()
                    self._applied.clear()
                    if self.scheduler.active:
                        self.scheduler.deactivate()
                    if effect.manager is not None:  # (as the real runner)
                        self.scheduler.followed = effect.manager
                    claim = core.manager_claim
                    if effect.manager is not None and claim is not None:
                        self._offer(claim.address, effect.manager)  # (our results after it)
            elif isinstance(effect, StateHandedOver):
                if effect.merge and self._activate is not None:
                    # (as the real runner: merged once the table it takes over is loaded,
                    # and confirmed only then)
                    self._merges_waiting.append((effect.sender, effect.state, effect.confirm))
                elif effect.merge:
                    changed |= self.scheduler.merge(effect.state, self.wall(),
                                                    source=effect.sender)
                    self._handed_over(effect.sender, effect.state)
                    self._confirm(effect.confirm)
                elif core.is_manager:
                    self._activate = True
            elif (isinstance(effect, MemberDown) and effect.reason != "left"
                  and self.scheduler.active):
                # (as the agent does: a member that left finishes its runs in flight)
                changed |= bool(self.scheduler.fail_node(effect.name, self.wall()))
            elif (isinstance(effect, MemberDown) and self.scheduler.active
                  and self.world.bound_left_runs):
                bound_runs_of(self.scheduler, effect.name, self.wall())  # (as the runner)
            elif isinstance(effect, Deliver):
                changed |= self._deliver(effect.msg)
            elif isinstance(effect, OfferAgain):
                self._offer_again(effect)  # (clerk._simledgerrun)
            elif isinstance(effect, LeftHeard):
                self._left_heard(effect)  # (clerk._simacks)
            elif isinstance(effect, LeftUnlisted):
                s = effect.sender  # (as the real runner's on_left_unlisted)
                if self.world.left_offers and is_recorded(core.recorded, s):
                    changed |= self._release_offers(s, left=True)
            elif isinstance(effect, MemberUp):
                changed |= self._release_offers(effect.info, left=False)  # (on_member_up)
            elif isinstance(effect, WriteCommitted) and self.wa is not None:
                changed |= self._committed(effect.seq)
        if self._activate is not None and core.is_manager and self._loaded():
            changed |= self._take_over(core)  # (clerk._simtakeover)
        elif self._activate is not None and not core.is_manager:
            self._activate = self._loaded_at = None
            self._merges_waiting.clear()  # (unconfirmed: their senders send them again)
        if self.scheduler.active and not core.is_manager and not self.scheduler.draining:
            self.scheduler.drain()  # leaving (as the real runner does): results still apply
        if not core.is_manager and self.wa is not None:
            self.never_left |= self.wa.never_left()  # (they never left: clerk._writeahead)
            self.wa = None  # held dispatches and results die with the ballot
        if isinstance(event, Tick) and self.scheduler.active:
            members = {m.name: m.tasks for m in core.member_list() if m.alive}
            dispatches, finished = self.scheduler.tick(self.wall(), members)
            rows: dict[str, Any] = {}
            wa = self.wa
            if wa is not None:
                rows = wa.ahead(self.scheduler, self.wall() * 1000)
            for d in dispatches:
                if wa is None or wa.gate(d.task, d.slot):
                    self._send_execute(d)
                else:
                    rows.update(wa.reserve(d.task, d.slot))
                    wa.hold_dispatch(d, d.task, d.slot)
            if rows:
                self._write(rows)
            urgent = self.world.long_runs_at_once and any(
                not short_runs(self.scheduler.records[d.task].last) for d in dispatches)
            held = (self.world.hold_dispatches and bool(dispatches) and not finished
                    and not changed and not urgent and wa is None)
            changed |= bool(dispatches or finished)
            sent = bool(dispatches)
        else:
            sent = False
        self.scheduler.conflicts_out.clear()
        if self.wa is not None:
            # Quorum mode: a result is replicated (and persisted) once committed; a dispatch
            # too with ``replicate_dispatches`` (see SimLedger).
            changed = sent and self.world.replicate_dispatches
        if not core.is_manager:
            self._round_due, self._held = None, False
        elif held and self.scheduler.active:
            self._hold()  # (clerk._simledgerrun)
        elif changed and self.scheduler.active:
            self._changed(urgent=urgent)
        elif (self._round_due is not None and self.scheduler.active
              and self.net.now >= self._round_due):
            self._replicate()  # the gap is over
        self._persist(changed)
        if core.quorum is None:
            self._acks_and_resends(event)

    def _changed(self, local: bool = False, urgent: bool = False) -> None:
        """The table changed: its round goes now, or once the gap after the last round has
        passed (``SimLedger.replicate_gap_s``: ``LOCAL_GAP_S`` for a result of a run on this
        node), as the real runner's (clerk._routing); ``urgent`` (a long run's dispatch),
        now. Quorum mode: now (it replicates what it committed)."""
        if self._held:  # another change: the held rows go with its round
            self._round_due, self._held = None, False
        gap = self.world.replicate_gap_s
        if gap <= 0 or urgent or self.wa is not None:
            self._replicate()
            return
        due = self._round_at + (min(gap, LOCAL_GAP_S) if local else gap)
        if self.net.now >= due:
            self._replicate()
        else:
            self._round_due = due if self._round_due is None else min(self._round_due, due)

    def on_leave(self) -> None:
        """As the real runner's ``on_leave``: a leaving manager's hand-over carries every row
        (the core builds it from the table log), so rows that wait for the gap go into the
        log first."""
        if self.scheduler.active and self.node.core.is_manager:
            self._encoder.step(self.scheduler, self.node.core.table_log, float("inf"))
        else:
            self._left_at = self.net.now  # a member: its results wait (``exits_at``)

    def _replicate(self) -> None:
        """The changed rows into the table log, as the real runner does (without its time
        budget), then a heartbeat round. The log must then hold exactly the scheduler's
        table: a change the scheduler did not mark dirty would be lost for every follower."""
        core = self.node.core
        self._round_at, self._round_due, self._held = self.net.now, None, False
        self._encoder.step(self.scheduler, core.table_log, float("inf"))
        held = core.table_log.table()
        if held != json.loads(json.dumps(self.scheduler.table())):
            raise AssertionError(f"{self.node.name}: the table log differs from the "
                                 "scheduler's table (a change not marked dirty)")
        self.net.apply(self.node, core.heartbeat_now(self.net.now))

    def _member(self, sender: Any) -> bool:
        """Is ``sender`` (a peer) a member, that incarnation?"""
        row = self.node.core.members.get(sender.name)
        return row is not None and row.peer.incarnation == sender.incarnation

    def wall(self) -> float:
        return WALL0 + self.net.now + self.world.offsets.get(self.node.name, 0.0)

    def _send_execute(self, d: Any) -> None:
        core = self.node.core
        msg = Execute(core.me, core.term, d.task, d.run_id, d.slot, d.state, d.timeout_ms,
                      d.init, d.due_ms, d.deadline_ms)
        if self.wa is not None:
            self.world.dispatched.append((self.net.now, self.node.name, core.term, d.slot))
        if d.node == self.node.name:
            self._execute(msg, local=True)
        else:
            member = core.members.get(d.node)
            if member is not None:
                self.net.send(self.node.name, member.peer.address, msg)

    def _deliver(self, msg: Any) -> bool:
        core = self.node.core
        if isinstance(msg, Execute):
            self._execute(msg, local=False)
        elif isinstance(msg, Result) and self.scheduler.active:
            if self.world.agent_filters and not self._member(msg.sender) and not (
                    self.scheduler.expects(msg.task, msg.run_id, msg.sender.name)
                    or msg.sender.name in self.scheduler.expected
                    or (self.world.left_offers
                        and self.left_senders.admits(msg.sender, self.net.now))):
                # (as the real agent: clerk._agentreplies, result_not_member; our claim)
                s = msg.sender
                if (self.world.left_offers and is_recorded(core.recorded, s)
                        and self.left_senders.tell(s, self.net.now)):
                    self.net.send(self.node.name, s.address,
                                  Coordinator(core.me, core.term, core.my_claim()))
                return False
            default = core.quorum is None
            if default and self.acks.holds(msg.run_id):
                return False  # a resend of a result applied, its ACK not released yet
            fin = self.scheduler.on_result(msg.task, msg.run_id, msg.sender.name, msg.outcome,
                                           msg.state, msg.duration_ms, msg.error, self.wall(),
                                           slot=msg.slot if self.world.unseen_runs else None)
            if fin is not None and self.wa is not None:
                self._result(msg.task)
            if default and fin is not None and self.scheduler.draining:
                # A leaving manager applied it to its own last table (a full stop may
                # confirm no successor): it goes to the successor too, which adopted the
                # run with the table, as the real node's held results do (_flush_held).
                self._to_successor(msg, core, self.net.now + LEAVE_WAIT_S)
            if default and fin is None and self.scheduler.keeps_result(msg.run_id):
                return False  # kept until its offered run is adopted: no ACK (clerk._routing)
            if default and msg.sender.name != self.node.name:
                if fin is not None and msg.outcome == "ok":
                    self._applied[msg.run_id] = (msg.sender.name, int(msg.state))
                if (self.scheduler.draining and self.world.leave_keeps_results
                        and self._left_node(msg.sender.name, msg.sender.incarnation)):
                    # (a leaving manager acknowledges a node that left at once:
                    # clerk._resultacks)
                    self._ack_one(msg.sender.address, msg.task, msg.run_id)
                elif self.world.ack_after_replication:
                    self.acks.hold(msg.sender.address, msg.task, msg.run_id, self.net.now)
                else:
                    self.acks.hold(msg.sender.address, msg.task, msg.run_id, -ACK_WAIT)
            return fin is not None
        elif isinstance(msg, ResultAck):
            self.unacked.pop(msg.run_id, None)
        elif isinstance(msg, Offer) and core.is_manager:
            member = self._member(msg.sender)
            kind = offer_kind(member, True, core.quorum is not None, msg.term, core.term,
                              is_recorded(core.recorded, msg.sender))
            if not self.world.left_offers and kind is OfferKind.LEFT:
                kind = OfferKind.DROP
            if self.world.agent_filters and kind is OfferKind.DROP:
                return False  # (as the real agent: offer_not_member)
            if self.world.agent_filters and kind is OfferKind.HOLD:
                # As the real agent: held until its node joins (MemberUp), or its LEAVE
                # comes (LeftUnlisted: then merged as a node that left's).
                self._held_offers.setdefault(msg.sender.name, []).append(msg)
                return False
            if kind is OfferKind.LEFT:  # (as the real agent: on_left_offer)
                self.left_senders.add(msg.sender, self.net.now)
            return self._merge_offer(msg)
        return False

    def _merge_offer(self, msg: Offer) -> bool:
        """A member's OFFER, or a node that left's (as the real runner's ``on_offer``)."""
        core = self.node.core
        changed = self.scheduler.merge(msg.state, self.wall(), source=msg.sender.name)
        if self.world.offer_runs and core.quorum is None:
            changed |= adopt_runs(self.scheduler, offered_runs(msg.state),
                                  msg.sender.name, self.wall(),
                                  as_sent=True)  # (clerk._offerruns)
        if not self.world.whole_offers or self.offer_parts.add(msg.sender, msg.term,
                                                                msg.state):
            self.scheduler.offer_from(msg.sender.name)
        return changed

    def _release_offers(self, sender: Any, left: bool) -> bool:
        """The OFFERs held from ``sender`` (that incarnation): merged once it joined, or, as a
        node that left's, once its LEAVE came (``left``: remembered, its RESULTs taken)."""
        held = [m for m in self._held_offers.pop(sender.name, [])
                if m.sender.incarnation == sender.incarnation]
        if not held or not self.node.core.is_manager:
            return False
        if left:
            self.left_senders.add(sender, self.net.now)
        changed = False
        for msg in held:
            changed |= self._merge_offer(msg)
        return changed
