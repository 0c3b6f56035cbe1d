"""How a scheduler takes on new task definitions (rolling deploys, see :mod:`clerk._deploy`).

:meth:`DefsUpdate.update_defs` adds a task some live member has loaded, applies changed
parameters from the next slot of the new grid, and stops a task no live member has any more
(``gone_since`` in status) until one loads it again. Records of tasks this node has no
definition for are kept (and replicated) so their state survives until a definition comes
back.

Split out of :mod:`clerk._adopt` (loading, merging, OFFERs, activation, leaving stay there) to
keep it under ~600 lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clerk._calendar import grid_for
from clerk._operator import OperatorControl
from clerk._record import TaskRecord
from clerk._schedstate import _grid_key
from clerk._tasks import TaskDef

__all__ = ["DefsUpdate"]


class DefsUpdate(OperatorControl):
    """New definitions the live members announce (see the module docstring)."""

    def update_defs(self, defs: Mapping[str, TaskDef], wall: float,
                    names: Iterable[str] | None = None) -> list[str]:
        """Adopt the definitions the live members announce (see the module docstring).
        Returns what changed, as sentences for the log. ``names``: only these tasks (those
        whose definition may have changed, clerk._deploy.Resolver), in this order; the
        others are as ``defs`` has them already. None: every task (O(tasks))."""
        notes: list[str] = []
        wall_ms = wall * 1000
        if names is None:
            adopt: Iterable[str] = defs
            stop: Iterable[str] = self.defs
        else:
            names = list(names)
            adopt = [n for n in names if n in defs]
            stop = [n for n in names if n in self.defs]
        for name in adopt:
            d = defs[name]
            old = self.defs.get(name)
            back = name in self.gone
            if old == d and not back:
                continue
            try:
                grid = grid_for(d)
            except ValueError as exc:  # a cron expression or zone this node cannot evaluate
                notes.append(f"task={name} announced with a schedule this node cannot use "
                             f"({exc}): keeping the previous definition")
                continue
            self.defs[name] = d
            self.dirty.add(name)
            if grid is None:
                self._grid.pop(name, None)
            else:
                self._grid[name] = grid
            rec = self.records.setdefault(name, TaskRecord())
            self.gone.pop(name, None)
            if old is None:
                notes.append(f"task={name} is loaded by a live member: scheduling it")
            elif back:
                notes.append(f"task={name} is loaded by a live member again: scheduling it")
            else:
                changes = ", ".join(f"{k} {v} -> {d.to_json()[k]}"
                                    for k, v in old.to_json().items() if d.to_json()[k] != v)
                notes.append(f"task={name} definition changed ({changes})")
            if not (self.active or self.activating):
                continue
            if grid is None:
                self.next_slot[name] = 0
            else:
                current = self._slot_at(d, wall_ms)
                nxt = 0
                if old is not None and _grid_key(old) != _grid_key(d):
                    # A new grid: its slot numbers are not the old one's. Carry on from the
                    # next slot of the new grid; the old ones count as done.
                    rec.slot = rec.dispatched = rec.decided = current
                    if rec.running is not None:
                        # A run of the old grid in flight ends at the new grid's current
                        # slot: its old number would put the row's slot far ahead of this
                        # grid (a takeover starts after it: tests/unit/
                        # test_review16_grid_change.py).
                        rec.running["slot"] = current
                else:
                    # The same grid: never back below a slot decided already (a crash
                    # takeover's failover window, a skip ahead of its due time).
                    nxt = self.next_slot.get(name, 0)
                self.next_slot[name] = max(nxt, current + 1, rec.slot + 1, rec.dispatched + 1,
                                           rec.decided + 1)
            fresh = rec.runs == 0 and rec.slot < 0 and rec.dispatched < 0 and rec.running is None
            # (Also a task that was "gone" before it ever ran: at a cluster's start no member
            # announces its tasks until its workers are ready; its instant run is still due.)
            if d.instant and d.enabled and fresh and (old is None or back) and not rec.paused:
                self.instant_pending.add(name)
            self._push(name)
        for name in stop:
            if name not in defs and name not in self.gone:
                self.gone[name] = wall
                self.dirty.add(name)
                self.instant_pending.discard(name)
                self.catch_up_pending.pop(name, None)
                notes.append(f"task={name} is no longer loaded by any live member: stopped")
        return notes
