"""Dispatching ahead of the slot: the rules and the timings of an on-time start.

A run that is sent at its due time starts late by the whole dispatch path (the manager's wake-up,
the network, the node's loop, the hop to a worker, the worker's wake-up): ~1-2 ms median and
several ms at p99 on a loaded 2-core machine. So the manager sends EXECUTE a *lead* ahead of the
due time, the EXECUTE carries the due time, and the run starts at it:

* **The manager** dispatches slot ``k`` at ``due(k) - dispatch_lead`` (``dispatch_lead_ms`` of
  the scheduler; the node's ``dispatch_lead`` key, default ``DISPATCH_LEAD_MS``, 0 = off). The
  worker, eligibility (live, has the task, ``nodes()``) and capacity (a live worker) are judged
  at that instant; the random choice is the same as without a lead.
* **Dispatch window**: a tick that sends a slot at its dispatch instant also sends every slot
  due within ``dispatch_window`` (:func:`window_for`) after that instant's own, each early by
  between the lead and the lead plus the window. The window only fills a tick that happens
  anyway: it never wakes the manager by itself, and a slot alone is still sent exactly its
  lead ahead. Why: the ticks, EXECUTE batches and node wake-ups per run (at 400 runs/s a tick
  dispatched ~1.4 runs; with a 10 ms window a tick and one batch per node carry several). The
  lead plus the window stays within ``MAX_DISPATCH_LEAD_MS``, so the takeover guard below
  covers every slot sent early (the window is 0 at the largest lead, and with no lead).
* **Overlap rule, unchanged**: a slot is skipped when the previous run of its task is still in
  flight *at the slot's due time*, never overlapped. A slot whose predecessor is in flight at
  the early dispatch instant (its own or a window's) is not sent then: the decision waits for
  the due time (still in
  flight: skipped and counted; finished meanwhile: sent at once, without the lead, exactly as
  a slot was before leads existed). An early EXECUTE is therefore only ever sent when no run of
  the task is in flight, and the node queues it behind nothing of that task.
* **The run's clock starts at its due time**: the manager's deadline is ``due + timeout +
  TRANSIT_GRACE_MS`` and EXECUTE's ``deadline_ms`` is ``due + timeout`` (both from the send
  time when that is later, as for a run sent late); the node's kill deadline is the same
  timeout counted from the due time. A run's ``duration`` is measured from its start.
* **The node** hands an early run to an idle worker as soon as it is due within
  ``RELEASE_LEAD_MS`` (with the default lead: as it arrives, so a stall of the node's own loop
  after that cannot make it late); the worker sleeps until the due time (``SPIN_MS``: no spin
  before it) and reads the wall clock until it is reached: a run **never starts before its due
  time** by the node's wall clock (the worker checks it against ``time.time()`` before calling
  the task's code). Free workers take
  the queued run that starts first, so a run due now is not queued behind runs that wait for
  their due time; one that arrives while every worker holds a run waits at most until those
  start (within ``RELEASE_LEAD_MS``). An EXECUTE due more than ``EARLY_LIMIT_MS`` ahead of the
  node's clock is refused (the clocks disagree far beyond NTP's; holding it could let it run
  after the manager gave up on it). A held run is a run in flight for everything else:
  ``RUN_QUERY`` finds it, a leaving node waits for it, its node's loss fails it.
* **Takeover after a crash**: the dead manager may have sent, in its last moments, any slot due
  up to ``MAX_DISPATCH_LEAD_MS`` after its last instant without a heartbeat telling anyone.
  The new manager therefore starts with the first slot due more than ``MAX_DISPATCH_LEAD_MS``
  after it took over (whatever its own lead: the dead one's setting is unknown): at most once
  per slot holds, and the failover window grows by at most that much. A graceful hand-over
  carries the slots already dispatched and misses nothing.
* **Pause**: a run already dispatched when the pause is applied is a run in flight: it still
  starts at its due time (at most ``dispatch_lead`` plus the window after the
  pause).
* Instant runs, triggered runs and catch-ups are due when sent: no lead, no hold.

Quorum mode composes with this: a slot's reservation is written a reserve lead before the
dispatch instant, i.e. at ``due - reserve lead - dispatch_lead``; a slot a tick takes along in
its window before its reservation is committed waits for the commit, like any dispatch
(:mod:`clerk._writeahead`'s gate).
"""

from __future__ import annotations

__all__ = ["DISPATCH_LEAD_MS", "DISPATCH_WINDOW_MS", "EARLY_LIMIT_MS", "FUTURE_SKEW_MS",
           "MAX_DISPATCH_LEAD_MS", "RELEASE_LEAD_MS", "SPIN_MS", "check_lead", "too_late",
           "window_for"]

