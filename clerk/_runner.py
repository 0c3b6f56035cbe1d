"""The task layer of a node: the manager's scheduler and this node's executor, wired to the
agent's loop. Logs one structured line per finished run (task, slot, node, duration, outcome).
"""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING, Any

from clerk._core import ManagerChanged, Role, StateHandedOver
from clerk._deploy import resolve
from clerk._executor import Executor
from clerk._messages import Execute, Result
from clerk._nodes_guard import NodesGuard
from clerk._schedule import Dispatch, Finished, Scheduler, pack_table
from clerk._tasks import TaskDef, load_task_class

if TYPE_CHECKING:
    from clerk._agent import Agent
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


class TaskRunner:
    """Scheduling (when this node is the manager) and execution (always) of tasks."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.defs: dict[str, TaskDef] = {d.name: d for d in agent.config.tasks}
        self._classes = {name: load_task_class(d.target, name=name)
                         for name, d in self.defs.items()}
        self.nodes_guard = NodesGuard(self._classes)  # nodes() within a budget, off the loop
        self.scheduler = Scheduler(list(self.defs.values()),
                                   random.Random(agent.rng.getrandbits(64)),
                                   self.nodes_guard)
        # What the live members announce (clerk._deploy), recomputed when the list changes.
        self._resolved_epoch = -1
        self._variants: dict[str, list[dict[str, Any]]] = {}
        self._loaded: dict[str, tuple[str, ...]] = {}
        self._activate: bool | None = None  # pending activation: graceful or not
        self._leave_started: float | None = None
        self._replicate_dirty = False
        self._held: list[Result] = []  # results of a leaving manager's own runs (see below)
        self._replicate_after = -math.inf  # monotonic
        self.executor: Executor | None = None
        if self.defs:
            self.executor = Executor(
                node=agent.me.name, defs=self.defs, workers=agent.config.workers,
                ctx=agent.transport.ctx, add_reader=agent.transport.add_reader,
                send_result=self._send_result, me=lambda: (agent.me, agent.core.term),
                now=agent.clock.monotonic, log_level=agent.config.log_level,
                log_to=agent.config.log_to,
            )

    # --- definitions (rolling deploys) -----------------------------------------------------------

    def _resolve(self, wall: float) -> None:
        """Schedule what the live members have loaded, with the winning definitions."""
        core = self.agent.core
        if core.members.epoch == self._resolved_epoch:
            return
        self._resolved_epoch = core.members.epoch
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

    def on_handover(self, effect: StateHandedOver, now: float, wall: float) -> None:
        if effect.merge:
            if self.scheduler.merge(effect.state, wall):
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
            self.scheduler.deactivate()  # the successor takes over with the table
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
        if self._leave_started is not None:
            self._send_result(Result(self.agent.me, self.agent.core.term, msg.task, msg.run_id,
                                     msg.slot, "refused", None, 0.0, "node is leaving"),
                              msg.sender.address)
            return
        if self.executor is None:
            self._send_result(Result(self.agent.me, self.agent.core.term, msg.task, msg.run_id,
                                     msg.slot, "error", None, 0.0,
                                     f"node {self.agent.me.name} has no tasks loaded"),
                              msg.sender.address)
            return
        self.executor.submit(msg, msg.sender.address, now)

    def expects(self, msg: Result) -> bool:
        """A RESULT for a run in flight, from the node it was sent to (which may have left the
        member list since: a manager that handed over while running a task itself)."""
        return self.scheduler.active and self.scheduler.expects(msg.task, msg.run_id,
                                                                msg.sender.name)

    def on_result(self, msg: Result, now: float, wall: float) -> None:
        if not self.scheduler.active:
            return
        fin = self.scheduler.on_result(msg.task, msg.run_id, msg.sender.name, msg.outcome,
                                       msg.state, msg.duration_ms, msg.error, wall)
        if fin is not None:
            self._log_finished(fin)
            self._replicate(now)

    def _send_result(self, result: Result, reply_to: str) -> None:
        """Results go to the manager this node follows now (it may have changed during the
        run; a leaving node's successor), else back to the sender."""
        core = self.agent.core
        claim = core.manager_claim
        if core.role in (Role.LEAVING, Role.STOPPED) or claim is None:
            claim = core.highest
        to = claim.address if claim is not None else reply_to
        if to == self.agent.me.address and core.is_manager:  # local: no network needed
            self.on_result(result, self.agent.clock.monotonic(), self.agent.clock.wall())
            return
        if to == self.agent.me.address and core.role in (Role.LEAVING, Role.STOPPED):
            # A leaving manager's own run: its successor (who adopted the run with the table)
            # is not confirmed yet, and this node no longer schedules. Hold the result until
            # the successor's claim arrives (see _flush_held) instead of losing it.
            self._held.append(result)
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
        if self.scheduler.active:
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
            self.scheduler.activate(wall, graceful=graceful)
            for name in self.scheduler.defs:  # adopted before this node was the manager
                if name not in self.defs and name not in self.scheduler.gone:
                    log.info("task=%s is loaded by a live member: scheduling it", name)
            log.info("scheduling %d task(s) as manager (%s)", len(self.scheduler.defs),
                     "hand-over" if graceful else "takeover")
            self._replicate(now, force=True)
        elif self._activate is not None:
            self._activate = None
        if not self.scheduler.active:
            return
        if self._replicate_dirty and now >= self._replicate_after:
            self._replicate(now)
        self._resolve(wall)
        dispatches, finished = self.scheduler.tick(wall, self._loaded)
        for fin in finished:
            self._log_finished(fin)
        for d in dispatches:
            self._dispatch(d, now)
        if dispatches or finished:
            self._replicate(now)

    def _dispatch(self, d: Dispatch, now: float) -> None:
        core = self.agent.core
        member = core.members.get(d.node)
        if member is None:
            return
        msg = Execute(self.agent.me, core.term, d.task, d.run_id, d.slot, d.state,
                      d.timeout_ms, d.init)
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

    def _log_finished(self, fin: Finished) -> None:
        level = logging.INFO if fin.outcome == "ok" else logging.WARNING
        extra = {"task": fin.task, "slot": fin.slot, "run": fin.run_id or None}
        log.log(level, "run task=%s slot=%d node=%s duration_ms=%.1f rtt_ms=%.2f outcome=%s%s",
                fin.task, fin.slot, fin.node or "-", fin.duration_ms, fin.round_trip_ms,
                fin.outcome,
                f" error={fin.error.splitlines()[-1] if fin.error else ''!r}"
                if fin.outcome != "ok" else "", extra=extra)
        if fin.outcome == "error" and "\n" in fin.error:
            log.warning("task=%s slot=%d remote traceback from %s:\n%s", fin.task, fin.slot,
                        fin.node, fin.error, extra=extra)

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
        if self.executor is not None:
            st["executor"] = self.executor.stats()

    def close(self) -> None:
        self.nodes_guard.close()
        if self.executor is not None:
            self.executor.close()
