"""The operator's commands on the scheduler: pause, resume, trigger, and one task's detail.

Mixed into :class:`clerk._schedule.Scheduler` (pure, like it); the facts these commands
write, the pause register and the run history, and their merge rules are in
:mod:`clerk._control`.

* **Pause** and **resume** set the task's register (the command, the node it came through,
  the manager's wall time); a resumed task continues on the grid with the first slot due
  after the resume, never with the slots it missed while paused.
* **Trigger** is one extra run now, with the current state, on a random eligible node: refused
  while a run of the task is in flight (never overlapped, never queued), allowed while paused
  or disabled; refused while no live member loads the task: "not loaded yet" (try again) when
  it is in this node's own set and its workers are starting (``loading_here``), "no longer
  loaded" otherwise (removed from every live member's set); refused while the task's
  ``init`` waits for the members' durable rows, or
  while a manager that took over from its replica or its data directory waits for the
  members' OFFERs. The task's ``nodes()`` is asked once per trigger.
* Every finished run is appended to the task's history with its lateness (dispatch minus due,
  0 for a run sent ahead of its slot; a triggered run has no due) and its start (its due time
  for a run sent ahead: :mod:`clerk._lead`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from clerk._control import entry, history_view, newer_pause
from clerk._schedstate import SchedulerState

if TYPE_CHECKING:
    from clerk._dispatch import Dispatch, Finished
    from clerk._record import TaskRecord
    from clerk._tasks import TaskDef

__all__ = ["OperatorControl"]

#: An unknown task's error lists the known ones up to this many characters (then the closest).
MAX_KNOWN_CHARS = 2000


class OperatorControl(SchedulerState):
    """The operator's side of :class:`clerk._schedule.Scheduler` (mixed into it): pause,
    resume, trigger, history and one task's detail. Pure, like the scheduler."""

    if TYPE_CHECKING:  # provided by the parts above this one (clerk._adopt, _running, _schedule)
        def status_row(self, name: str, wall: float) -> dict[str, Any]: ...
        def _init_held(self, members: Mapping[str, Iterable[str]], wall_ms: float) -> float: ...
        def _allowed(self, d: TaskDef,
                     members: Mapping[str, Iterable[str]]) -> tuple[list[str], str, str]: ...
        def _disk_held(self, wall_ms: float) -> bool: ...
        def _dispatch(self, d: TaskDef, rec: TaskRecord, slot: int, wall_ms: float,
                      members: Mapping[str, Iterable[str]], finished: list[Finished],
                      instant: bool = False, trigger: bool = False,
                      asked: tuple[list[str], str, str] | None = None) -> list[Dispatch]: ...

    @staticmethod
    def _pause_fields(rec: TaskRecord) -> dict[str, Any]:
        p = rec.pause
        return {"paused": rec.paused, "paused_by": p["node"] if rec.paused and p else None,
                "paused_at": p["at"] if rec.paused and p else None,
                "control": dict(p) if p else None}

    def unknown(self, name: str) -> str | None:
        """The error for a task name this manager does not know (listing the known ones)."""
        if name in self.defs:
            return None
        known = ", ".join(sorted(self.defs)) or "none"
        if len(known) > MAX_KNOWN_CHARS:
            # 10,000 names are over a message's longest string (the reply was never sent):
            # the closest names and how many there are.
            close = difflib.get_close_matches(name, self.defs, n=5, cutoff=0.5)
            known = (f"{len(self.defs)} tasks; closest: {', '.join(close) or 'none'}; "
                     "clerk status lists them")
        return f"unknown task {name!r} (known: {known})"

    def set_paused(self, name: str, paused: bool, node: str, wall: float) -> dict[str, Any]:
        """Apply a pause (or resume) command that came through ``node``; the new register."""
        self._merge_pause(name, {"paused": paused, "node": node, "at": wall}, wall, force=True)
        pause = self.records[name].pause
        assert pause is not None
        return dict(pause)

    def _merge_pause(self, name: str, other: dict[str, Any] | None, wall: float | None,
                     force: bool = False) -> bool:
        """Keep the newer register (or ``other`` with ``force``); True if it changed. A task
        that stops being paused continues on the grid with the first slot due from now."""
        rec = self.records[name]
        before = rec.paused
        new = other if force else newer_pause(rec.pause, other)
        if new == rec.pause:
            return False
        rec.pause = new
        self.dirty.add(name)
        if before and not rec.paused and self.active:
            d = self.defs[name]
            if name in self._grid and wall is not None:
                self.next_slot[name] = max(self.next_slot.get(name, 0),
                                           self._slot_at(d, wall * 1000) + 1)
            self._push(name)
        return True

    def trigger(self, name: str, wall: float,
                members: Mapping[str, Iterable[str]]) -> tuple[Dispatch | None, str]:
        """One extra run of ``name`` now, with the current state, on a random eligible node.

        Refused (``(None, reason)``) while a run of the task is in flight: a trigger never
        overlaps a run and is never queued. Allowed while paused or disabled (an operator's
        explicit one-off; the task stays paused). The run carries the slot of the grid period
        it runs in (``current_run().slot``), which that period's scheduled run may share."""
        d = self.defs[name]
        rec = self.records[name]
        if not self.active:
            return None, "this node is not scheduling (not the manager yet)"
        if rec.running is not None:
            run = rec.running
            return None, (f"task {name!r} has a run in flight (slot {run['slot']} on "
                          f"{run['node']}, run {run['run']}): not triggered, try again when "
                          "it ends")
        if name in self.gone:
            if name in self.loading_here:  # this node's own task, its workers starting
                return None, (f"task {name!r} is not loaded yet (no live member announces it: "
                              "this node's workers are starting): try again in a moment")
            return None, f"task {name!r} is no longer loaded by any live member"
        # ``nodes()`` is user code (slow, or a random subset): asked once per trigger, and
        # its answer is the one the dispatch below uses.
        asked = self._allowed(d, members)
        if not asked[0]:
            return None, f"task {name!r}: {asked[1]}"
        wall_ms = wall * 1000
        # (The dispatch's own condition: it would hold the run back, and skip it.)
        if (not rec.has_state or self._disk_held(wall_ms)) and self._init_held(members, wall_ms):
            if not rec.has_state:
                return None, (f"task {name!r} has no state yet and its init waits for the "
                              "members' durable states: try again in a moment")
            return None, (f"task {name!r}: this manager waits for the members' states (OFFER) "
                          "before it runs a task: try again in a moment")
        slot = (self._slot_at(d, wall_ms) if name in self._grid
                else max(rec.slot, rec.dispatched) + 1)
        slot = max(slot, rec.slot, rec.dispatched)
        self.dirty.add(name)
        out = self._dispatch(d, rec, slot, wall_ms, members, [], trigger=True, asked=asked)
        return out[0], ""

    def _run_start(self, name: str, run: Mapping[str, Any]) -> float:
        """When a run in flight starts (wall ms): when it was sent, or its slot's due time if
        it was sent ahead of it (clerk._lead)."""
        started = float(run["started"])
        if name not in self._grid or run.get("trigger"):
            return started
        return max(started, self.due_ms(name, int(run["slot"])))

    def _record_history(self, rec: TaskRecord, slot: int, due: float | None, start: float,
                        node: str, outcome: str, duration_ms: float, error: str,
                        trigger: bool) -> None:
        """Append a finished run to the task's history: ``due``, its slot's due time (None
        for a triggered run or a task off the grid), ``start``, when it started (its sending,
        or its due time if that is later: :meth:`_run_start`); ``duration_ms`` rounded to
        0.001 ms already (as :func:`clerk._control.make_entry` rounds it)."""
        rec.run_history.append(entry(
            slot, due, node, start, duration_ms, outcome, error if outcome != "ok" else "",
            rec.version, trigger), self.history_cap)

    def detail(self, name: str, wall: float) -> dict[str, Any]:
        """One task in detail: its status row, args, state size and history."""
        row = self.status_row(name, wall)  # (not every row of the status: 10,000 tasks ~1 s)
        rec = self.records[name]
        row["args"] = self.defs[name].args
        row["state_bytes"] = self.state_bytes(name)
        row["history"] = history_view(rec.run_history)
        return row
