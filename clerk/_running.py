"""The scheduler's runs: dispatch of due slots, expiry, and results.

**Ahead of the slot.** A slot is dispatched ``dispatch_lead_ms`` before it is due and the node
starts it at its due time; a tick that sends a slot also sends those due within the dispatch
window after it (:func:`clerk._lead.window_for`). The rules (the overlap rule with a lead,
deadlines, takeover) are in :mod:`clerk._lead`.

**One run at a time.** A slot that comes while the previous run is still in flight is *skipped*
and counted, never overlapped; slots missed while the loop stalled are counted skipped too. Each
run gets a run id and a deadline (``timeout`` + ``TRANSIT_GRACE_MS`` from its due time, or from
its dispatch when that is later); past it the manager records a timeout even if the node never
answers (a node that dies mid-run is a timeout, not a hang). A worker node's disconnect fails
its runs at once. A slot with no eligible node is counted ``skipped`` (``error`` when the task's
``nodes()`` raised) and done with: a successor neither reruns nor recounts it.

**Results.** A RESULT counts only from the node the run in flight was sent to. An ``init``
result starts a lineage under the manager's claim; each ok result adds one to its version
under the claim that *dispatched* the run (so a successor that adopted the run and the leaving
manager that drained it record the same update). The result of a run marked ``rebased`` (its
starting state was replaced by a merge while it ran) is dropped and counted as a conflict. A
state that would take the states of all tasks over ``STATES_BUDGET_BYTES`` is an error (the
previous state is kept); error texts keep their last ``ERROR_KEEP_CHARS``.

**A result for a run the table never showed** (a takeover whose replica missed the dispatch:
the old manager died before its heartbeat carried it) is applied only if it continues the
row exactly: a run id ends with the state the run started from (:func:`base_tag`: the
version, and a checksum of the lineage's origin and last branch; ``~init`` for an ``init``),
and such a result counts, as ok, if that is the row's state now, no run is in flight, and its
slot is after every slot the row has seen finish and not before the last it has seen sent (a
row may know of a dispatch but not of its run: a member's OFFER carries ``dispatched`` and
never a run in flight). Otherwise it is of no use (its state descends
from a state this manager does not hold, or the row moved on) and dropped; when the slot is
newer than the row's it is counted as a conflict, never silently. Such an update is recorded
in the branch of the claim that dispatched the run, which the run id names
(:func:`dispatching_claim`): so the new manager's copy of the update is exactly the one the
old manager made and replicated to some members, and when their OFFERs or the old manager's
data directory meet it nothing differs. (Recorded under the new manager's own claim, as
before, the two copies were two branches at one version: the merge counted a conflict, and a
member's next RESULT, started from the old manager's copy, was then dropped as from a state
the new manager did not hold: a lost update, found by ``tests/unit/test_sim_takeover.py``.)
A run id from an older build names no claim: its update goes in the row's last branch, which
is the dispatching one unless that run was the first its manager sent of the task.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import Any

from clerk._dispatch import Dispatch, Finished
from clerk._lead import window_for
from clerk._lineage import note_update
from clerk._record import Conflict, TaskRecord
from clerk._runids import base_tag, dispatching_claim
from clerk._schedstate import _packed_size
from clerk._tasks import TaskDef
from clerk._unseen import TRANSIT_GRACE_MS, UnseenRuns

__all__ = ["ERROR_KEEP_CHARS", "OUTCOMES", "STATES_BUDGET_BYTES", "TRANSIT_GRACE_MS", "Running",
           "base_tag", "dispatching_claim"]

OUTCOMES = ("ok", "error", "timeout")
_RESULT_OUTCOMES = (*OUTCOMES, "refused")  # what a RESULT may say

#: All tasks' states together (as JSON text) may take this much. A result whose state would
#: go over is an error naming the task (the state is kept). It was set when the whole table
#: travelled in one 1 MiB heartbeat; replication now sends changed rows in chunks
#: (clerk._replica), so what it still bounds is the table every takeover parses, every joiner
#: receives and every data directory writes (8 MiB at most). Kept as it was: raising it is a
#: change of a user-facing limit, not of replication.
STATES_BUDGET_BYTES = 512 * 1024
#: The error text kept in the table (and shown by status): its tail, where the exception is.
#: The whole remote traceback is in the manager's log.
ERROR_KEEP_CHARS = 1000




class Running(UnseenRuns):
    """Tick, dispatch, expiry and results (see the module docstring)."""

    def tick(
        self, wall: float, members: Mapping[str, Iterable[str]]
    ) -> tuple[list[Dispatch], list[Finished]]:
        """Expire overdue runs and dispatch due slots. ``members``: live node -> its tasks."""
        if not self.active:
            return [], []
        wall_ms = wall * 1000
        finished = self._expire(wall_ms)
        if self.offered_waiting:  # members' runs in flight (clerk._offerruns)
            finished += self._adopt_waiting(wall_ms)
        dispatches: list[Dispatch] = []
        if self.draining:
            return dispatches, finished
        # What is due, in the order it is decided (the random choice of a node follows it):
        # pending instant runs and catch-ups in the order of the definitions, the deferred
        # slots in the order they were deferred, then the grid's by due time. Each part costs
        # O(what is due), never a walk over every task.
        pending = self.instant_pending
        if self.catch_up_pending:
            pending = pending | self.catch_up_pending.keys()
        due = self.in_defs_order(pending) if pending else []
        seen = set(due)
        if self._deferred:
            for name in [n for n, at in self._deferred.items() if at <= wall_ms]:
                del self._deferred[name]  # its due time: decide now (see _tick_task)
                if name not in seen:
                    seen.add(name)
                    due.append(name)
        ahead = wall_ms + self.dispatch_lead_ms  # slots due by then go now (clerk._lead)
        heap = self._heap
        # (``_fresh`` inlined: an entry is fresh while its task has a grid and the entry
        # names the due time of the task's next slot.)
        grids, next_slot, pop = self._grid, self.next_slot, heapq.heappop
        while heap:
            when, name = heap[0]
            grid = grids.get(name)
            if grid is not None and when == grid.due_ms(next_slot[name]):
                break
            pop(heap)
        if heap and heap[0][0] <= ahead:
            # A slot goes now: so do those due within the window after it (clerk._lead).
            ahead += self.dispatch_window_ms
        horizon = ahead
        while heap and heap[0][0] <= ahead:
            when, name = pop(heap)
            grid = grids.get(name)
            if (grid is not None and when == grid.due_ms(next_slot[name])
                    and name not in seen):
                seen.add(name)
                due.append(name)
        for name in due:
            got = self._tick_task(name, wall_ms, members, finished, horizon)
            if got:
                dispatches += got
            self._push(name)
        return dispatches, finished

    @property
    def dispatch_window_ms(self) -> float:
        """How far past the lead a tick that dispatches also sends slots (clerk._lead)."""
        return window_for(self.dispatch_lead_ms)

    def _tick_task(self, name: str, wall_ms: float, members: Mapping[str, Iterable[str]],
                   finished: list[Finished], horizon: float | None = None) -> list[Dispatch]:
        """Decide ``name``'s pending run or grid slot; ``horizon`` (wall ms): a slot due by
        then goes now (default: the lead's)."""
        d = self.defs[name]
        rec = self.records[name]
        dispatches: list[Dispatch] = []
        grid = self._grid.get(name)
        due_slot = -1  # (the grid's slot to decide, when it is the grid's turn)
        if (grid is not None and name not in self.instant_pending
                and name not in self.catch_up_pending and d.enabled
                and name not in self.gone and not rec.paused):
            # A grid slot not due yet, or deferred to its due time (below): the row stays as
            # it was, so it is not marked changed (replication would encode it again for
            # nothing: ~0.1 encodings per run at 1,600 runs/s).
            # The latest slot due by the horizon, the lead (and this tick's window) ahead
            # (clerk._lead): at most the next one.
            due_slot = grid.slot_at(wall_ms + self.dispatch_lead_ms if horizon is None
                                    else horizon)
            if due_slot < self.next_slot[name]:
                return dispatches
            if rec.running is not None:
                slot_due = grid.due_ms(due_slot)
                if slot_due > wall_ms:
                    # Early, and the previous run is still in flight: decide at the due
                    # time (skipped if it is still in flight then), as without a lead.
                    self._deferred[name] = slot_due
                    return dispatches
        self.dirty.add(name)
        if not d.enabled or name in self.gone:
            return dispatches
        if rec.paused:
            self.instant_pending.discard(name)
            return dispatches
        if name in self.instant_pending:
            if not any(d.name in tasks for tasks in members.values()):
                self._instant_waiting.setdefault(name, -1)
                if name in self._grid:  # the grid goes on meanwhile (nobody can run it)
                    current = self._slot_at(d, wall_ms)
                    if current >= self.next_slot[name]:
                        rec.counts["skipped"] += self._grid[name].count(self.next_slot[name],
                                                                        current + 1)
                        self.next_slot[name] = current + 1
                        rec.decided = max(rec.decided, current)
                        self._instant_waiting[name] = current
                return dispatches
            if not rec.has_state or self._disk_held(wall_ms):
                held = self._init_held(members, wall_ms)
                if held:
                    self._init_wait_ms = max(self._init_wait_ms, held)
                    return dispatches  # stays pending: init waits for the members' rows
            self.instant_pending.discard(name)
            slot = self._slot_at(d, wall_ms) if name in self._grid else 0
            counted = self._instant_waiting.pop(name, -1)
            if counted >= 0 and counted == slot:
                rec.counts["skipped"] -= 1  # counted while it waited; it runs after all
                self.dirty.add(name)  # (a change besides the dispatch: no splice, see there)
            self.next_slot[name] = slot + 1
            return self._dispatch(d, rec, slot, wall_ms, members, finished, instant=True)
        if name in self.catch_up_pending:
            slot = self.catch_up_pending.pop(name)
            if rec.running is not None:
                rec.counts["skipped"] += 1  # an adopted run is still going: never overlap
                return dispatches
            if slot <= max(rec.slot, rec.dispatched):
                # Decided at the activation, before the members' OFFERs and results came:
                # since then the row learnt that slot (or a later one) was sent, by a run a
                # member offered or whose result it resent (clerk._unseen). Never twice.
                rec.counts["skipped"] += 1
                return dispatches
            # A cron catch-up carries its fire time as due (the end of the missed window); an
            # interval one is due when sent (a node drops a run more than an interval late).
            return self._dispatch(d, rec, slot, wall_ms, members, finished,
                                  instant=d.cron is None)
        if grid is not None:
            # (Only with the conditions checked above: its slot is ``due_slot``, due now.)
            current = due_slot
            nxt = self.next_slot[name]
            # Slots before ``current`` were missed (the loop stalled): count them skipped.
            if current != nxt:
                missed = grid.count(nxt, current)
                if missed:
                    rec.counts["skipped"] += missed
                    self.dirty.add(name)  # (a change besides the dispatch: no splice)
            self.next_slot[name] = current + 1
            if rec.running is not None:
                rec.counts["skipped"] += 1  # in flight: never overlap
                rec.decided = max(rec.decided, current)  # (a successor starts after it)
                # Since the mark above only ``decided`` and ``counts`` changed (with missed
                # slots: a second mark, so no splice): the table log may splice them.
                self.skip_marks[name] = self.dirty.marks.get(name, 0)
                return dispatches
            return self._dispatch(d, rec, current, wall_ms, members, finished)
        return dispatches

    def _allowed(self, d: TaskDef,
                 members: Mapping[str, Iterable[str]]) -> tuple[list[str], str, str]:
        """The nodes that may run ``d`` now, sorted (the order the random choice picks
        from); if none, why, and how that slot counts (``skipped``, or ``error`` when
        ``nodes()`` raised). A task whose filter keeps the members as they are
        (``filter_keeps``) gets them without a call and its answer's checks."""
        name = d.name
        eligible = [n for n, tasks in members.items() if name in tasks]
        eligible.sort()
        keeps = self.filter_keeps
        if keeps is not None and keeps(d):
            allowed = eligible  # (a mapping's keys: no duplicates, as the check below makes)
        else:
            try:
                allowed = sorted([n for n in self.nodes_filter(d, list(eligible))
                                  if n in eligible])
            except Exception as exc:  # user code in nodes(): an error of this run
                return [], f"nodes() raised {type(exc).__name__}: {exc}", "error"
        return (allowed, "no eligible node (none alive has the task, or nodes() returned none)",
                "skipped")

    def _dispatch(self, d: TaskDef, rec: TaskRecord, slot: int, wall_ms: float,
                  members: Mapping[str, Iterable[str]], finished: list[Finished],
                  instant: bool = False, trigger: bool = False,
                  asked: tuple[list[str], str, str] | None = None) -> list[Dispatch]:
        # (The row is marked changed by the caller: ``_tick_task`` first thing, a trigger
        # before it calls this.) ``asked``: what ``_allowed`` answered for this run already
        # (a trigger asks before it decides; ``nodes()`` is user code, asked once per run).
        allowed, error, outcome = self._allowed(d, members) if asked is None else asked
        if slot > rec.decided:
            rec.decided = slot  # run, sent or counted here: a successor starts after it
        waits = False  # (skipped because the dispatch waits for the members' OFFERs)
        if allowed and (not rec.has_state or self._disk_held(wall_ms)) and self._init_held(
                members, wall_ms):
            allowed, waits = [], True
            error = ("init waits for the members' durable states (OFFER)" if not rec.has_state
                     else "this manager took over from its replica: "
                          "waits for the members' states (OFFER)" if self.stale
                     else "this manager's table is its data directory's: waits for the "
                          "members' durable states (OFFER)")
        if not allowed:
            rec.counts[outcome] += 1
            # Done with: a successor must neither rerun nor count it again. Except a slot
            # skipped because this manager waits for the members' OFFERs: an OFFER may still
            # list a run of an earlier slot in flight (a member slower than an interval),
            # adopted only while its slot is beyond ``rec.slot`` (clerk._unseen); the skip is
            # no run, so ``rec.slot`` (the last slot that ran) stays. ``rec.decided`` (above)
            # moves: a successor neither decides nor counts that slot again
            # (tests/unit/test_offer_wait_skips.py, tests/unit/test_skipped_once.py).
            if not waits:
                rec.slot = max(rec.slot, slot)
            rec.last = {"node": None, "slot": slot, "duration_ms": 0.0, "outcome": outcome,
                        "error": error, "finished": wall_ms}
            finished.append(Finished(d.name, "", slot, "", outcome, 0.0, error))
            return []
        node = self.rng.choice(allowed)  # (sorted by ``_allowed``)
        seq = self._run_seq = self._run_seq + 1
        term, manager = self.claim
        run_id = f"{self._run_prefix}-{seq}/{term}/{manager}{self._base_tag(d.name, rec)}"
        # A run started by a trigger (instant) is due when sent; a grid run at its slot's time,
        # which may be up to the lead ahead (clerk._lead). Its clock starts at the later of
        # the two: the timeout is the run's own, not eaten by the lead.
        grid = None if instant or trigger else self._grid.get(d.name)
        due = wall_ms if grid is None else grid.due_ms(slot)
        start = wall_ms if wall_ms >= due else due  # (max(wall_ms, due))
        timeout = d.timeout
        deadline = start + timeout + TRANSIT_GRACE_MS
        rec.dispatched = slot
        running = rec.running = {"run": run_id, "slot": slot, "node": node, "started": wall_ms,
                                 "deadline": deadline, "claim": [term, manager]}
        if trigger:
            running["trigger"] = True
        # Since the caller's mark (``dirty.add``, its one mark for this dispatch) the row
        # changed in ``dispatched``, ``decided`` and ``running`` alone: the table log may
        # splice them into the row's text of before that mark (clerk._replicalog.RowEncoder).
        self.dispatch_marks[d.name] = self.dirty.marks.get(d.name, 0)
        self._inflight[d.name] = deadline
        init = not rec.has_state
        return [Dispatch(d.name, run_id, slot, node, d.args if init else rec.state, init,
                         timeout, int(due), int(start + timeout))]

    def _base_tag(self, name: str, rec: TaskRecord) -> str:
        """:func:`base_tag` at a dispatch, its checksum remembered per task with the lineage
        objects it was made from (the row's origin dict and last branch list): neither is
        ever changed in place (a new lineage, a new branch, a merge's row: new objects), so
        while the row holds the same two, the checksum is the same, without checking the
        lineage's shape again (~1.5 us of each dispatch)."""
        if not rec.has_state:
            return "~init"
        hist = rec.history
        branch = hist[-1] if hist else None
        got = self._tags.get(name)
        if got is not None and got[0] is rec.origin and got[1] is branch:
            return f"~{rec.version}.{got[2]}"
        tag = base_tag(rec)
        self._tags[name] = (rec.origin, branch, tag[tag.rindex(".") + 1:])
        return tag

    def _expire(self, wall_ms: float) -> list[Finished]:
        out: list[Finished] = []
        for name in self._inflight.due(wall_ms):  # O(what expires), not O(runs in flight)
            rec = self.records[name]
            run = rec.running
            if run is not None:
                out.append(self._finish(name, rec, "timeout", None,
                                        max(0.0, wall_ms - self._run_start(name, run)),
                                        "no result from the node before the deadline", wall_ms))
            else:
                self._inflight.keep(name)  # as the whole-dict scan did: it stays due
        return out

    def fail_node(self, node: str, wall: float) -> list[Finished]:
        """The node died (disconnect or dropped): its runs end as timeouts now."""
        wall_ms = wall * 1000
        waiting = getattr(self, "_offered_waiting", None)
        if waiting:  # its offered runs that wait are gone with it (clerk._offerruns)
            for task, runs in list(waiting.items()):
                for run_id in [r for r, v in runs.items() if v[1] == node]:
                    self._forget_offered(task, run_id)
        return [
            self._finish(name, rec, "timeout", None,
                         max(0.0, wall_ms - self._run_start(name, rec.running)),
                         f"node {node} was lost during the run", wall_ms)
            for name, rec in self.records.items()
            if rec.running is not None and rec.running["node"] == node
        ]

    def bound_run(self, task: str, wall_ms: float) -> None:
        """The run of ``task`` in flight times out at ``wall_ms`` if its deadline is later
        (a run adopted on a node this manager does not list: clerk._adoptedruns). The row
        keeps its deadline: a later manager bounds it again from its own takeover."""
        deadline = self._inflight.get(task)
        if deadline is not None and wall_ms < deadline:
            self._inflight[task] = wall_ms
            rec = self.records.get(task)
            if rec is not None and rec.running is not None:
                # Kept for a claim again (activate_step rebuilds the deadlines from the rows:
                # the bound then moved 12 s on at every claim again, tests/unit/
                # test_review7_bound.py).
                self._bounds[task] = (str(rec.running["run"]), wall_ms)

    def expects(self, task: str, run_id: str, node: str) -> bool:
        """Is this the run of ``task`` in flight, sent to ``node``?"""
        rec = self.records.get(task)
        run = rec.running if rec is not None else None
        return run is not None and run["run"] == run_id and run["node"] == node

    def on_result(self, task: str, run_id: str, node: str, outcome: str, state: Any,
                  duration_ms: float, error: str, wall: float,
                  slot: int | None = None) -> Finished | None:
        """Apply a node's RESULT; None if it is not for a run in flight (late or unknown) or
        does not come from the node the run was sent to, or while an activation is under
        way (its table is half done: the node, not acknowledged, sends it again). ``slot``:
        the RESULT's, for a run the table never showed (see the module docstring)."""
        if self._activation is not None:  # (self.activating)
            return None
        rec = self.records.get(task)  # (self.expects, inlined: once per result)
        run = rec.running if rec is not None else None
        if run is None or run["run"] != run_id or run["node"] != node:
            waiting = getattr(self, "_offered_waiting", None)
            if waiting and task in waiting:
                if rec is not None and rec.running is not None and self.keep_early(
                        task, run_id, node, outcome, state, duration_ms, error):
                    return None  # applied once adopted (clerk._unseen: not acknowledged)
                self._forget_offered(task, run_id)
            if slot is None:
                return None
            return self._unseen_run(task, run_id, node, slot, outcome, state, duration_ms,
                                    wall)
        assert rec is not None
        if (run.get("offered") and "~" in run_id
                and not run_id.endswith(base_tag(rec))):
            run["rebased"] = True  # offered, from a state the row does not hold (dropped)
        if outcome not in _RESULT_OUTCOMES:
            outcome, error = "error", f"unknown outcome {outcome!r}: {error}"
        return self._finish(task, rec, outcome, state, duration_ms, error, wall * 1000)

    def _finish(self, name: str, rec: TaskRecord, outcome: str, state: Any,
                duration_ms: float, error: str, wall_ms: float) -> Finished:
        run = rec.running
        assert run is not None
        self.dirty.add(name)
        self.runs_dirty = True
        rec.running = None
        self._inflight.pop(name, None)
        slot = int(run["slot"])
        if slot > rec.slot:
            rec.slot = slot
        rec.runs += 1
        if outcome == "ok":
            size = _packed_size(state)
            others = self._states_total - self._state_bytes.get(name, 0)
            if others + size > STATES_BUDGET_BYTES:
                outcome = "error"
                error = (f"task {name!r} returned a state of {size} bytes (as replicated); with "
                         f"the other tasks' states ({others} bytes) that is over the "
                         f"{STATES_BUDGET_BYTES}-byte budget of the replicated table: the "
                         "previous state is kept")
            elif run.get("rebased"):
                # The state this run started from was replaced by a better one (a merge) while
                # it ran: its result descends from the losing state and is dropped, counted.
                rec.conflicts += 1
                rec.last_conflict = {"time": wall_ms, "dropped": 1, "kept": rec.describe(),
                                     "lost": f"the result of run {run['run']}",
                                     "from": str(run["node"])}
                self.conflicts_out.append(Conflict(name, 1, rec.describe(),
                                                   f"the result of run {run['run']}"))
            else:
                if not rec.has_state:  # an init: a new lineage
                    rec.origin = {"term": self.claim[0], "node": self.claim[1],
                                  "time": int(wall_ms)}
                    rec.version, rec.history = 0, []
                # The branch of the claim that dispatched the run: a successor that adopted it
                # (hand-over) and the leaving manager that drained it record the same update.
                claim = run.get("claim")
                if (isinstance(claim, list) and len(claim) == 2 and type(claim[0]) is int
                        and isinstance(claim[1], str)):
                    note_update(rec, claim[0], claim[1])
                else:
                    note_update(rec, *self.claim)
                rec.version += 1
                rec.state = state
                rec.has_state = True
                self._state_bytes[name] = size
                self._states_total = others + size
        counts = rec.counts
        counts[outcome] = counts.get(outcome, 0) + 1
        node = str(run["node"])
        if outcome == "ok" or outcome == "error":
            runs = self.node_runs
            runs[node] = runs.get(node, 0) + 1
        # The slot's due time and the run's start, once for the round trip, the history and
        # the lateness (as ``_run_start``: the later of its sending and its due time, which a
        # triggered run or a task off the grid does not have).
        started = float(run["started"])
        grid = self._grid.get(name)
        trigger = bool(run.get("trigger"))
        due = None if grid is None or trigger else grid.due_ms(slot)
        start = started if due is None or started >= due else due
        # From its start: the lead a run waited at its node is not dispatch overhead.
        round_trip = wall_ms - start if wall_ms > start else 0.0
        kept = error if len(error) <= ERROR_KEEP_CHARS else "..." + error[-ERROR_KEEP_CHARS:]
        duration = round(duration_ms, 3)  # (once: the last run's and the history entry's)
        rec.last = {"node": node, "slot": run["slot"], "duration_ms": duration,
                    "outcome": outcome, "error": kept, "finished": wall_ms,
                    "round_trip_ms": round(round_trip, 3)}
        self._record_history(rec, slot, due, start, node, outcome, duration, error, trigger)
        return Finished(name, str(run["run"]), slot, node, outcome, duration_ms,
                        error, round_trip, None if due is None
                        else started - due if started > due else 0.0)