#: The manager's default lead. It must cover the tail of the dispatch path, from the manager's
#: wake-up to the run in the node's executor, which is the start lateness at lead 0: measured
#: with ``tools/bench_tasks.py --only b --quick`` on the shared 2-core machine at load 14-18,
#: p99 10-24 ms at 10 tasks (median 2 ms) and 130-310 ms at 1,000 tasks (the manager's loop
#: blocked by whole-table replication and a starved CPU: no lead can hide that). With 20 ms
#: the 10-task p99 fell to 4-5 ms in the same runs, and a larger lead buys little there; what
#: a lead costs grows with it: a trigger is refused for that long before a slot, a pause lets
#: that one already-sent run start, and a worker may sleep that long holding a run.
DISPATCH_LEAD_MS = 20
#: The largest lead accepted, and the takeover guard (see the module docstring). Half the
#: shortest interval (100 ms): only ever the very next slot of a task is sent ahead.
MAX_DISPATCH_LEAD_MS = 50
#: How far ahead of this node's wall clock a merged row's slots (an OFFER's, a HANDOVER's) or
#: an offered run's slot may be before it is refused as "from the future" (clerk._adopt,
#: clerk._unseen): another manager's clock may be that far ahead of ours. It was one slot
#: (the dispatch lead), so nodes whose clocks were more than about one interval apart (100 ms
#: at the shortest) refused a correct row, its state with it
#: (tests/unit/test_merge_skew.py); a forged or garbage row a million slots ahead is still
#: refused. What a row that far ahead costs: the slots it says were decided are skipped here.
FUTURE_SKEW_MS = 5000
#: A tick that dispatches also sends the slots due within this much past its own horizon (the
#: lead), when there is a lead: see the module docstring and :func:`window_for`.
DISPATCH_WINDOW_MS = 10
#: A run sent ahead goes to an idle worker once it is due within this: more than the default
#: lead plus the window, so normally as it arrives. Why not at its due time minus a hair: the
#: node's loop is itself late under load (decoding a 0.5 MB table heartbeat at 1,000 tasks
#: blocks it for 10-20 ms), and a worker that sleeps costs no CPU. Why bounded: a worker
#: holding a run is taken, so a run due much further ahead (clocks apart) must not hold one
#: for long.
RELEASE_LEAD_MS = 40.0
#: The worker sleeps until this long before the due time (with a 1 ns timer slack), then spins
#: on the wall clock; 0: it sleeps to the due time and reads the clock until it is reached (a
#: sleep that woke early spins the rest: never before the due time). What the spin bought and
#: cost, side by side (2026-12-04): ``tools/bench_hold.py --runs 200 --rounds 2`` at load 8-9
#: gave a median lateness of 0.2 against 47-51 us (20 ms ahead), 0 against 38 us (2 ms) and
#: 0 against 18 us (0.3 ms) for 0.05 ms against 0, for 52 against 44-47, 40 and 20 us of
#: CPU per wait (at load 4-5: 55 against 54 and 56 against 57 us, 20 and 2 ms ahead: the
#: spin costs CPU only where a wake-up is prompt, i.e. on a busy machine); p90 and p99 the
#: same (the CPU queue). In the real worker
#: (``tools/bench_worker.py --no-floor --against <a copy with SPIN_MS = 0>``, medians of
#: interleaved repeats, load 7-12) 0.05 ms cost 1.08x and 1.03x (``--lead 2 --gap 0.002``: 221
#: against 205 and 229 against 221 us per run), 1.00x (``--lead 3``: 217 against 217) and
#: 1.09x (``--lead 20 --runs 500``: 276 against 254 us); at load 2-5 0.96x (``--lead 20``: 214
#: against 222): on a quiet machine an idle vCPU's wake-up (~80 us) outlasts the spin. The
#: issue's goal for the median is 0.3 ms, the cluster's was 0.04 ms with the spin: its 20-50
#: us are traded for the CPU, which a busy cluster (every run held, both cores full) lacks.
#: Not spinning also frees the core for the other processes at the moment a run is due.
SPIN_MS = 0.0
#: A node refuses an EXECUTE due further ahead than this by its own clock.
EARLY_LIMIT_MS = 1000


def check_lead(lead_ms: float) -> float:
    """A valid dispatch lead (ms), or ValueError."""
    if (not isinstance(lead_ms, int | float) or isinstance(lead_ms, bool)
            or not 0 <= lead_ms <= MAX_DISPATCH_LEAD_MS):
        raise ValueError(f"dispatch lead must be from 0 to {MAX_DISPATCH_LEAD_MS} ms, "
                         f"got {lead_ms!r}")
    return float(lead_ms)


def window_for(lead_ms: float) -> float:
    """The dispatch window (ms) that goes with a lead: none without a lead (sent at the due
    time), and never past ``MAX_DISPATCH_LEAD_MS`` together with the lead (the takeover
    guard)."""
    if lead_ms <= 0:
        return 0.0
    return float(max(0.0, min(DISPATCH_WINDOW_MS, MAX_DISPATCH_LEAD_MS - lead_ms)))


def too_late(wall_ms: float, due_ms: float, deadline_ms: float, interval_ms: float | None,
             verb: str = "arrived") -> str:
    """Why a run may no longer start at ``wall_ms`` (it would be a late run), or "": past its
    deadline, or more than one interval after its slot was due. The node judges an EXECUTE by
    this as it arrives, and the worker again just before the task's code would start: a run
    held for its due time in a worker that was stopped meanwhile (SIGSTOP, a VM stall) must not
    start late either."""
    if deadline_ms and wall_ms > deadline_ms:
        return f"{verb} {wall_ms - deadline_ms:.0f} ms after its deadline"
    if due_ms and interval_ms is not None and wall_ms > due_ms + interval_ms:
        return (f"{verb} {wall_ms - due_ms:.0f} ms after its slot was due, more than "
                f"one interval ({interval_ms:g} ms)")
    return ""
