"""The task layer's definitions: which tasks this node offers, and which the cluster schedules.

The state every part of :class:`clerk._runner.TaskRunner` shares is declared here (the
parts are mixins: this one, :mod:`clerk._replication`, :mod:`clerk._routing`,
:mod:`clerk._runleave`, and the runner itself), each part in a module that opens with the
rules it owns.

* **Eligible when ready.** A node advertises its tasks (and so gets runs) only once all its
  workers have said ready, and withdraws them while no worker is up (all being replaced), so
  the manager sends the next runs to nodes that can start them.
* **Rolling deploys.** The manager schedules what the live members have loaded, with the
  winning definition of each task (:mod:`clerk._deploy`); it resolves again only when the
  member list itself changes (not at every replicated table: that would be O(tasks) after
  every dispatch and every result), only what changed, in slices between the loop's other
  work (every node keeps it current, so a take-over starts from it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from clerk._deploy import Resolver

if TYPE_CHECKING:
    from clerk._clockskew import AsSent
    from clerk._coretypes import Send
    from clerk._executor import Executor
    from clerk._host import Host
    from clerk._leftoffers import LeftSenders
    from clerk._messages import Json, Offer, Result
    from clerk._nodes_guard import NodesGuard
    from clerk._outbox import Outbox
    from clerk._replica import Replica, ReplicaLog, RowEncoder
    from clerk._resultacks import PendingAcks
    from clerk._schedule import Scheduler
    from clerk._store import Store
    from clerk._tasks import TaskDef

__all__ = ["RESOLVE_PAUSE", "Definitions"]

log = logging.getLogger("clerk.tasks")
#: Tasks the scheduler adopts between two looks at the clock (``Scheduler.update_defs``).
ADOPT_CHUNK = 64
#: Between two slices of resolving the member list, or of an OFFER (s): a turn that reads
#: the sockets.
RESOLVE_PAUSE = 0.0002


class Definitions:
    """The runner's shared state (set by ``TaskRunner.__init__``) and its definitions."""

    agent: Host
    defs: dict[str, TaskDef]
    scheduler: Scheduler
    nodes_guard: NodesGuard
    store: Store | None
    executor: Executor | None
    outbox: Outbox
    _acks: PendingAcks
    _acks_round: int
    stale: int
    _resolved_epoch: int
    _variants: dict[str, list[dict[str, Any]]]
    _loaded: dict[str, AbstractSet[str]]
    _resolver: Resolver
    _resolving: bool
    _adopting: list[str]
    _adopt_at: int
    _persisted: object
    _disk_rows: ReplicaLog | Replica | None
    _held_offers: dict[str, list[Offer]]
    _left_senders: LeftSenders
    _leave_started: float | None
    _replicate_dirty: bool
    _replicate_after: float
    _loading: tuple[tuple[str, int], Sequence[tuple[str, str | None]], int] | None
    _offers_waiting: dict[str, list[Offer]]
    _merges_waiting: list[tuple[str, Json, Send | None]]  # (with the MERGED to send)
    _results_waiting: dict[str, Result]
    _activate: bool | None
    _rows_seen: dict[str, str | None] | None
    as_sent: AsSent  # moved runs' times as sent, for the OFFER (clerk._clockskew)
    _held: list[Result]
    _encoder: RowEncoder
    _sent: tuple[str, int]

    def _workers_ready(self) -> None:
        """Every worker is up: announce our tasks (the agent started with none)."""
        now = self.agent.clock.monotonic()
        log.info("workers ready: eligible for %d task(s)", len(self.defs))
        self.scheduler.loading_here = frozenset()  # (announced from now on)
        self.agent.apply(self.agent.core.set_tasks(self.agent.announcement, now), now)

    def _worker_capacity(self, capable: bool) -> None:
        """No worker left up (all being replaced): withdraw our tasks until one is back, so
        the manager sends the next runs to nodes that can start them."""
        now = self.agent.clock.monotonic()
        if capable:
            log.info("a worker is up again: eligible for %d task(s)", len(self.defs))
            tasks = self.agent.announcement
        elif self.executor is not None and self.executor.failed:
            log.info("worker pool gone: not eligible for runs (leaving)")
        else:
            log.info("no worker up (being replaced): not eligible for runs until one is")
            tasks = ()
        # A trigger meanwhile: "not loaded yet", when no other member has the task either.
        self.scheduler.loading_here = frozenset() if capable else frozenset(self.defs)
        self.agent.apply(self.agent.core.set_tasks(tuple(tasks), now), now)

    def _resolve(self, wall: float, deadline: float = math.inf, adopt: bool = True) -> bool:
        """Schedule what the live members have loaded, with the winning definitions: the
        work a change of the member list brings (:class:`clerk._deploy.Resolver`, O(what
        changed)) until ``deadline`` (``time.perf_counter``), then the scheduler adopts the
        tasks that changed (``adopt``; a follower's scheduler adopts at its status or its
        take-over). True once nothing is left to do."""
        core = self.agent.core
        # The list's own epoch: the member epoch also moves with every replicated table, and
        # resolving every definition after each dispatch and each result is O(tasks).
        if core.members.list_epoch != self._resolved_epoch:
            self._resolved_epoch = core.members.list_epoch
            self._resolver.update({m.name: m.tasks for m in core.member_list() if m.alive})
        self._resolving = True
        if not self._resolver.step(deadline):
            return False
        if not adopt:
            self._resolving = False
            return True
        sched = self.scheduler
        if not self._adopting:
            changed = self._resolver.take_changed()
            if not changed:
                self._resolving = False
                return True
            # New tasks join ``defs`` in name order, as a full resolution adds them.
            self._adopting = [*sorted(n for n in changed if n not in sched.defs),
                              *(n for n in changed if n in sched.defs)]
            self._adopt_at = 0
        names = self._adopting
        while self._adopt_at < len(names):
            chunk = names[self._adopt_at:self._adopt_at + ADOPT_CHUNK]
            self._adopt_at += len(chunk)
            for note in sched.update_defs(self._resolver.defs, wall, chunk):
                if sched.active:
                    log.log(logging.WARNING if "stopped" in note else logging.INFO, note)
            if self._adopt_at < len(names) and time.perf_counter() >= deadline:
                return False
        self._adopting = []
        # (more may have changed meanwhile: the next call adopts them)
        self._resolving = self._resolver.pending or self._resolver.has_changed
        return not self._resolving

    def loaded(self, wall: float) -> Mapping[str, AbstractSet[str]]:
        """Live node -> the tasks it has loaded: what a dispatch chooses from."""
        self._resolve(wall)
        return self._loaded
