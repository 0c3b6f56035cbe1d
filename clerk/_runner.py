"""The task layer of a node: the manager's scheduler and this node's executor, wired to the
agent's loop. Logs one structured line per finished run (task, slot, node, duration, outcome).

* **No late runs.** An EXECUTE that reaches this node after its deadline, or more than one
  interval after its slot was due, is not run: it is answered ``refused``, counted (``stale``
  in status) and logged; so is one from a claim below the highest this node has seen (the
  core refuses it). Clocks of the nodes are assumed to agree within a small part of an
  interval (NTP).
* **Results reach a new manager** (see :mod:`clerk._outbox`): every result is kept until the
  manager acknowledges it and is sent again to each new manager; a manager that adopts runs in
  flight asks their nodes about them (``RUN_QUERY``) instead of waiting for their deadlines,
  and fails at once those whose node is gone.
* **Eligible when ready.** A node advertises its tasks (and so gets runs) only once all its
  workers have said ready.
* **No dispatch from an unconfirmed manager** (``NodeCore.dispatch_ok``): a manager that
  stalled dispatches nothing until a member confirms its claim.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

from clerk._core import ManagerChanged, Role, StaleExecute, StateHandedOver
from clerk._deploy import resolve
from clerk._executor import Executor
from clerk._host import Host
from clerk._lineage import better
from clerk._messages import Execute, Offer, Result, ResultAck, RunQuery
from clerk._nodes_guard import NodesGuard
from clerk._outbox import Outbox
from clerk._schedule import Dispatch, Finished, Scheduler, TaskRecord, pack_table, unpack_table
from clerk._store import Store
from clerk._tasks import TaskDef, load_task_class
from clerk._transport import Inbound

__all__ = ["TaskRunner"]

log = logging.getLogger("clerk.tasks")
LEAVE_WAIT = 5.0  # a leaving node lets its runs in flight finish for up to this long
#: Replication (the whole table to every member) may take at most ~1/REPLICATE_SHARE of the
#: manager's loop, and of each follower's: after a round that cost ``c`` seconds, the next
#: waits ``c * (REPLICATE_SHARE - 1)``. With a few tasks that is a few ms (every result is
#: replicated at once); with 1000 tasks it coalesces the results of tens of milliseconds
#: instead of flooding every member with the whole table per result.
REPLICATE_SHARE = 10
#: OFFERs kept for nodes that follow this manager but are not admitted yet: a joiner's JOIN
#: and OFFER leave together, so one or two are held at a time; the bound is for forgeries.
MAX_HELD_OFFERS = 64


class TaskRunner:
    """Scheduling (when this node is the manager) and execution (always) of tasks."""

    def __init__(self, agent: Host) -> None:
        self.agent = agent
        self.defs: dict[str, TaskDef] = {d.name: d for d in agent.config.tasks}
        self._classes = {name: load_task_class(d.target, name=name)
                         for name, d in self.defs.items()}
        self.nodes_guard = NodesGuard(self._classes)  # nodes() within a budget, off the loop
        self.scheduler = Scheduler(list(self.defs.values()),
                                   random.Random(agent.rng.getrandbits(64)),
                                   self.nodes_guard, await_offers=True)
        # What the live members announce (clerk._deploy), recomputed when the list changes.
        self._resolved_epoch = -1
        self._variants: dict[str, list[dict[str, Any]]] = {}
        self._loaded: dict[str, tuple[str, ...]] = {}
        # The data directory: its rows are this node's first table (merged by lineage with
        # whatever the cluster holds once this node follows a manager, see on_manager_changed).
        self.store: Store | None = None
        path = agent.config.data_path
        if path is not None:
            self.store = Store(path, agent.me.name, agent.config.source)
            rows = self.store.open()
            if rows is not None:
                self.scheduler.load(rows)
                for rec in self.scheduler.records.values():
                    rec.running = None  # a run of a previous incarnation is unknowable
                held = sum(1 for r in self.scheduler.records.values() if r.has_state)
                log.info("data directory %s: %d task state(s) read", path, held)
        self._persisted: object = None  # the replicated table last marked for the disk
        self._held_offers: dict[str, Offer] = {}  # from nodes not admitted yet (hold_offer)
        self._activate: bool | None = None  # pending activation: graceful or not
        self._leave_started: float | None = None
        self._replicate_dirty = False
        self._held: list[Result] = []  # results of a leaving manager's own runs (see below)
        self._replicate_after = -math.inf  # monotonic
        self.outbox = Outbox()
        self.stale = 0  # EXECUTEs dropped as late or from a stale claim
        self._stalls_logged = 0
        self.executor: Executor | None = None
        if self.defs:
            self.executor = Executor(
                node=agent.me.name, defs=self.defs, workers=agent.config.workers,
                ctx=agent.transport.ctx, add_reader=agent.transport.add_reader,
                send_result=self._send_result, me=lambda: (agent.me, agent.core.term),
                now=agent.clock.monotonic, log_level=agent.config.log_level,
                log_to=agent.config.log_to, on_ready=self._workers_ready,
                on_capacity=self._worker_capacity,
            )

    def _workers_ready(self) -> None:
        """Every worker is up: announce our tasks (the agent started with none)."""
        now = self.agent.clock.monotonic()
        log.info("workers ready: eligible for %d task(s)", len(self.defs))
        self.agent.apply(self.agent.core.set_tasks(self.agent.announcement, now), now)

    def _worker_capacity(self, capable: bool) -> None:
        """No worker left up (all being replaced): withdraw our tasks until one is back, so
        the manager sends the next runs to nodes that can start them."""
        now = self.agent.clock.monotonic()
        if capable:
            log.info("a worker is up again: eligible for %d task(s)", len(self.defs))
            tasks = self.agent.announcement
        else:
            log.info("no worker up (being replaced): not eligible for runs until one is")
            tasks = ()
        self.agent.apply(self.agent.core.set_tasks(tuple(tasks), now), now)

    # --- definitions (rolling deploys) -----------------------------------------------------------

    def _resolve(self, wall: float) -> None:
        """Schedule what the live members have loaded, with the winning definitions."""
        core = self.agent.core
        # The list's own epoch: the member epoch also moves with every replicated table, and
        # resolving every definition after each dispatch and each result is O(tasks).
        if core.members.list_epoch == self._resolved_epoch:
            return
        self._resolved_epoch = core.members.list_epoch
        entries = {m.name: m.tasks for m in core.member_list() if m.alive}
        res = resolve(list(self.defs.values()), entries)
        self._variants, self._loaded = res.variants, res.loaded
        for note in self.scheduler.update_defs(res.defs, wall):
            if self.scheduler.active:
                log.log(logging.WARNING if "stopped" in note else logging.INFO, note)

    # --- cluster events -------------------------------------------------------------------------

    def on_manager_changed(self, effect: ManagerChanged, now: float, wall: float) -> None:
        if effect.is_me:
            if self._activate is None:
                self._activate = False
        else:
            self._activate = None
            if self.scheduler.active:
                self.scheduler.deactivate()
            core = self.agent.core
            claim = core.manager_claim
            if effect.manager is not None and claim is not None:
                # A fellow member taking over holds the replica we hold: offer only what we
                # hold beyond it (rows from our data directory). A manager from elsewhere (a
                # merge; a cluster we just joined) gets every row.
                row = core.members.get(effect.manager)
                fellow = (row is not None and row.alive and effect.manager != core.me.name
                          and core.replicated is not None)
                self._offer(claim.address, now, only_beyond_replica=fellow)
                # The old manager may have died with our results in its inbox.
                for result in self.outbox.unacked(now):
                    self.agent.send(claim.address, result, now)

    def _offer(self, to: str, now: float, only_beyond_replica: bool = False) -> None:
        """Send the new manager the rows we hold with a state (our data directory's, merged
        with the replica): it keeps the most advanced lineage any member holds, and calls
        ``init`` only when no member has a state. Sent even when empty: it says "nothing
        here", so the manager's ``init`` need not wait."""
        replicated = self.agent.core.replicated
        beyond: set[str] | None = None
        if only_beyond_replica:
            table = unpack_table(replicated)
            theirs = table.get("tasks") if isinstance(table, dict) else None
            theirs = theirs if isinstance(theirs, dict) else {}
            beyond = set()
            for name, rec in self.scheduler.records.items():
                other = TaskRecord.from_json(theirs.get(name))
                if rec.has_state and (other is None or better(rec, other)):
                    beyond.add(name)
        self.scheduler.load(replicated)
        rows = {name: rec.to_json() for name, rec in self.scheduler.records.items()
                if rec.has_state and (beyond is None or name in beyond)}
        for row in rows.values():
            row["running"] = None
        self.agent.send(to, Offer(self.agent.me, self.agent.core.term,
                                  pack_table({"tasks": rows})), now)

    def on_offer(self, msg: Offer, now: float, wall: float) -> None:
        """A member's rows: merge them (manager only)."""
        if not self.agent.core.is_manager:
            return
        changed = self.scheduler.merge(msg.state, wall, source=msg.sender.name)
        self.scheduler.offer_from(msg.sender.name)
        self._log_conflicts()
        if changed and self.scheduler.active:
            self._replicate(now)

    def hold_offer(self, msg: Offer) -> None:
        """An OFFER from a node not admitted yet: kept (the newest per name, at most
        MAX_HELD_OFFERS) until it becomes a member."""
        self._held_offers.pop(msg.sender.name, None)
        self._held_offers[msg.sender.name] = msg
        while len(self._held_offers) > MAX_HELD_OFFERS:
            del self._held_offers[next(iter(self._held_offers))]

    def on_member_up(self, name: str, incarnation: str, now: float) -> None:
        msg = self._held_offers.pop(name, None)
        if msg is not None and msg.sender.incarnation == incarnation:
            self.on_offer(msg, now, self.agent.clock.wall())

    def on_handover(self, effect: StateHandedOver, now: float, wall: float) -> None:
        if effect.merge:
            changed = self.scheduler.merge(effect.state, wall, source=effect.sender)
            self._log_conflicts()
            if changed:
                self._replicate(now)
        elif self.agent.core.is_manager:
            self._activate = True

    def on_member_down(self, name: str, now: float) -> None:
        if self.scheduler.active:
            wall = self.agent.clock.wall()
            for fin in self.scheduler.fail_node(name, wall):
                self._log_finished(fin)
            self._replicate(now)

    def on_leave(self, now: float) -> None:
        if self.scheduler.active:
            # The successor takes over with the table. Until this node exits it dispatches
            # nothing but still applies results of runs in flight: if every node is stopping
            # (a full-cluster stop) no successor confirms, and this table, written to the data
            # directory last, is the one that holds them.
            self.scheduler.drain()
            self.agent.core.set_replicated(pack_table(self.scheduler.table()))
        self._leave_started = now

    def ready_to_leave(self, now: float) -> bool:
        """A leaving node first lets its runs in flight finish (for up to LEAVE_WAIT s)."""
        if self._held and self._flush_held(now):
            return False  # sent now: give the loop a turn to put it on the wire
        if (self.executor is None or not self.executor.busy()) and not self._held:
            return True
        return self._leave_started is not None and now - self._leave_started >= LEAVE_WAIT

    # --- messages -------------------------------------------------------------------------------

    def on_execute(self, msg: Execute, now: float, inbound: Inbound | None) -> None:
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

    def _late(self, msg: Execute, wall: float) -> str:
        """Why this EXECUTE must not run (it arrived too late), or ""."""
        wall_ms = wall * 1000
        if msg.deadline_ms and wall_ms > msg.deadline_ms:
            return f"arrived {wall_ms - msg.deadline_ms:.0f} ms after its deadline"
        d = self.defs.get(msg.task)
        if msg.due_ms and d is not None and d.interval is not None and (
                wall_ms > msg.due_ms + d.interval):
            return (f"arrived {wall_ms - msg.due_ms:.0f} ms after its slot was due, more than "
                    f"one interval ({d.interval} ms)")
        return ""

    def _stale(self, msg: Execute, why: str) -> None:
        self.stale += 1
        log.warning("dropped a stale EXECUTE task=%s slot=%d term=%d run=%s from %s: %s",
                    msg.task, msg.slot, msg.term, msg.run_id, msg.sender.name, why)

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

    def on_result(self, msg: Result, now: float, wall: float) -> bool:
        """Apply a RESULT; False if this node is not scheduling (yet): then it is not
        acknowledged, and its node sends it again."""
        if not self.scheduler.active:
            return False
        fin = self.scheduler.on_result(msg.task, msg.run_id, msg.sender.name, msg.outcome,
                                       msg.state, msg.duration_ms, msg.error, wall)
        if fin is not None:
            self._log_finished(fin)
            self._log_conflicts()
            self._replicate(now)
            if self.store is not None:
                self.store.mark()
        if msg.sender.name != self.agent.me.name:
            # Applied, or of no use to us (not a run in flight): either way, stop resending.
            self.agent.send(msg.sender.address, ResultAck(self.agent.me, self.agent.core.term,
                                                          msg.task, msg.run_id), now)
        return True

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
        self.agent.send(to, result, self.agent.clock.monotonic())

    def _flush_held(self, now: float) -> bool:
        """Send held results to the successor once its claim is known; True if sent."""
        claim = self.agent.core.highest
        if claim is None or claim.address == self.agent.me.address:
            return False
        held, self._held = self._held, []
        for result in held:
            self.agent.send(claim.address, result, now)
        return True

    # --- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        best = math.inf
        if self._activate is not None:
            return -math.inf  # activate now
        if self.executor is not None:
            best = self.executor.next_deadline()
        if self.store is not None:
            best = min(best, self.store.next_deadline())
        best = min(best, self.outbox.next_deadline())
        # While a stalled manager's claim is unconfirmed nothing is dispatched, so what is due
        # must not wake the loop (it would spin without ever reading the confirmation); the
        # core's heartbeat timer brings the next look.
        if self.scheduler.active and self.agent.core.dispatch_ok:
            if self._replicate_dirty:
                best = min(best, self._replicate_after)
            clock = self.agent.clock
            wall_next = self.scheduler.next_deadline(clock.wall())
            if wall_next != math.inf:
                best = min(best, clock.monotonic() + (wall_next - clock.wall()))
        return best

    def on_tick(self, now: float, wall: float) -> None:
        if self.executor is not None:
            self.executor.expire(now)
        core = self.agent.core
        if self._activate is not None and core.is_manager:
            graceful = self._activate
            self._activate = None
            self.scheduler.load(core.replicated)
            self._resolved_epoch = -1
            self._resolve(wall)
            self.scheduler.activate(wall, graceful=graceful,
                                    claim=(core.term, self.agent.me.name))
            for name in self.scheduler.defs:  # adopted before this node was the manager
                if name not in self.defs and name not in self.scheduler.gone:
                    log.info("task=%s is loaded by a live member: scheduling it", name)
            log.info("scheduling %d task(s) as manager (%s)", len(self.scheduler.defs),
                     "hand-over" if graceful else "takeover")
            self._resolve_adopted(now, wall, graceful)
            self._replicate(now, force=True)
        elif self._activate is not None:
            self._activate = None
        self._resend(now, wall)
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
        self._resolve(wall)
        dispatches, finished = self.scheduler.tick(wall, self._loaded)
        for fin in finished:
            self._log_finished(fin)
        for d in dispatches:
            self._dispatch(d, now)
        if dispatches or finished:
            self._replicate(now)

    def _resolve_adopted(self, now: float, wall: float, graceful: bool) -> None:
        """Runs in flight we adopted with the table: ask their nodes rather than wait out
        their deadlines. After a crash, a run whose node is gone fails now; one on this node
        that is neither running nor finished here was never received (lost with the old
        manager). A graceful hand-over's leaving manager reports its own run by itself."""
        core = self.agent.core
        me = self.agent.me
        for name, rec in list(self.scheduler.records.items()):
            run = rec.running
            if run is None:
                continue
            node, run_id = str(run["node"]), str(run["run"])
            if node == me.name:
                result = self.outbox.find(run_id)
                if result is not None:
                    self.on_result(result, now, wall)
                    self.outbox.ack(run_id)
                elif self.executor is None or not self.executor.has_run(run_id):
                    self.on_result(self._unknown_run(name, run_id, int(run["slot"])), now,
                                   wall)
                continue
            row = core.members.get(node)
            if row is not None and row.alive:
                self.agent.send(row.peer.address, RunQuery(me, core.term, name, run_id), now)
            elif not graceful:
                for fin in self.scheduler.fail_node(node, wall):
                    self._log_finished(fin)

    def _resend(self, now: float, wall: float) -> None:
        """Unacknowledged results: to the manager we follow, or apply them if it is us."""
        core = self.agent.core
        due = self.outbox.due(now)
        if self.scheduler.active:
            if self.outbox.pending():
                for result in self.outbox.unacked(now):
                    if self.on_result(result, now, wall):
                        self.outbox.ack(result.run_id)
            return
        claim = core.manager_claim
        if claim is None or claim.address == self.agent.me.address or core.role in (
                Role.LEAVING, Role.STOPPED):
            return
        for result in due:
            self.agent.send(claim.address, result, now)

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

    def _replicate(self, now: float, force: bool = False) -> None:
        """Send the table to every member now, or soon (see REPLICATE_SHARE)."""
        core = self.agent.core
        if not core.is_manager:
            return
        if not force and now < self._replicate_after:
            self._replicate_dirty = True
            return
        self._replicate_dirty = False
        clock = self.agent.clock
        began = clock.monotonic()
        core.set_replicated(pack_table(self.scheduler.table()))
        self.agent.apply(core.heartbeat_now(now), now)
        cost = clock.monotonic() - began
        self._replicate_after = now + cost * (REPLICATE_SHARE - 1)

    def loaded(self, wall: float) -> dict[str, tuple[str, ...]]:
        """Live node -> the tasks it has loaded: what a dispatch chooses from."""
        self._resolve(wall)
        return self._loaded

    def replicate_now(self, now: float) -> None:
        """Replicate the table at once (an operator's command is answered after this)."""
        self._replicate(now, force=True)

    def send_dispatch(self, d: Dispatch, now: float) -> None:
        self._dispatch(d, now)

    def _log_finished(self, fin: Finished) -> None:
        if fin.outcome in ("ok", "error", "timeout"):  # runs, not skipped or refused slots
            self.agent.metrics.observe_run(fin.task, fin.duration_ms, fin.lateness_ms)
        # One line per run: DEBUG when it went well (at 1,000 runs/s an INFO line per run costs
        # the manager's loop more than the run's round trip), WARNING when it did not.
        level = logging.DEBUG if fin.outcome == "ok" else logging.WARNING
        if not log.isEnabledFor(level):
            return
        extra = {"task": fin.task, "slot": fin.slot, "run": fin.run_id or None}
        log.log(level, "run task=%s slot=%d node=%s duration_ms=%.1f rtt_ms=%.2f outcome=%s%s",
                fin.task, fin.slot, fin.node or "-", fin.duration_ms, fin.round_trip_ms,
                fin.outcome,
                f" error={fin.error.splitlines()[-1] if fin.error else ''!r}"
                if fin.outcome != "ok" else "", extra=extra)
        if fin.outcome == "error" and "\n" in fin.error:
            log.warning("task=%s slot=%d remote traceback from %s:\n%s", fin.task, fin.slot,
                        fin.node, fin.error, extra=extra)

    # --- the data directory -----------------------------------------------------------------------

    def persist(self, now: float, final: bool = False) -> None:
        """Write the table we hold to the data directory when it changed (coalesced: see
        clerk._store); ``final``: now, whatever the pacing (a stop)."""
        store = self.store
        if store is None:
            return
        replicated = self.agent.core.replicated
        if replicated is not self._persisted:
            self._persisted = replicated
            store.mark()
        if self.scheduler.active and self._replicate_dirty:
            store.mark()
        if not (store.due(now) or (final and store.next_deadline() != math.inf)):
            return
        began = time.perf_counter()
        sched = self.scheduler
        if sched.active and (sched.draining or not self.agent.core.is_manager):
            # A leaving manager's own last table (results of its runs in flight): only here.
            table = sched.table()
            for row in table["tasks"].values():
                row["running"] = None
            text: Any = table
        elif sched.active and self._replicate_dirty and not final:
            store.defer(self._replicate_after)  # replicated soon: that table is the one
            return
        elif sched.active and self._replicate_dirty:
            text = sched.table()
        elif replicated is None:
            store.skip()  # nothing from a manager yet: the disk already holds what we have
            return
        elif isinstance(replicated, dict) and replicated.get("packed") == 1:
            text = "".join(replicated.get("chunks") or ())  # as replicated: no reserialize
        else:
            text = replicated
        store.write(text, now, spent=time.perf_counter() - began)

    # --- status ---------------------------------------------------------------------------------

    def add_status(self, st: dict[str, Any]) -> None:
        wall = self.agent.clock.wall()
        if not self.scheduler.active:
            self.scheduler.load(self.agent.core.replicated)
        self._resolve(wall)
        st["tasks"] = self.scheduler.status(wall)
        for row in st["tasks"]:
            name = row["name"]
            row["nodes_overruns"] = self.nodes_guard.overruns.get(name, 0)
            row["loaded_here"] = name in self.defs
            if name in self._variants:
                row["definitions"] = self._variants[name]  # members disagree (clerk._deploy)
            if name in self.nodes_guard.unavailable:
                row["nodes_unavailable"] = self.nodes_guard.unavailable[name]
        runs = self.scheduler.node_runs
        for m in st.get("members", []):
            m["runs"] = runs.get(m["name"], 0)
        st["node_runs"] = dict(runs)
        st["stale"] = self.stale
        st["results_unacked"] = self.outbox.pending()
        if self.executor is not None:
            st["executor"] = {**self.executor.stats(), "stale": self.stale}
        if self.store is not None:
            st["data_dir"] = {"path": str(self.store.path), "writes": self.store.writes,
                              "moved_aside": [str(p) for p in self.store.moved_aside]}
        else:
            st["data_dir"] = None

    def close(self) -> None:
        self.nodes_guard.close()
        if self.executor is not None:
            self.executor.close()
        if self.store is not None:
            self.store.mark()
            self.persist(self.agent.clock.monotonic(), final=True)
            self.store.close()
