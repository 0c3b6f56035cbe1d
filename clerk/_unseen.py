"""Runs the new manager's table never showed: their results, and the runs members offer.

A manager that died before any member's replica showed a dispatch leaves a successor that does
not know the run (see :mod:`clerk._running`'s docstring and :mod:`clerk._offerruns`). Its
RESULT, resent by its node to every new manager, is applied if it continues the row exactly
(its run id names the state it started from: :func:`clerk._runids.base_tag`), and otherwise
dropped and counted in the task's ``conflicts`` (never silently); a run a member's OFFER lists
is adopted as the row's run in flight, so that no later slot overlaps it. Mixed into
:class:`clerk._schedule.Scheduler` through :class:`clerk._running.Running`. Pure.

**An old slot after skipped ones.** A result whose slot the row has passed, without its
history showing it end, is dropped: later slots ran beside it, from the state it started
from. Not when no later slot was sent at all (none dispatched, none in flight, none in the
history): they were skipped (no node had the task: the only node that has it left with this
run going, and the nodes that came back without it skipped its slots until its OFFER and
result came, clerk._leftoffers), so nothing started from that state since. Then, if it
continues the row exactly, it is applied; the row's slot stays where it is (no slot is sent
again). Before, its update was lost, counted as a conflict, on real processes
(tests/integration/test_last_node_up_leaves.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clerk._adopt import Adoption
from clerk._dispatch import Finished
from clerk._lead import FUTURE_SKEW_MS, MAX_DISPATCH_LEAD_MS
from clerk._record import Conflict, TaskRecord
from clerk._runids import base_tag, dispatching_claim

__all__ = ["DROPPED_KEEP", "TRANSIT_GRACE_MS", "UnseenRuns"]

#: Extra time the manager waits past a run's timeout for the node's own timeout report.
TRANSIT_GRACE_MS = 1000
#: Run ids whose dropped result was counted as a conflict, remembered so a resend of the same
#: result is not counted again (``UnseenRuns._count_dropped``).
DROPPED_KEEP = 1024


def _history_has(rec: TaskRecord, slot: int) -> bool:
    """Did the row see ``slot`` end (a run history entry of it), or is its history too short
    to tell (no entry as old as ``slot``: then it is taken to have)?"""
    entries = rec.run_history
    if not len(entries) or entries[0][0] > slot:
        return True
    return any(e[0] == slot for e in entries)


def _only_skipped_since(rec: TaskRecord, slot: int) -> bool:
    """Were the row's slots after ``slot`` only skipped: none sent (``dispatched``), none in
    flight, none finished (its history)?"""
    if rec.running is not None or rec.dispatched > slot:
        return False
    entries = rec.run_history.entries
    return not any(e[0] > slot for e in entries)


class UnseenRuns(Adoption):
    """Results of runs the table never showed, and runs members offered (module docstring)."""

    if TYPE_CHECKING:  # provided by clerk._running.Running
        def _finish(self, name: str, rec: TaskRecord, outcome: str, state: Any,
                    duration_ms: float, error: str, wall_ms: float) -> Finished: ...

        def on_result(self, task: str, run_id: str, node: str, outcome: str, state: Any,
                      duration_ms: float, error: str, wall: float,
                      slot: int | None = None) -> Finished | None: ...

    def _unseen_run(self, task: str, run_id: str, node: str, slot: int, outcome: str,
                    state: Any, duration_ms: float, wall: float) -> Finished | None:
        """A RESULT for a run the table does not show: applied if it continues the row
        exactly, else dropped (counted when the row never saw its slot)."""
        rec = self.records.get(task)
        if rec is None or task not in self.defs or outcome != "ok":
            return None  # not ours to judge
        wall_ms = wall * 1000
        if task in self._grid and slot > rec.slot and slot > self._slot_at(
                self.defs[task], wall_ms + MAX_DISPATCH_LEAD_MS + FUTURE_SKEW_MS) + 1:
            # No manager sent a slot of this grid's future: its number is another grid's (a
            # run of the interval before a deploy changed it, whose dispatch the table lost),
            # which would put the row's slot decades ahead and stall the next manager
            # (tests/unit/test_review16_grid_change.py). Its update is lost: counted.
            # Only past the row's slot (only such a slot moves it): a slot the row reached is
            # judged as an old run below, whatever our clock says. A table from a manager
            # whose clock is ahead of ours by more than FUTURE_SKEW_MS holds slots past our
            # horizon, and the resends of results it already holds were counted as lost
            # (a conflict with no update lost: tests/unit/test_skew_held_resend.py).
            self._count_dropped(task, rec, run_id, node, slot, wall_ms,
                                "its slot is not of the task's grid (another interval's)")
            return None
        if slot <= rec.slot:
            # An old run: a resend of one the row holds (harmless), or one it never saw
            # finish while later slots ran beside it (its update is lost: counted, as below),
            # unless no later slot was sent at all: they were skipped (module docstring).
            if _history_has(rec, slot):
                return None
            if not _only_skipped_since(rec, slot) or not run_id.endswith(base_tag(rec)):
                self._count_dropped(task, rec, run_id, node, slot, wall_ms,
                                    "later slots of the task ran meanwhile")
                return None
        # ``slot == rec.dispatched`` with no run in flight and no result for it: the row
        # learnt of the dispatch, not of the run (a member's OFFER carries ``dispatched`` but
        # never its run in flight, and a merge keeps the larger ``dispatched``): still judged.
        elif rec.running is not None or slot < rec.dispatched:
            # A run this row never saw finish, while a later slot was sent (the manager that
            # sent this one died before any member knew of it, and its successor went on
            # beside it): the later run did not start from this one's state, so its update is
            # lost. Counted, once per run (its node resends it until it is acknowledged).
            self._count_dropped(task, rec, run_id, node, slot, wall_ms,
                                "a later slot of the task was already sent")
            return None
        if not run_id.endswith(base_tag(rec)):
            self._count_dropped(task, rec, run_id, node, slot, wall_ms,
                                "from a state this manager does not hold")
            return None
        rec.dispatched = max(rec.dispatched, slot)
        # The branch it is recorded under: the claim that dispatched it, as its run id says
        # (see the module docstring); from an older build's id, the row's last branch.
        claim = dispatching_claim(run_id)
        branch = (list(claim) if claim is not None
                  else rec.history[-1][:2] if rec.history else list(self.claim))
        rec.running = {"run": run_id, "slot": slot, "node": node,
                       "started": wall_ms - duration_ms, "deadline": wall_ms,
                       "claim": branch}
        return self._finish(task, rec, outcome, state, duration_ms, "", wall_ms)

    @property
    def offered_waiting(self) -> dict[str, dict[str, tuple[int, str, float, float]]]:
        """Runs in flight members offered that wait for their row's run in flight to end
        (clerk._offerruns): task -> run id -> (slot, node, due ms, deadline ms)."""
        waiting: dict[str, dict[str, tuple[int, str, float, float]]] | None = getattr(
            self, "_offered_waiting", None)
        if waiting is None:
            waiting = {}
            self._offered_waiting = waiting
        return waiting

    def adopt_run(self, task: str, run_id: str, slot: int, node: str, due_ms: float,
                  deadline_ms: float, wall: float, as_sent: bool = False) -> bool:
        """A run in flight on ``node`` that it offered (clerk._offerruns): adopted as the
        row's run in flight, as one from the table is, unless the row has seen its slot
        finish; while the row has another run in flight (or this scheduler is not active
        yet) it waits, and is adopted once the row has none (:meth:`tick`). True if adopted
        now.

        ``as_sent``: ``due_ms`` and ``deadline_ms`` are as the manager that sent the run
        sent them (a member's OFFER: clerk._clockskew.AsSent), in that manager's time base,
        moved into ours by our offset to that manager (:meth:`sender_base_ms`); else already in
        ours (this node's own runs, a waiting run adopted now). A new manager 4 s ahead of
        the one it followed timed such a run out 3 s early (the grace covers 1 s) and sent
        the next slot beside it (tests/unit/test_skew2_offered_ahead.py)."""
        rec = self.records.get(task)
        if rec is None or task not in self.defs or slot <= rec.slot:
            return False
        claim = dispatching_claim(run_id)
        branch = (list(claim) if claim is not None
                  else rec.history[-1][:2] if rec.history else list(self.claim))
        shift = self.sender_base_ms(branch) if as_sent else 0.0
        if shift:
            due_ms = due_ms + shift if due_ms > 0 else due_ms
            deadline_ms = deadline_ms + shift if deadline_ms > 0 else deadline_ms
        if task in self._grid and slot > self._slot_at(
                self.defs[task], wall * 1000 + MAX_DISPATCH_LEAD_MS + FUTURE_SKEW_MS) + 1:
            return False  # no manager sent the future (as a merged row: clerk._adopt)
        run = rec.running
        if run is not None and run["run"] == run_id:
            return False  # the table's own (its node may differ: the table's is kept)
        wall_ms = wall * 1000
        # No honest run ends later than its timeout after its slot's due time or now (it was
        # sent by now): a later deadline (a forgery) would keep the task in flight, every
        # slot skipped, as long as it says. Not given: that latest.
        grid = self._grid.get(task)
        due = grid.due_ms(slot) + shift if grid is not None else 0.0
        latest = (due if due > wall_ms else wall_ms) + self.defs[task].timeout
        if deadline_ms <= 0 or deadline_ms > latest:
            deadline_ms = latest
        if run is not None or not self.active:
            self.offered_waiting.setdefault(task, {})[run_id] = (slot, node, due_ms,
                                                                 deadline_ms)
            return False
        rec.running = {"run": run_id, "slot": slot, "node": node,
                       "started": float(due_ms) if due_ms > 0 else wall_ms,
                       "deadline": max(float(deadline_ms), wall_ms) + TRANSIT_GRACE_MS,
                       "claim": branch, "offered": True}
        rec.dispatched = max(rec.dispatched, slot)
        self._inflight[task] = rec.running["deadline"]
        self.dirty.add(task)
        self.runs_dirty = True
        if task in self._grid and self.next_slot.get(task, 0) <= slot:
            self.next_slot[task] = slot + 1
            self._push(task)
        return True

    @property
    def early_results(self) -> dict[str, tuple[str, str, str, Any, float, str]]:
        """The results of offered runs that came while they waited (:meth:`keep_early`):
        run id -> (task, node, outcome, state, duration ms, error)."""
        early: dict[str, tuple[str, str, str, Any, float, str]] | None = getattr(
            self, "_early_results", None)
        if early is None:
            early = {}
            self._early_results = early
        return early

    def keeps_result(self, run_id: str) -> bool:
        """Is this run's result kept for when its offered run is adopted? Then the shell
        must not acknowledge it: until it is applied, its node's copy is the only other
        (a manager that dies meanwhile leaves it to the next one)."""
        early: dict[str, Any] | None = getattr(self, "_early_results", None)
        return early is not None and run_id in early

    def keep_early(self, task: str, run_id: str, node: str, outcome: str, state: Any,
                   duration_ms: float, error: str) -> bool:
        """A RESULT of an offered run that waits behind the row's run in flight (its node
        answered first): kept, and applied once the run is adopted (:meth:`_adopt_waiting`),
        as if it came then; True if kept. Before, it was dropped (the row had a run in
        flight: counted) and the run forgotten, and the next run started from the older
        state."""
        runs = self.offered_waiting.get(task)
        got = runs.get(run_id) if runs is not None else None
        if got is None or got[1] != node or outcome != "ok":
            return False
        self.early_results[run_id] = (task, node, outcome, state, duration_ms, error)
        return True

    def deactivate(self) -> None:
        """No longer the scheduler: the offered runs that wait are forgotten too (a later
        activation hears its members' runs again, in their OFFERs to it), and their kept
        results (not acknowledged: their nodes send them to the next manager)."""
        super().deactivate()
        self.offered_waiting.clear()
        self.early_results.clear()

    def _forget_offered(self, task: str, run_id: str) -> None:
        """A waiting offered run of ``task`` whose result came (its node ran it to the end:
        the result is judged as any run's the table does not show, dropped and counted while
        the row has a run in flight): not adopted later, which would keep the task in
        flight, every slot skipped, until the ended run's deadline."""
        runs = self.offered_waiting.get(task)
        if runs is not None and runs.pop(run_id, None) is not None and not runs:
            del self.offered_waiting[task]
        early = getattr(self, "_early_results", None)
        if early:  # (its node sends it again, unacknowledged: then judged as any result)
            early.pop(run_id, None)

    def _adopt_waiting(self, wall_ms: float) -> list[Finished]:
        """Adopt the offered runs whose row has no run in flight now (the newest slot
        first: the others wait again behind it; one whose slot the row has seen finish, or
        whose deadline passed, is dropped); the result kept of one adopted is applied now
        (:meth:`keep_early`). Returns what finished so."""
        waiting = self.offered_waiting
        early = self.early_results
        finished: list[Finished] = []
        for task in list(waiting):
            rec = self.records.get(task)
            if rec is not None and rec.running is not None:
                runs = waiting[task]
                for run_id in [r for r, v in runs.items() if v[3] + TRANSIT_GRACE_MS < wall_ms]:
                    del runs[run_id]
                    early.pop(run_id, None)
                if runs:
                    continue
            runs = waiting.pop(task)
            for run_id, (slot, node, due, deadline) in sorted(
                    runs.items(), key=lambda kv: -kv[1][0]):
                kept = early.pop(run_id, None)
                if deadline + TRANSIT_GRACE_MS >= wall_ms and self.adopt_run(
                        task, run_id, slot, node, due, deadline, wall_ms / 1000) \
                        and kept is not None:
                    fin = self.on_result(task, run_id, node, kept[2], kept[3], kept[4],
                                         kept[5], wall_ms / 1000)
                    if fin is not None:
                        finished.append(fin)
        return finished

    def _count_dropped(self, task: str, rec: TaskRecord, run_id: str, node: str, slot: int,
                       wall_ms: float, why: str) -> None:
        """A result dropped although the row never held its update: counted in ``conflicts``
        (README "What is guaranteed": never silently), once per run id (its node resends it
        until it is acknowledged; the last ``DROPPED_KEEP`` ids are remembered here)."""
        counted: dict[str, None] | None = getattr(self, "_dropped_runs", None)
        if counted is None:
            counted = {}
            self._dropped_runs = counted
        if run_id in counted:
            return
        counted[run_id] = None
        while len(counted) > DROPPED_KEEP:
            del counted[next(iter(counted))]
        rec.conflicts += 1
        rec.last_conflict = {"time": wall_ms, "dropped": 1, "kept": rec.describe(),
                             "lost": f"the result of run {run_id}", "from": node}
        self.conflicts_out.append(Conflict(task, 1, rec.describe(),
                                           f"the result of run {run_id} (slot {slot}, {why})"))
        self.dirty.add(task)
