"""The simulated node's take-over (:mod:`clerk._simtasks`): loading the table it takes over
(``SimLedger.load_s``), activating the real scheduler on it in slices as the real runner's
``_take_over_step`` does, adopting its own runs in flight, the merges and results that waited,
and a stop request that waits for a take-over (``leave_at``).

Split out of :mod:`clerk._simtasks` (the layer's event handling, replication and results
stay there; the OFFERs are in :mod:`clerk._simoffers`) to keep each module under ~600 lines.
:class:`LedgerTakeover` is a mixin of :class:`clerk._simtasks.LedgerLayer`: the attributes
and methods it declares are the layer's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from clerk._adopt import takeover_stale
from clerk._adoptedruns import UNLISTED_RUN_WAIT_S, bounded_at_takeover, fails_at_takeover
from clerk._clockskew import CORRECT_MS
from clerk._core import Send
from clerk._covers import covers_of
from clerk._leaveoffers import offers_awaited_until
from clerk._messages import Execute, Result
from clerk._offerruns import adopt_runs, run_of
from clerk._reclaim import reload_at_claim
from clerk._simattrs import LedgerAttrs
from clerk._simledgerrun import TAKEOVER_BEFORE_LEAVE_S
from clerk._writeahead import WriteAhead

if TYPE_CHECKING:
    pass

__all__ = ["LedgerTakeover"]


class LedgerTakeover(LedgerAttrs):
    """A node's take-over of the table (see the module docstring)."""

    wa: WriteAhead | None
    outbox: deque[Result]
    unacked: dict[str, Result]
    in_flight: dict[str, Execute]
    _offer_to: str | None
    _disk_states: bool
    #: A takeover under way: graceful (a hand-over's table) or not; None: none.
    _activate: bool | None
    _merges_waiting: list[tuple[str, Any, Send | None]]
    _loaded_at: float | None
    _leave_asked: float | None

    if TYPE_CHECKING:  # (the layer's, and clerk._simledgerrun.LedgerRuns', after us in its MRO)
        def wall(self) -> float: ...

        def _deliver(self, msg: Any) -> bool: ...

        def _quorum_table(self, proposer: Any) -> WriteAhead: ...

    def _loaded(self) -> bool:
        """Is the table this node takes over loaded? At once, or ``SimLedger.load_s`` after
        the activation began (a real node loads a big table in slices: ~1 s at 10,000 tasks
        on a loaded machine, while its loop runs)."""
        if self._loaded_at is None:
            self._loaded_at = self.net.now + self.world.load_s
        return self.net.now >= self._loaded_at

    def leave_at(self, now: float) -> float | None:
        """As the real agent's stop request (``TaskRunner.may_leave``): while this node takes
        over (its table loading: ``SimLedger.load_s``) it waits, ``TAKEOVER_BEFORE_LEAVE_S`` at
        most, then for the OFFERs its dispatches wait for (clerk._leaveoffers); again in 1 ms."""
        core = self.node.core
        if (self._offer_to is not None and not core.is_manager
                and self.world.leave_keeps_results):
            return now + 0.001  # a member sends the OFFER under way first (its runs in flight)
        if not core.is_manager or not self.world.finish_takeover:
            return None
        if self._activate is None:
            members = {m.name: m.tasks for m in core.member_list() if m.alive}
            wait = self.world.leave_waits_offers and offers_awaited_until(
                self.scheduler, members, self.wall() * 1000)
            return now + 0.001 if wait else None
        if self._leave_asked is None:
            self._leave_asked = now
        return None if now - self._leave_asked >= TAKEOVER_BEFORE_LEAVE_S else now + 0.001

    def _confirm(self, confirm: Send | None) -> None:
        """A merge HANDOVER part's MERGED, once merged (as the real runner's ``_confirm``)."""
        if confirm is not None:
            self.net.send(self.node.name, confirm.to, confirm.msg)

    def _handed_over(self, sender: str, state: Any) -> None:
        """A merge HANDOVER part from ``sender`` is merged (as the real runner's)."""
        if self.world.handover_ends_wait and sender != self.node.name:
            self.scheduler.handed_over_by(sender, covers_of(state))

    def _covers(self) -> Collection[str]:
        """The members our table covers, for our merge HANDOVER (as the real runner's)."""
        sched = self.scheduler
        scheduling = sched.active and self._activate is None and self.world.handover_covers
        return sched.offered if scheduling else ()

    def _take_over(self, core: Any) -> bool:
        """The table this manager takes over is loaded: activate the scheduler on it (as the
        real runner's ``_take_over_step``), adopt our own runs in flight, merge what waited,
        apply our kept results. True (the table changed)."""
        graceful, self._activate = bool(self._activate), None  # (not None: the caller)
        self._loaded_at = None
        self.scheduler.from_disk = (self.world.offers_first and self._disk_states
                                    and not core.replica.items())
        # As the real runner (clerk._runner._take_over_step): a crash takeover from a
        # replica waits for the members' OFFERs (``wait_caught_up``: even one caught up).
        self.scheduler.stale = self.world.sure_offers and takeover_stale(
            core.quorum is not None, graceful, core.table_log.complete,
            bool(core.replica.items())) and (self.world.wait_caught_up
                                             or core.replica.position() is None)
        # Recorded members heard from since a restart, not members: waited for too
        # (clerk._joining, "Restarts"); ``SimLedger.rejoin_heard`` False: not, as before.
        heard = core.take_rejoin_heard(self.net.now)
        self.scheduler.expected = heard if self.world.rejoin_heard else set()
        # A claim again while scheduling keeps the scheduler's own rows (clerk._reclaim).
        if not self.world.reclaim_keeps or reload_at_claim(
                core.quorum is not None,
                self.scheduler.active and not self.scheduler.draining):
            self.scheduler.load(core.replicated)
        self.wa = None
        proposer = core.proposer
        if proposer is not None:
            self.wa = self._quorum_table(proposer)
        # In slices, as the real runner does (_take_over_step), here within this one
        # event: slices of two tasks or rows (the sliced path, deterministic; the result is
        # the one-step one's, see tests/unit/test_activate_sliced.py).
        # How far our clock is ahead of the manager's we followed, as the real runner keeps
        # it (clerk._runner.on_tick): its runs in flight time out that much later.
        off = core.clock_skew.offset(self.net.now, self.wall()) if core.clock_skew.source else None
        self.scheduler.begin_activation(self.wall(), graceful=graceful,
                                        claim=(core.term, self.node.name),
                                        ahead_ms=off * 1000 if off is not None
                                        and off * 1000 >= CORRECT_MS else 0.0,
                                        ahead_of=core.clock_skew.ahead_by_manager(
                                            self.net.now, self.wall()),
                                        table_of=core.table_from)
        reads = [0]

        def clock() -> float:
            reads[0] += 1
            return float(reads[0])

        while not self.scheduler.activate_step(reads[0] + 2.5, clock):
            pass
        changed = True
        self._resolve_adopted(core, graceful)
        if self.world.offer_runs and core.quorum is None:
            # Our own runs in flight (we send ourselves no OFFER: clerk._offerruns), kept
            # as their manager sent them (the real node keeps them moved into its own time
            # base: clerk._runner, as_sent=False; the same times in the end).
            adopt_runs(self.scheduler, [run_of(m) for m in self.in_flight.values()],
                       self.node.name, self.wall(), as_sent=True)
        merges, self._merges_waiting = self._merges_waiting, []
        for sender, table, _ in merges:
            self.scheduler.merge(table, self.wall(), source=sender)
            self._handed_over(sender, table)
        for _, _, confirm in merges:
            self._confirm(confirm)
        for result in list(self.outbox):  # our own kept results (runs we adopted)
            changed |= self._deliver(result)
        for run_id, result in list(self.unacked.items()):  # (default mode: the same)
            changed |= self._deliver(result)
            del self.unacked[run_id]
        return changed

    def _resolve_adopted(self, core: Any, graceful: bool) -> None:
        """The runs in flight adopted with the table whose node is gone fail now, as the real
        runner's ``_resolve_adopted`` (clerk._adoptedruns: not a node that is not listed,
        which may have left with the run going; ``SimLedger.unlisted_runs_wait``). (The
        simulator has no RUN_QUERY: a live member's run ends by its result or deadline.)"""
        sched, gone = self.scheduler, set()
        for name in sched.in_flight():
            run = sched.records[name].running
            if run is None or str(run["node"]) == self.node.name:
                continue
            row = core.members.get(str(run["node"]))
            listed, alive = row is not None, row is not None and row.alive
            quorum, wait = core.quorum is not None, self.world.unlisted_runs_wait
            if fails_at_takeover(listed, alive, graceful, quorum, wait):
                gone.add(str(run["node"]))
            elif (bounded_at_takeover(listed, alive, graceful, quorum, wait)
                  and (not graceful or self.world.bound_after_handover)):
                # (bounded as the runner does)
                sched.bound_run(name, (self.wall() + UNLISTED_RUN_WAIT_S) * 1000)
        for node in sorted(gone):
            sched.fail_node(node, self.wall())
