"""How far this node's wall clock is from its manager's: the estimate, its bound, and its use.

A manager stamps each periodic HEARTBEAT with its wall clock (``Heartbeat.wall_ms``, only to a
member whose incarnation carries ``CLOCK_MARK``: an older build refuses a field it does not
know). A follower keeps, per manager followed, the stamps of the last ``WINDOW_S`` seconds
(by the manager's clock: those within ``WINDOW_S`` of its newest stamp) as
``receive time (monotonic) - stamp`` and estimates its clock's *offset* (this node's wall clock
minus the manager's) as the smallest of them plus ``wall - monotonic`` now:

* **One-sided error.** A stamp taken at manager time ``s`` arrives at ``s + d`` (``d >= 0``:
  the encode, the network, this node's loop), when this node's clock reads ``s + d + offset``.
  So every sample is ``offset + d`` and the minimum over a window is ``offset + d_min``: the
  estimate is never below the true offset (up to the drift below), and above it by the
  *smallest* one-way delay of the window, not a typical one: queuing delay is filtered out.
  On one machine (offset exactly 0) the estimate shows that bias: 0.44-0.65 ms at load 3 on
  the shared 2-core machine, of which the stamp's truncation to whole ms is 0.5 on average
  (``tools/bench_clockskew.py``).
* **This node's own clock steps** (NTP stepping it, an operator's ``date -s``) do not age the
  window: the samples are kept against the monotonic clock and the wall clock is read only
  when the estimate is asked for. A manager whose clock steps *forward* (samples shrink) is
  followed at its next heartbeat; so is one stepping *back* by more than the time between
  two of its heartbeat rounds (100 ms by default): its stamp comes before the previous one,
  and the window starts over from it. A smaller step back, or a clock running slower than
  this node's monotonic clock, is followed within the window: until then the estimate can be
  below the truth by the step (under that time between rounds), or by drift x window
  (500 ppm, NTP's largest slew, x 5 s = 2.5 ms; a free-running crystal's ~50 ppm: 0.25 ms),
  and a run held to it can start that much early by the manager's clock (never by more than
  the dispatch lead and window: its EXECUTE left then). (Before review12 a step back of any
  size stayed in the window for 5 s: tests/unit/test_review12_skew_step.py.) Not detecting
  the smaller step is a choice: within one heartbeat it looks like queuing delay, which the
  window's minimum filters out; the bound that holds, and that no slot runs twice, are in
  tests/unit/test_skew2_small_step.py.
* **A new manager** (another name or incarnation) starts a new window; with no stamp in the
  last ``WINDOW_S`` there is no estimate (``None``): a manager of an older build, or none.
  Then EXECUTEs are judged by this node's own clock, as before this module, and counted
  (``unestimated``; the status's ``judged_by`` says which clock judges): not held until a
  first estimate, which is one heartbeat round away after a join or a takeover, and never
  comes from a manager of an older build.

Use (:func:`local_due`): EXECUTE's due time and deadline are the manager's wall times; a node
whose estimate is at least ``CORRECT_MS`` from 0 holds, refuses as early and refuses as late
against them moved into its own time base (``due + offset``). Because the estimate errs only
upwards, a corrected run starts at or after its due time by the manager's clock (never before
due holds in the manager's time base), and later than it by at most ``d_min``; a message
*delayed* in the network is still judged against the window's estimate, not against its own
stamp, so it is recognised as late; so is one that waited with heartbeats as late as it in the
node's socket (a frozen node, a partition) longer than the window: the window is by stamps,
and the heartbeats' before the delay are in it. The deadline and the "one interval late"
limit move the same way, so they are lenient by that same ``d_min`` in the manager's time
base (a fraction of a millisecond against an interval of 100 ms or more, and the manager's
own deadline has ``TRANSIT_GRACE_MS``, 1 s, beyond the EXECUTE's). Below ``CORRECT_MS`` the
clocks agree as well as NTP makes them and the estimate's own bias is of the same size: the
due time is taken as it is (the behaviour before this module; so it is with no estimate).

The manager reads each member's estimate from its ACKs (``Ack.clock_ms``, only to a manager
with ``CLOCK_MARK``), for its status's ``member_clocks``: one number per ACK (at least one
every 0.5 s per member), so one place shows every member's offset.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any

from clerk._offerruns import OfferedRun

__all__ = ["CLOCK_MARK", "CORRECT_MS", "JUDGED_BY", "MAX_SAMPLES", "PAST_KEEP_S", "PAST_MAX",
           "WARN_EVERY_S", "WARN_MS", "WARN_SAMPLES", "WINDOW_S", "AsSent", "SkewEstimator",
           "local_due", "reads_clock"]

log = logging.getLogger("clerk.node")

#: The incarnation mark of a node that reads (and, as a manager, sends) ``Heartbeat.wall_ms``.
CLOCK_MARK = "+c"
#: The window of stamps the minimum is taken over (s): 50 heartbeats at the default 100 ms.
#: Longer filters a busier network better and follows a manager's clock that steps back or
#: runs slow later (see the module docstring).
WINDOW_S = 5.0
#: At most this many samples are kept (a forged or very fast heartbeat stream cannot grow it).
MAX_SAMPLES = 512
#: A node corrects EXECUTE's times once its estimated offset is at least this far from 0 (ms).
CORRECT_MS = 5.0
#: A WARNING once the offset passes this (ms): half the shortest interval (100 ms), where an
#: uncorrected node ran one of every two runs of such a task a slot late, and a twentieth of
#: ``clerk._lead.EARLY_LIMIT_MS``, past which a node of an older build refuses every run.
WARN_MS = 50.0
#: ... at most once per this many seconds (the state and the figure are in status anyway).
WARN_EVERY_S = 60.0
#: The status's ``clock.judged_by``: EXECUTEs held and judged in the manager's time base
#: (an estimate 5 ms or more from 0), by this node's own clock within ``CORRECT_MS`` of it,
#: or by its own clock without an estimate (see the module docstring).
JUDGED_BY = ("manager", "own (within 5 ms)", "own (no estimate)")
#: ... and not before this many stamps (half a second of heartbeats): the first one alone
#: may carry the delay of a busy start.
WARN_SAMPLES = 5
#: The estimate of each earlier manager followed is kept this long (s) after its last stamp,
#: for at most ``PAST_MAX`` managers: a new manager moves a run a member offered into its own
#: time base by how far it is ahead of the manager that *sent* the run (``ahead_by_manager``),
#: which after two takeovers in a row is not the one it followed last (review15). Clocks
#: disciplined by NTP drift by milliseconds an hour; a manager's name is kept, not its
#: incarnation (a run's claim names the manager, and a restart keeps the machine's clock).
PAST_KEEP_S = 600.0
PAST_MAX = 16


def reads_clock(incarnation: str) -> bool:
    """Does the node of this incarnation read ``Heartbeat.wall_ms``?"""
    return CLOCK_MARK in incarnation


class SkewEstimator:
    """The minimum of ``receive (monotonic) - stamp`` over the last ``window`` seconds of
    stamps (none without a stamp received in the last ``window`` seconds), for
    the manager the stamps come from (see the module docstring). All times in seconds."""

    __slots__ = ("_heard", "_past", "_samples", "_stamp", "_warn_after", "count", "last",
                 "source", "unestimated", "window")

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        #: (stamp ms, sample), the samples increasing: a monotonic deque, so the minimum is
        #: the first and each sample is added and dropped once. A sample expires once a stamp
        #: ``window`` later (by the manager's clock) came, not by the time it came here: the
        #: heartbeats that waited in this node's socket with an EXECUTE (a frozen node, a
        #: partition) are all as late as it is, and had the window only them, the estimate
        #: would move the EXECUTE's deadline by its delay and run it late (review12:
        #: tests/integration/test_review12_skew_frozen.py).
        self._samples: deque[tuple[float, float]] = deque()
        self.source = ""  # who stamped them: "name/incarnation"
        self._stamp = -math.inf  # the last stamp taken (ms)
        self._heard = -math.inf  # monotonic: when it came
        self.count = 0  # samples taken from that source (for status)
        self._warn_after = -math.inf  # monotonic: no WARNING before (``watch``)
        #: The offset at the last ``watch`` (s; None: no estimate): what the metrics read, in
        #: their own thread, without touching the samples.
        self.last: float | None = None
        #: EXECUTEs this node judged by its own clock for want of an estimate from their
        #: sender (just joined, a new manager's first heartbeat not in yet, a manager of an
        #: older build): the status's ``unestimated_runs`` (never reset).
        self.unestimated = 0
        #: Managers followed before (by name): (their window's minimum sample, the monotonic
        #: time of their last stamp), kept as the source changes (``ahead_by_manager``).
        self._past: dict[str, tuple[float, float]] = {}

    def sample(self, source: str, stamp_ms: int, mono: float) -> None:
        """A stamp ``stamp_ms`` (the manager's wall clock, ms) from ``source``, received at
        ``mono`` (this node's monotonic clock, s)."""
        if source != self.source:
            self._keep_past()
            self._samples.clear()
            self.source, self.count, self._stamp = source, 0, -math.inf
        value = mono - stamp_ms / 1000
        if not math.isfinite(value):
            return
        if stamp_ms < self._stamp:
            # A stamp before the previous one (they come in order): the manager's clock
            # stepped back, by more than the time between the two. The window's samples are
            # that much too small (the estimate too low: runs held to it would start early,
            # by up to the dispatch lead); it starts over from this one.
            self._samples.clear()
        self._stamp, self._heard = stamp_ms, mono
        q = self._samples
        while q and q[-1][1] >= value:
            q.pop()
        q.append((stamp_ms, value))
        if len(q) > MAX_SAMPLES:
            q.popleft()
        self.count += 1
        oldest = stamp_ms - self.window * 1000
        while q[0][0] < oldest:  # (in order of stamps too; the last one stays)
            q.popleft()

    def offset(self, mono: float, wall: float) -> float | None:
        """This node's wall clock minus the manager's (s), or None without a stamp received
        in the last ``window`` seconds."""
        if not self._samples or mono - self._heard > self.window:
            return None
        return self._samples[0][1] + (wall - mono)

    def reset(self) -> None:
        self._keep_past()
        self._samples.clear()
        self.source, self.count, self.last, self._stamp = "", 0, None, -math.inf
        self._heard = -math.inf

    def _keep_past(self) -> None:
        """The source's estimate, kept by its manager's name as another source comes (or none)."""
        if not self.source or not self._samples:
            return
        past, name = self._past, self.source.split("/", 1)[0]
        past.pop(name, None)  # (re-inserted last: the newest)
        past[name] = (self._samples[0][1], self._heard)
        while len(past) > PAST_MAX:
            del past[min(past, key=lambda k: past[k][1])]

    def ahead_by_manager(self, mono: float, wall: float) -> dict[str, float]:
        """How far this node's clock is ahead of each manager it followed in the last
        ``PAST_KEEP_S`` seconds, the current source's included (its estimate even past the
        window: a manager that just died), by name (ms; 0 when behind or within
        ``CORRECT_MS``, as :func:`local_due` takes such an offset as none)."""
        known = dict(self._past)
        if self.source and self._samples:
            known[self.source.split("/", 1)[0]] = (self._samples[0][1], self._heard)
        out = {}
        for name, (value, heard) in known.items():
            if mono - heard > PAST_KEEP_S:
                continue
            ms = (value + wall - mono) * 1000
            out[name] = ms if math.isfinite(ms) and ms >= CORRECT_MS else 0.0
        return out

    def status(self, mono: float, wall: float) -> dict[str, Any]:
        """The status's ``clock``: the offset (ms, this node's clock minus its manager's;
        None: no estimate), whose stamps, how many, whether EXECUTEs are corrected, by which
        clock they are judged now (``judged_by``: ``JUDGED_BY``'s), and how many were judged
        by this node's own for want of an estimate (``unestimated_runs``)."""
        off = self.offset(mono, wall)
        corrected = local_due(off, 1, 1) is not None
        return {"offset_ms": None if off is None else round(off * 1000, 3),
                "manager": self.source.split("/", 1)[0] if off is not None else "",
                "samples": self.count if off is not None else 0,
                "window_s": self.window,
                "corrected": corrected,
                "judged_by": JUDGED_BY[0 if corrected else 1 if off is not None else 2],
                "unestimated_runs": self.unestimated}

    def watch(self, mono: float, wall: float) -> None:
        """Note the offset (``last``) and log a WARNING when it is past ``WARN_MS``, at most
        every ``WARN_EVERY_S`` (the node's loop calls it at each timer turn of a follower)."""
        off = self.last = self.offset(mono, wall)
        if (off is None or mono < self._warn_after or abs(off * 1000) < WARN_MS
                or self.count < WARN_SAMPLES):
            return
        self._warn_after = mono + WARN_EVERY_S
        log.warning("this node's wall clock is %+.0f ms from its manager %s's (estimated from "
                    "its heartbeats' stamps; more than %g ms): check NTP on both; runs are "
                    "held and judged in the manager's time base (clerk status: clock)",
                    off * 1000, self.source.split("/", 1)[0], WARN_MS)


def local_due(offset_s: float | None, due_ms: int, deadline_ms: int) -> tuple[int, int] | None:
    """EXECUTE's due time and deadline in this node's time base, or None to take them as they
    are (no estimate, or one within ``CORRECT_MS`` of 0); 0 (not given) stays 0."""
    if offset_s is None or abs(offset_s * 1000) < CORRECT_MS:
        return None
    shift = offset_s * 1000
    # The due time rounded up (never before it), the deadline down (never after it).
    return (math.ceil(due_ms + shift) if due_ms else 0,
            math.floor(deadline_ms + shift) if deadline_ms else 0)


class AsSent:
    """The due time and deadline of each run this node moved into its own time base
    (:func:`local_due`), as its manager sent them: what this node's OFFER says of its runs in
    flight (clerk._offerruns) to the next manager, which reads them in a manager's time base.
    Offered as moved, a run of a node 10 s behind looked 10 s past its deadline to the new
    manager, which took it as timed out at once and sent the next slots beside it (review12:
    tests/integration/test_review12_skew_offer.py). Only the runs in flight are kept (pruned
    when the record doubles)."""

    __slots__ = ("_prune_at", "_sent")

    def __init__(self) -> None:
        self._sent: dict[str, tuple[int, int]] = {}
        self._prune_at = 64

    def note(self, run_id: str, due_ms: int, deadline_ms: int,
             in_flight: Callable[[], Collection[str]]) -> None:
        """The run ``run_id`` was moved; ``due_ms`` and ``deadline_ms`` as sent."""
        self._sent[run_id] = (due_ms, deadline_ms)
        if len(self._sent) >= self._prune_at:
            live = in_flight()  # (this run is not handed to the executor yet: kept)
            self._sent = {k: v for k, v in self._sent.items() if k in live or k == run_id}
            self._prune_at = max(64, 2 * len(self._sent))

    def due(self, run_id: str) -> int | None:
        """The due time its manager sent for the run ``run_id`` (None: not moved): the
        slot's time, which ``current_run().due`` shows (review13:
        tests/integration/test_review13_skew_due.py)."""
        sent = self._sent.get(run_id)
        return None if sent is None else sent[0]

    def offered(self, runs: Iterable[OfferedRun]) -> list[OfferedRun]:
        """``runs`` with the times their manager sent."""
        out = []
        for r in runs:
            sent = self._sent.get(r.run_id)
            out.append(r if sent is None else
                       dataclasses.replace(r, due_ms=sent[0], deadline_ms=sent[1]))
        return out
