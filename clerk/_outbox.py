"""A node's run results on their way to the manager, kept until the manager acknowledges them.

Rules (issue 9, item 7: a manager crash must not idle a task for its whole timeout):

* Every result this node produces is kept here. It is *unacknowledged* until the manager this
  node follows says it applied it (``RESULT_ACK``), or applies it locally (this node is the
  manager).
* When the node follows a new manager, it sends that manager every unacknowledged result at
  once: the old one may have died with the result in its inbox, and the new one adopted the
  run from its replica of the table and would otherwise wait out the run's deadline.
* Unacknowledged results are sent again every ``RESEND_INTERVAL`` to the current manager (a
  message lost to a reconnect), for at most ``KEEP_SECONDS``.
* Acknowledged results are still kept (``KEEP_SECONDS``, at most ``KEEP_MAX`` in all): a new
  manager whose replica lagged behind the old one's still shows such a run in flight and asks
  about it (``RUN_QUERY``); the answer is the result itself, so the state that run returned is
  not lost with the old manager.

Pure bookkeeping: no I/O, time injected (monotonic seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from clerk._messages import Result

__all__ = ["KEEP_MAX", "KEEP_SECONDS", "RESEND_INTERVAL", "Outbox"]

#: How long a result is kept (and, unacknowledged, resent). Far above any failover (tens of
#: milliseconds after a crash, about a second after a freeze) and small enough that the
#: memory is bounded by the results of a minute.
KEEP_SECONDS = 60.0
#: At most this many results are kept (the oldest go first): 1000 tasks finishing at once
#: on one node is beyond what a node's worker pool runs in a minute at the shortest intervals.
KEEP_MAX = 1024
#: An unacknowledged result goes again to the current manager this often (seconds). Ten
#: heartbeat intervals: an ACK normally comes back within a few milliseconds, so this only
#: fires when a message was lost (a connection reset while the manager stayed the same).
RESEND_INTERVAL = 1.0


@dataclass(slots=True)
class _Kept:
    result: Result
    kept_at: float
    sent_at: float
    acked: bool = False


class Outbox:
    """The results of one node's runs, by run id (oldest first)."""

    def __init__(self) -> None:
        self._rows: OrderedDict[str, _Kept] = OrderedDict()
        # Run ids not acknowledged yet, the least recently sent first (add and resend move
        # one to the end): the next resend is the first one's, O(1) for every loop turn.
        self._open: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, result: Result, now: float) -> None:
        """A run ended here; its result is being sent (or applied) now."""
        run_id, rows, open_ = result.run_id, self._rows, self._open
        if run_id in rows:  # (a second result for a run: it goes to the end, as new)
            del rows[run_id]
            open_.pop(run_id, None)
        rows[run_id] = _Kept(result, now, now)
        open_[run_id] = None
        while len(rows) > KEEP_MAX:  # (once full: the oldest, one per result)
            open_.pop(rows.popitem(last=False)[0], None)

    def ack(self, run_id: str) -> bool:
        """The manager applied it (or has no use for it). True if it was unacknowledged."""
        row = self._rows.get(run_id)
        if row is None or row.acked:
            return False
        row.acked = True
        self._open.pop(run_id, None)
        return True

    def find(self, run_id: str) -> Result | None:
        row = self._rows.get(run_id)
        return row.result if row is not None else None

    def unacked(self, now: float) -> list[Result]:
        """Every unacknowledged result (to send to a new manager); marks them sent now."""
        out = []
        for run_id in self._open:
            row = self._rows[run_id]
            row.sent_at = now
            out.append(row.result)
        return out

    def waiting(self) -> list[Result]:
        """The unacknowledged results (read only: none is marked sent)."""
        rows = self._rows
        return [rows[run_id].result for run_id in self._open]

    def due(self, now: float) -> list[Result]:
        """Unacknowledged results not sent for ``RESEND_INTERVAL``; marks them sent now.
        Forgets results older than ``KEEP_SECONDS``."""
        while self._rows:
            row = next(iter(self._rows.values()))
            if now - row.kept_at < KEEP_SECONDS:
                break
            self._open.pop(self._rows.popitem(last=False)[0], None)
        out = []
        rows, open_ = self._rows, self._open
        while open_:  # the least recently sent first: stop at one not due (one sent now)
            run_id = next(iter(open_))
            row = rows[run_id]
            if now - row.sent_at < RESEND_INTERVAL:
                break
            row.sent_at = now
            open_.move_to_end(run_id)
            out.append(row.result)
        return out

    def next_deadline(self) -> float:
        """When :meth:`due` has something to do (monotonic seconds), ``inf`` if never."""
        for run_id in self._open:  # the least recently sent
            return self._rows[run_id].sent_at + RESEND_INTERVAL
        return float("inf")

    def pending(self) -> int:
        """How many results wait for the manager's acknowledgement."""
        return len(self._open)
