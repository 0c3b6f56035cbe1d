"""Which runs in flight a new manager fails at once when it takes over, node by node.

A manager that takes over adopts the runs in flight its table shows. It asks each live member
what became of its runs (``RUN_QUERY``: :mod:`clerk._routing`), and after a crash it used to
fail at once every run whose node it did not hold as a live member: that node was taken to be
gone. One is not: **a member that left with a run in flight**. Its manager removed it at its
LEAVE and kept the run open (a member that leaves finishes its runs in flight and sends their
results), replicated that, and crashed before the result came. The next manager's table then
shows the run on a node it does not list; failing it sent the next slot from the state before
while the member still held the run's result (it keeps it, up to ``LEAVE_ACK_WAIT`` from its
leave, for a manager to acknowledge: :mod:`clerk._leftmember`), and that result, coming
later, was dropped as a result for a run the row had finished: a count repeated, nothing
counted (``tests/unit/test_sim_leave_results.py``, ``LEAVE_THEN_CRASH``).

The member can still be reached: every follower keeps the address of each member its manager
stopped listing (``_lost``, :mod:`clerk._joining`), and a new manager sends those its
COORDINATOR at once and every probe interval. A node that left as a member answers a newer
claim with its OFFER, its results and its LEAVE (``LeftHeard``). So the rule (default mode):

* a node listed as a live member: asked (``RUN_QUERY``), as before;
* a node listed but marked dead (its connection closed, or it went silent): failed at once,
  as before: this manager saw it go;
* a node not listed: its run stays open until its result comes (a RESULT from a node that is
  not a member counts when it is for the run in flight on that node:
  :mod:`clerk._agentreplies`) or its deadline passes, as a run whose node never answers; no
  next slot goes beside it meanwhile (the overlap rule), but not past ``UNLISTED_RUN_WAIT_S``
  from the takeover: a member that left is gone by then (it keeps a result at most
  ``LEAVE_ACK_WAIT``, 10 s, from its leave, which came before the takeover), so waiting
  longer only stalls the task. What this costs: a node that died while its manager died too,
  before that manager failed its runs and replicated it, holds its task until the sooner of
  the run's deadline (its ``timeout``) and that bound, rather than the failover.

Quorum mode fails runs on unlisted nodes at once, as before (a node that left keeps its
results there in its outbox, which it sends only to a manager it follows; not changed here).
A graceful hand-over fails none (the leaving manager reports its own run, and its members
send theirs to the successor), but bounds a run on a node it does not list the same way
(:func:`bounded_at_takeover`): a member that left with the run going before the hand-over
(its leaving manager removed it at its LEAVE) keeps its result ``LEAVE_ACK_WAIT`` from that
leave at most, and the leaving manager its own ``LEAVE_WAIT``; a node that then died sent
nothing, and before, the successor kept its run open for the run's whole ``timeout`` (an
hour's, say), holding the task (``tests/unit/test_sim_handover_bound.py``).

**The manager a member leaves** bounds that member's runs in flight the same way, from the
LEAVE (:func:`bound_runs_of`, in both modes): it keeps them open (the
member finishes them and sends their results), but a member stops a run still going after
``LEAVE_WAIT`` (5 s) and exits without a result, and before, the run then held its task for
its whole ``timeout`` on the manager it left too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clerk._schedule import Scheduler

__all__ = ["UNLISTED_RUN_WAIT_S", "bound_runs_of", "bounded_at_takeover", "fails_at_takeover"]

#: How long a new manager keeps open a run adopted on a node it does not list, at most, from
#: its takeover (``Running.bound_run``): longer than a member that left keeps its results
#: (``clerk._routing.LEAVE_ACK_WAIT``, 10 s from its leave; tests/unit/test_adopted_runs.py
#: checks the two), so its result still counts; bounded so that a run on a node that died
#: with its manager does not hold its task for the whole of a long ``timeout``.
UNLISTED_RUN_WAIT_S = 12.0


def fails_at_takeover(listed: bool, alive: bool, graceful: bool, quorum: bool,
                      unlisted_wait: bool = True) -> bool:
    """Does a new manager fail at once an adopted run on a node other than itself that it
    lists (``listed``; ``alive``: as a live member) or not (see the module docstring)?
    ``unlisted_wait`` False: a node not listed fails too, as before (the simulator's
    ``SimLedger.unlisted_runs_wait``)."""
    if graceful or (listed and alive):
        return False
    if listed:
        return True
    return quorum or not unlisted_wait


def bounded_at_takeover(listed: bool, alive: bool, graceful: bool, quorum: bool,
                        unlisted_wait: bool = True) -> bool:
    """Does a new manager bound an adopted run on a node other than itself to
    ``UNLISTED_RUN_WAIT_S`` from its takeover (``Running.bound_run``)? A run on a node it
    does not list that it keeps open, after a crash or a graceful hand-over alike (see the
    module docstring)."""
    return not listed and not fails_at_takeover(listed, alive, graceful, quorum, unlisted_wait)


def bound_runs_of(sched: Scheduler, node: str, wall: float) -> list[str]:
    """``node`` left (its LEAVE reached us, the manager): each of its runs in flight times
    out ``UNLISTED_RUN_WAIT_S`` from ``wall`` at the latest (``Running.bound_run``; it stays
    open until then for its result). The tasks bounded."""
    out = []
    for name in sched.in_flight():
        run = sched.records[name].running
        if run is not None and str(run["node"]) == node:
            sched.bound_run(name, (wall + UNLISTED_RUN_WAIT_S) * 1000)
            out.append(name)
    return out
