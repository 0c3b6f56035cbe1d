"""A manager asked to leave while its dispatches wait for the members' OFFERs waits for them.

A manager that took over from its replica (``stale``), or whose table is only its data
directory's (``from_disk``), holds every dispatch of a state until the live members have
offered their rows, or until the wait's bound (:mod:`clerk._adopt`): an OFFER lists the runs
in flight on its member, and the table may not (a manager that claimed again reloaded its
table and forgot the run it had just sent). Leaving then (a graceful HANDOVER) handed over a
table without those runs, and the successor, which continues a hand-over at once without
waiting for OFFERs, sent such a run's slot a second time (simulator seed 211,
``tests/unit/test_sim_hold_property.py``). So the stop request waits, as it waits for a
take-over to finish (``TaskRunner.may_leave``; the simulator's ``leave_at``): until the
OFFERs are in (their runs adopted, so the hand-over carries them), or until the bound a
dispatch would wait for, whichever comes first. Past the bound the manager would dispatch
anyway; leaving then hands over what a dispatch would have gone on from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clerk._schedule import Scheduler

__all__ = ["offers_awaited_until"]


def offers_awaited_until(sched: Scheduler, members: Mapping[str, Iterable[str]],
                         wall_ms: float) -> float:
    """Until when (wall ms) ``sched``'s dispatches still wait for the OFFERs of ``members``
    (the live members and their tasks, as ``Scheduler.tick`` takes them); 0 if they do not
    (not active, nothing to wait for, every member offered, or the bound passed)."""
    if not sched.active or not sched._disk_held(wall_ms):
        return 0.0
    until = sched._init_held(members, wall_ms)
    return min(until, sched._from_disk_until) if until else 0.0
