"""The runs in flight a member's OFFER carries, and how a new manager adopts them.

The manager replicates a dispatch at most every ``REPLICATE_GAP_S`` on a busy cluster (a task
whose runs are short waits for the next round: :mod:`clerk._replication`, ``SHORT_RUN_MS``).
A manager that dies inside that gap leaves a successor whose table does not show the run: if
the run then outlasts the failover (a short task that this time runs long), the successor
sent the next slot beside it (the task overlapped itself) and dropped its result (counted in
``conflicts``). The node the run was sent to knows it, though: it is queued or running in
its executor. So a member's OFFER (sent to every new manager it starts following; a crash
takeover already dispatches nothing before every live member's OFFER is in:
``Scheduler.stale``) also carries the runs in flight on that member, and the new manager adopts
each as a run in flight from its table is adopted (:meth:`clerk._running.Running.adopt_run`):
it skips the slots that come while it runs (never overlaps it) and applies its result. Rules:

* **Where.** The last part of the OFFER (:func:`with_runs`), under ``RUNS_KEY``: a list of
  ``[task, slot, run id, term, due ms, deadline ms]`` (:class:`OfferedRun`), as they are when
  that part leaves. The OFFER's state stays a packed table: a manager of an older build reads
  ``packed`` and ``chunks`` only (``clerk._record.unpack_table``) and ignores the key, and a
  newer manager reads an older member's OFFER (no key) as one without runs: compatible both
  ways, without a mark in the incarnation. At most ``MAX_OFFERED_RUNS`` are read; a malformed
  entry is skipped (a forgery can only make a manager wait for a run until its deadline, as
  a forged table row could).
* **Adopted after the rows.** The part's rows are merged first: a run whose slot the row
  shows finished is ignored (its result already counts, or counted: a resend is harmless).
* **Two runs of one task known in flight** (the table's and an offered one, or two members'):
  the overlap rule holds for every one of them: the row keeps the one it holds, the other
  waits (``Running.offered_waiting``) and is adopted once the row has no run in flight, if its
  slot is still beyond what the row has seen finish; a new slot goes only once none is in
  flight. Its result, if it comes while it waits, is kept (unacknowledged) and applied at
  its adoption (``clerk._unseen.UnseenRuns.keep_early``). (The table's run normally ended
  already: its result, kept by its node, comes after that node's OFFER; the offered run
  started from the state that result makes.)
* **Its result** counts if it continues the row (the run id names the state it started from,
  ``clerk._running.base_tag``), and is dropped and counted as a conflict otherwise, as the
  result of a run the table never showed (``Running._unseen_run``).
* **Times.** An OFFER's runs carry the due time and deadline their manager sent
  (``clerk._clockskew.AsSent``), in that manager's time base: a new manager whose clock is
  ahead of it moves them by its offset, as the table's runs (``adopt_runs(as_sent=True)``,
  ``clerk._unseen.UnseenRuns.adopt_run``); before, one 4 s ahead timed such a run out early
  and sent the next slots beside it (tests/integration/test_skew2_offered_ahead.py).
* **The new manager's own runs in flight** are adopted the same way when it takes over (it
  sends itself no OFFER; they are in its own time base already).
* **A manager that claims again** (an ELECTION with a higher term) starts a new table log
  and reloads its scheduler from its last one, which lacks the rows changed within the
  gap: it forgot the run it had just sent. Its claim is a takeover from a replica (the
  last log), so it waits for the members' OFFERs too, and adopts the run from its node's
  (``tests/unit/test_sim_offer_runs.py``).
* **Quorum mode** does not use them yet (a member's OFFER is taken as an answer only
  there). Its write-ahead makes a second dispatch of one slot impossible (a successor
  continues after the majority's reservations), but not an overlap: the successor does not
  know a run in flight whose dispatch no round carried, and sends the next slots beside it
  (the simulator shows it with the manager crashed right after an EXECUTE left; adopting
  the offered runs there removed the overlap, but the long run's update was still lost,
  for a reason not found yet, and a quorum takeover does not wait for the OFFERs).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["MAX_OFFERED_RUNS", "RUNS_KEY", "OfferedRun", "adopt_runs", "offered_runs", "run_of",
           "with_runs"]

#: The key of an OFFER's last part that lists the member's runs in flight.
RUNS_KEY = "runs"
#: An OFFER lists at most this many runs, and a manager reads at most as many (a node runs a
#: few at a time; a queue of thousands is a node far behind, whose runs will be refused as
#: stale, or a forgery). ~150 bytes each: with a part's table text (``OFFER_CHARS`` at
#: most, ~110 Ki characters for 10,000 tasks) within the 1 MiB message limit.
MAX_OFFERED_RUNS = 1024


@dataclass(frozen=True, slots=True)
class OfferedRun:
    """A run queued or running on the member that offers it (from its EXECUTE)."""

    task: str
    slot: int
    run_id: str
    term: int
    due_ms: int
    deadline_ms: int

    def to_json(self) -> list[Any]:
        return [self.task, self.slot, self.run_id, self.term, self.due_ms, self.deadline_ms]


def run_of(msg: Any) -> OfferedRun:
    """The :class:`OfferedRun` of an EXECUTE (``clerk._messages.Execute``)."""
    return OfferedRun(msg.task, msg.slot, msg.run_id, msg.term, msg.due_ms, msg.deadline_ms)


def with_runs(part: Any, runs: Iterable[OfferedRun]) -> Any:
    """``part`` (an OFFER's last part: a packed table) carrying ``runs`` (a copy: the part
    may be kept to be sent again)."""
    if not isinstance(part, Mapping):
        return part
    return {**part, RUNS_KEY: [r.to_json() for r in itertools.islice(runs, MAX_OFFERED_RUNS)]}


def _int(v: Any) -> bool:
    return type(v) is int and -(2**62) < v < 2**62


def offered_runs(state: Any) -> list[OfferedRun]:
    """The runs an OFFER's part carries (none for an older member's, or a part other than
    the last); malformed entries are skipped."""
    if not isinstance(state, Mapping):
        return []
    raw = state.get(RUNS_KEY)
    if not isinstance(raw, list):
        return []
    out: list[OfferedRun] = []
    for item in raw[:MAX_OFFERED_RUNS]:
        if (isinstance(item, list) and len(item) == 6 and isinstance(item[0], str)
                and _int(item[1]) and item[1] >= 0 and isinstance(item[2], str)
                and 0 < len(item[2]) <= 512 and _int(item[3]) and _int(item[4])
                and _int(item[5])):
            out.append(OfferedRun(item[0], item[1], item[2], item[3], item[4], item[5]))
    return out


class _Adopts(Protocol):
    """What :func:`adopt_runs` needs of the scheduler (``clerk._running.Running``)."""

    def adopt_run(self, task: str, run_id: str, slot: int, node: str, due_ms: float,
                  deadline_ms: float, wall: float, as_sent: bool = False) -> bool: ...


def adopt_runs(sched: _Adopts, runs: Iterable[OfferedRun], node: str, wall: float,
               as_sent: bool = False) -> bool:
    """The runs in flight on ``node`` (its OFFER's, or this manager's own executor's) adopted
    by ``sched`` (see the module docstring); True if any was adopted now. ``as_sent``: their
    times are as their manager sent them (an OFFER's), not in this node's time base
    (``clerk._unseen.UnseenRuns.adopt_run``)."""
    adopted = False
    for r in runs:
        adopted |= sched.adopt_run(r.task, r.run_id, r.slot, node, r.due_ms, r.deadline_ms,
                                   wall, as_sent)
    return adopted
