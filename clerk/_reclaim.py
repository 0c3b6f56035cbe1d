"""A claim of our own while already scheduling: which table the activation starts from.

A manager that gets an ELECTION above its term claims again above it
(:func:`clerk._election.take_claim`); ``CoreState.new_log(keep=True)`` keeps its last table
log's rows as its replica and the layer activates again under the new claim (the runner's
``_take_over_step``, the simulator's ``LedgerLayer.after``). Reloading the scheduler from that
replica would forget what the manager knows that its log does not yet hold: rows whose round
waits (a dispatch's hold, the replication gap), so a run in flight or a result applied. The
scheduler's own rows are newer than (or equal to) every row of its log: they stay. The
activation itself still runs under the new claim (the term that fences the old claim's
messages, the OFFER wait, ``decided``/``dispatched`` re-derived from the rows).

Quorum mode reloads as before: the scheduler's rows may hold results not committed yet, which
only the committed table may carry into a new ballot.
"""

from __future__ import annotations

__all__ = ["reload_at_claim"]


def reload_at_claim(quorum: bool, scheduling: bool) -> bool:
    """Does the activation at a claim of ours load the scheduler from the replica? Not when
    ``scheduling`` (the scheduler was active, not draining: a claim again while managing) in
    the default mode: the one rule of the runner and the simulator."""
    return quorum or not scheduling
