"""Quorum mode in the task layer: the manager's write-ahead on a real node.

The rules are :mod:`clerk._writeahead`'s (and the proof :mod:`clerk._quorum`'s); this module
carries them out with the node's scheduler, core and sockets. Without voters none of it runs
(``self.wa`` stays None and every caller takes the default path).

* **Activation** (:meth:`QuorumWriting._quorum_activate`): the records phase 1 learned are
  merged into the table (lineage rules), and every task continues after the highest slot its
  majority showed reserved.
* **Dispatch** (:meth:`QuorumWriting._quorum_dispatch`): each tick writes the reservations of
  the slots due within the lead, in one write; an EXECUTE whose reservation is not committed
  yet is held and leaves on the ``WriteCommitted`` that commits it (if its run is still the
  one in flight and not past its deadline).
* **Results** (:meth:`QuorumWriting._quorum_result`): the record a result produced is written
  (the results of one turn of the loop, and the reservations of the same tick, in one write:
  :meth:`QuorumWriting._quorum_flush`, at the latest from ``persist`` at the end of the turn);
  only once it is committed is the RESULT acknowledged (RESULT_ACK, or the local outbox
  entry), the run logged and the table replicated. Until then a local result stays in the
  outbox (``on_result`` answers "not applied" for it) and a resent remote one is not
  acknowledged either, so a manager that loses its ballot leaves it unacknowledged and it
  goes to the next manager.
* **Losing the ballot** (any ``ManagerChanged``): everything held is dropped; the runs of the
  dispatches held never left, and this node's next ballot drops them from its table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from clerk._dispatch import Dispatch, Finished
from clerk._gcpolicy import current as gc_policy
from clerk._messages import ResultAck
from clerk._replication import Replication
from clerk._writeahead import WriteAhead

__all__ = ["QuorumWriting"]

log = logging.getLogger("clerk.tasks")


class QuorumWriting(Replication):
    """The manager's write-ahead in the task layer (see the module docstring)."""

    wa: WriteAhead | None
    _uncommitted: set[str]  # run ids of results whose record is not committed yet
    _rows_out: dict[str, dict[str, Any]]  # rows of results not written yet (this turn's)
    _results_out: list[tuple[Finished, str, str | None, str]]  # their results
    #: (task, run id) of dispatches a lost ballot of ours held (never sent), until our next
    #: activation drops them from its table (clerk._writeahead, "Runs that never left").
    _never_left: set[tuple[str, str]] = set()  # (replaced, never mutated in place)

    if TYPE_CHECKING:  # provided by clerk._routing and clerk._runner
        def _dispatch(self, d: Dispatch, now: float) -> None: ...
        def next_deadline(self) -> float: ...
        def _log_finished(self, fin: Finished) -> None: ...

    def _quorum_activate(self, wall: float) -> None:
        """Before the scheduler activates: take phase 1's rows (module docstring)."""
        core = self.agent.core
        self.wa = None
        self._uncommitted = set()
        self._rows_out, self._results_out = {}, []
        proposer = core.proposer
        if proposer is None:
            return
        table = core.quorum_table
        records = {t: row.record for t, row in table.items() if isinstance(row.record, dict)}
        if records:
            self.scheduler.merge({"tasks": records}, wall, source="voters",
                                 committed=True)  # (whatever clocks said: clerk._adopt)
            self._log_conflicts()
        self.wa = WriteAhead({t: row.reserved for t, row in table.items()}, proposer.reserved)
        never = self.wa.continue_after(self.scheduler.records, self._never_left)
        self._never_left = set()
        learned = sum(1 for row in table.values() if row.reserved is not None)
        log.info("quorum: %d task row(s) from a majority of voters; continuing after the "
                 "slots they reserved for %d task(s)", len(records), learned)
        if never:
            log.info("quorum: %d run(s) in flight in the table never left (their slots were "
                     "never reserved on a majority), dropped: %s", len(never),
                     ", ".join(never[:10]))

    def _quorum_drop(self) -> None:
        """Our ballot is gone: what waited for its commits dies with it. The runs it held
        never left: our next ballot drops them from the table it continues from."""
        wa = getattr(self, "wa", None)
        if wa is not None:
            self._never_left = self._never_left | wa.never_left()
            self.wa = None
            self._uncommitted = set()
            self._rows_out, self._results_out = {}, []

    def _quorum_write(self, rows: dict[str, Any], now: float, wall: float) -> list[int]:
        wa = self.wa
        assert wa is not None
        seqs, effects = self.agent.core.quorum_write(rows, now)
        # Before the effects: applying them may end this ballot (this node's own voter answers
        # at once and may have promised a newer one: the manager steps down, _quorum_drop, and
        # ``self.wa`` is dropped; reading it after the effects crashed the agent) or commit a
        # write at once (its latency needs its start).
        wa.wrote(seqs, wall * 1000)
        self.agent.apply(effects, now)
        return seqs

    def _quorum_dispatch(self, dispatches: list[Dispatch], now: float, wall: float) -> None:
        wa = self.wa
        assert wa is not None
        rows = wa.ahead(self.scheduler, wall * 1000)
        for d in dispatches:
            if wa.gate(d.task, d.slot):
                wa.at_once += 1
                self._dispatch(d, now)
            else:
                rows.update(wa.reserve(d.task, d.slot))
                wa.hold_dispatch(d, d.task, d.slot)
        self._quorum_flush(rows, now, wall)

    def _quorum_flush(self, rows: dict[str, Any], now: float, wall: float) -> None:
        """Write ``rows`` (reservations) with the results' rows waiting, as one write."""
        wa = self.wa
        if wa is None:
            return
        for task, row in self._rows_out.items():
            if task in rows:  # a reservation and a record of one task: one row
                rows[task] = {**row, "reserved": rows[task]["reserved"]}
            else:
                rows[task] = row
        results, self._rows_out, self._results_out = self._results_out, {}, []
        if not rows:
            return
        seqs = self._quorum_write(rows, now, wall)
        for item in results:
            wa.hold_result(item, item[1], seqs)

    def persist(self, now: float, final: bool = False) -> None:
        """(Every turn of the loop.) Quorum mode: write the results of this turn first. Then
        the process's garbage collector's turn (:mod:`clerk._gcpolicy`: a reclaim, when due,
        waits for a turn with nothing due soon)."""
        if getattr(self, "wa", None) is not None and self._rows_out and not final:
            self._quorum_flush({}, now, self.agent.clock.wall())
        super().persist(now, final)
        policy = gc_policy()
        if policy is not None and not final:
            policy.turn(now, lambda: self.next_deadline() - now)

    def _quorum_result(self, fin: Finished, task: str, reply_to: str | None, run_id: str,
                       now: float, wall: float) -> None:
        """Write the record ``fin`` produced; acknowledge once committed (``reply_to``: the
        remote node to RESULT_ACK, None for a result of this node's outbox)."""
        assert self.wa is not None
        rec = self.scheduler.records[task].to_json()
        rec["running"] = None  # a run in flight is this manager's to track, not the voters'
        self._rows_out[task] = {"reserved": None, "record": rec}
        self._uncommitted.add(run_id)
        self._results_out.append((fin, task, reply_to, run_id))

    def on_write_committed(self, seq: int, now: float) -> None:
        """``WriteCommitted``: send the EXECUTEs and acknowledge the results it released."""
        wa = getattr(self, "wa", None)
        if wa is None:
            return
        wall = self.agent.clock.wall()
        applied = False
        for item in wa.on_committed(seq, wall * 1000):
            if isinstance(item, Dispatch):
                if (self.scheduler.active and self.scheduler.expects(item.task, item.run_id,
                                                                     item.node)
                        and (not item.deadline_ms or wall * 1000 < item.deadline_ms)):
                    self._dispatch(item, now)
                continue
            fin, task, reply_to, run_id = item
            self._log_finished(fin)
            applied = True
            self._uncommitted.discard(run_id)
            if reply_to is None:
                self.outbox.ack(run_id)
            else:
                self.agent.send(reply_to, ResultAck(self.agent.me, self.agent.core.term, task,
                                                    run_id), now)
        if applied:
            self._replicate(now)
            if self.store is not None:
                self.store.mark()

    def quorum_status(self) -> dict[str, Any] | None:
        """The write-ahead's figures for status (None when not writing ahead): what is held,
        the reservation lead, and the latencies of the last commits (ms, oldest first)."""
        wa = getattr(self, "wa", None)
        if wa is None:
            return None
        return {"held": len(wa.held), "lead_ms": round(wa.lead_ms, 3),
                "dispatched_at_once": wa.at_once, "dispatched_late": wa.late,
                "commit_ms": [round(x, 3) for x in wa.latencies]}
