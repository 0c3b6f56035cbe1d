"""Schedules as grids of slots: fixed intervals and cron expressions (pure, no clock).

**Grid.** Every scheduled task has a grid: an increasing sequence of due times (wall clock,
milliseconds since the epoch), each named by an integer *slot id*. Every node computes the same
grid from the task's declaration alone, so a new manager continues it without asking anyone.
The scheduler asks a grid three things, and nothing else:

* ``slot_at(t)``: the slot of the latest due time ``<= t`` (the slot that is "current" at t);
* ``due_ms(s)``: the due time of the first slot whose id is ``>= s``, so ``s + 1`` means "the
  next slot after ``s``" on both grids;
* ``count(lo, hi)``: how many slots have ids in ``[lo, hi)`` (the skipped-slot counters).

**Interval grid.** Slot ``k`` is due at ``phase + k * interval``; ``phase`` comes from the
task's name, so tasks with one interval do not all fire together. Ids are consecutive.

**Cron grid.** A slot is a fire time of the task's cron expression in the task's time zone,
and its id is that fire time in Unix seconds (UTC). That id is the same on every node, can be
computed from any wall time without history (the alternative, "the k-th fire time since a fixed
epoch", needs every fire time since the epoch counted: 86 400 a day for a per-second task), is
turned back into its due time without the library, and reads well in logs and status. Ids of
consecutive fire times are not consecutive integers; that is why the scheduler counts slots
with ``count`` and never by subtraction.

**Expressions.** Five fields (minute hour day-of-month month day-of-week) or six with a leading
seconds field; ranges, steps, lists, month and weekday names (``JAN``, ``MON``), ``L``, ``LW``,
``MON#2``, ``5L``; and the macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``,
``@daily`` (``@midnight``), ``@hourly``. Day-of-month and day-of-week combine as in Vixie and
Debian cron: OR when both are restricted, AND when either starts with ``*``. The expression is
evaluated by ``cronsim`` (the optional extra ``clerk-cluster[cron]``) in the task's zone
(``zoneinfo``; default UTC).

**DST rule: Debian cron's (cronie's).** For an expression whose minute and hour fields are both
fixed (neither starts with ``*``), a local time that does not exist (spring forward) runs once,
at the first minute after the jump (02:30 on a 02:00->03:00 night runs at 03:00), and a local
time that happens twice (fall back) runs once, at its first occurrence (summer time). An
expression with ``*`` in its minute or hour field runs by elapsed time: its fire times in a
spring-forward gap do not exist, and those in a repeated hour are distinct instants and all run
(``30 * * * *`` stays hourly: 01:30, 02:30 CEST, 02:30 CET, 03:30). Six-field expressions follow
the same rule: their fire times are the five-field expression's minutes plus the seconds list,
so a fixed-time job with seconds moves and deduplicates exactly like one without. Why this rule:
it is what the system cron of most Linux servers does (users compare with it), a daily job runs
exactly once every day whatever the zone does, and an hourly job never stops for an hour.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronGrid", "Grid", "IntervalGrid", "MACROS", "Scheduled", "due_datetime",
           "due_in_zone", "grid_for", "load_zone", "parse_cron", "phase_ms"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
INSTALL_HINT = 'install the cron extra: pip install "clerk-cluster[cron]"'

#: ``count`` walks fire times one by one up to this many, then extrapolates from their mean
#: spacing: the counter of skipped fire times after a long gap (a per-second task down for a
#: day has 86 400) must not hold the manager's loop for seconds. 2000 steps cost ~20 ms.
COUNT_EXACT = 2000
#: Fixed reference for "does this expression ever fire": the same answer on every node and
#: at every start, whatever today's date.
_PROBE_FROM = datetime(2000, 1, 1, tzinfo=UTC)
#: "No next fire time" in the slot_at cache (an expression whose last fire time has passed).
_NEVER = 2**62


class Scheduled(Protocol):
    """What this module reads of a task definition (:class:`clerk._tasks.TaskDef`): a
    Protocol, so that the task module imports the calendar and never the reverse."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> int | None: ...

    @property
    def cron(self) -> str | None: ...

    @property
    def timezone(self) -> str: ...


class Grid(Protocol):
    """What the scheduler needs from a schedule (see the module docstring)."""

    zone: tzinfo

    def slot_at(self, wall_ms: float) -> int: ...

    def due_ms(self, slot: int) -> float: ...

    def count(self, lo: int, hi: int) -> int: ...


def phase_ms(name: str, interval_ms: int) -> int:
    """The task's offset on its interval grid: stable across nodes, spread across the interval."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % interval_ms


class IntervalGrid:
    """Slot ``k`` due at ``phase + k * interval`` (ms)."""

    zone: tzinfo = UTC

    def __init__(self, name: str, interval_ms: int) -> None:
        self.interval = interval_ms
        self.phase = phase_ms(name, interval_ms)

    def slot_at(self, wall_ms: float) -> int:
        return math.floor((wall_ms - self.phase) / self.interval)

    def due_ms(self, slot: int) -> float:
        return self.phase + slot * self.interval

    def count(self, lo: int, hi: int) -> int:
        return max(0, hi - lo)


def load_zone(name: str) -> tzinfo:
    """The ``zoneinfo`` zone called ``name``; ValueError saying why not."""
    if not isinstance(name, str) or not name:
        raise ValueError("must be an IANA time zone name such as 'Europe/Berlin' or 'UTC'")
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        raise ValueError("is not a known time zone (IANA names such as 'Europe/Berlin'; "
                         "where the system has no zone files, pip install tzdata)") from None
    except (ValueError, OSError):
        raise ValueError("is not a valid time zone name (IANA names such as "
                         "'Europe/Berlin')") from None


def _cronsim() -> type:
    try:
        from cronsim import CronSim
    except ImportError:
        raise ValueError(f"needs the cronsim library: {INSTALL_HINT}") from None
    return CronSim


def parse_cron(expr: str) -> tuple[str, tuple[int, ...]]:
    """Split ``expr`` into its five-field part and its seconds (``(0,)`` for five fields).

    ValueError saying what is wrong: a bad field, a wrong number of fields, an expression that
    never fires, or the library missing."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError("must be a cron expression such as '30 2 * * *' or '@daily'")
    cron_sim = _cronsim()
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(f"unknown macro (known: {', '.join(MACROS)})")
        text = MACROS[text.lower()]
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ValueError(f"has {len(fields)} fields; expected 5 (minute hour day-of-month "
                         "month day-of-week) or 6 (a leading seconds field)")
    try:
        probe = cron_sim(text, _PROBE_FROM)
        next(probe)
    except StopIteration:
        raise ValueError("never fires") from None
    except Exception as exc:  # CronSimError and anything the parser trips over
        raise ValueError(f"is not a valid cron expression: {exc}") from None
    if len(fields) == 5:
        return text, (0,)
    # The seconds of one minute, through the library's own parser of the seconds field.
    start = int(_PROBE_FROM.timestamp())
    minute = cron_sim(f"{fields[0]} * * * * *", _PROBE_FROM - timedelta(seconds=1))
    seconds = []
    while (sec := int(next(minute).timestamp()) - start) < 60:
        seconds.append(sec)
    return " ".join(fields[1:]), tuple(seconds)


class CronGrid:
    """Fire times of a cron expression in a zone; slot id = fire time in Unix seconds."""

    def __init__(self, expr: str, zone: str) -> None:
        self.expr = expr
        self.zone_name = zone
        self.zone = load_zone(zone)
        self._five, self._seconds = parse_cron(expr)
        self._sim: Callable[..., object] = _cronsim()
        # Caches (the scheduler asks about the same few instants again and again):
        # minute fire after q is _after_hi for every q in [_after_lo, _after_hi).
        self._after_lo, self._after_hi = 0, -1
        # slot_at: every t in [_span_lo, _span_hi) has slot _span_lo.
        self._span_lo, self._span_hi = 0, -1
        self._due: dict[int, float] = {}

    # --- minutes: the five-field expression through the library ---------------------------

    def _minute_after(self, q: int) -> int | None:
        """The first five-field fire time strictly after ``q`` (Unix seconds)."""
        if self._after_lo <= q < self._after_hi:
            return self._after_hi
        it = self._sim(self._five, datetime.fromtimestamp(q, self.zone))
        try:
            while True:
                t = int(next(it).timestamp())  # type: ignore[call-overload]
                # Started inside a repeated hour, the library may answer with the first
                # occurrence of a time that is already behind q: not after q, go on.
                if t > q:
                    break
        except StopIteration:
            return None
        self._after_lo, self._after_hi = q, t
        return t

    def _minute_at_or_before(self, q: int) -> int | None:
        """The last five-field fire time ``<= q``: the library's reverse iteration proposes,
        the forward one (which defines the grid) confirms."""
        c = q + 1
        while True:
            it = self._sim(self._five, datetime.fromtimestamp(c, self.zone), reverse=True)
            try:
                p = int(next(it).timestamp())  # type: ignore[call-overload]
                while p >= c:
                    p = int(next(it).timestamp())  # type: ignore[call-overload]
            except StopIteration:
                return None
            x = self._minute_after(p - 1)
            if x is not None and x <= q:
                while True:
                    y = self._minute_after(x)
                    if y is None or y > q:
                        return x
                    x = y
            c = p  # p is not on the forward grid: look further back

    # --- fire times -------------------------------------------------------------------------

    def next_after(self, t: int) -> int | None:
        """The first fire time strictly after ``t`` (Unix seconds); None if there is none."""
        secs = self._seconds
        m = self._minute_after(t - 60)
        while m is not None:
            for s in secs:
                if m + s > t:
                    return m + s
            m = self._minute_after(m)
        return None

    def at_or_before(self, t: int) -> int | None:
        """The last fire time ``<= t``; None if there is none (in the library's 50 years)."""
        m = self._minute_at_or_before(t)
        while m is not None:
            for s in reversed(self._seconds):
                if m + s <= t:
                    return m + s
            m = self._minute_at_or_before(m - 1)
        return None

    def slot_at(self, wall_ms: float) -> int:
        t = math.floor(wall_ms / 1000)
        if self._span_lo <= t < self._span_hi:
            return self._span_lo
        if self._span_hi <= t and self._span_hi >= 0:
            # Moved on by a few fire times (the usual case): walk instead of searching.
            lo = self._span_hi
            for _ in range(16):
                hi = self.next_after(lo)
                if hi is None or hi > t:
                    self._span_lo, self._span_hi = lo, hi if hi is not None else _NEVER
                    return lo
                lo = hi
        lo_or_none = self.at_or_before(t)
        if lo_or_none is None:
            return -1
        hi_or_none = self.next_after(t)
        self._span_lo = lo_or_none
        self._span_hi = hi_or_none if hi_or_none is not None else _NEVER
        return lo_or_none

    def due_ms(self, slot: int) -> float:
        if self._span_lo < slot <= self._span_hi < _NEVER:
            return self._span_hi * 1000.0  # the fire time after the current one
        due = self._due.get(slot)
        if due is None:
            if len(self._due) > 64:
                self._due.clear()
            nxt = self.next_after(slot - 1)
            due = math.inf if nxt is None else nxt * 1000.0
            self._due[slot] = due
        return due

    def count(self, lo: int, hi: int) -> int:
        n = 0
        first = x = self.next_after(lo - 1)
        while x is not None and x < hi:
            n += 1
            if n == COUNT_EXACT and first is not None and x > first:
                # The rest estimated from the mean spacing of the first COUNT_EXACT.
                return n + (hi - 1 - x) * (n - 1) // (x - first)
            x = self.next_after(x)
        return n


def grid_for(d: Scheduled) -> Grid | None:
    """The task's grid; None for a task without a schedule (instant-only)."""
    if d.cron is not None:
        return CronGrid(d.cron, d.timezone)
    if d.interval is not None:
        return IntervalGrid(d.name, d.interval)
    return None


def due_datetime(d: Scheduled, due_ms: float) -> datetime:
    """A slot's due time (wall ms) as an aware datetime in the task's ``timezone`` (default
    UTC; for an interval task the zone changes only how the instant is written). This is what
    ``clerk.current_run().due`` and the status's ``next_due`` show."""
    return due_in_zone(due_ms, d.timezone)


#: The zones :func:`due_in_zone` has converted into, by name (a zone it could not load: UTC).
_ZONES: dict[str, tzinfo] = {}


def due_in_zone(due_ms: float, zone: str) -> datetime:
    """The one conversion of a due time (wall ms) into an aware datetime in ``zone``; a zone
    this node cannot load (validated at start, so never expected) falls back to UTC.

    One step, ``datetime.fromtimestamp(s, zone)``: the same datetime as converting the UTC
    instant with ``astimezone(zone)`` (both are ``zone.fromutc`` of the same UTC wall time,
    fold included; tests/unit/test_calendar.py), without the intermediate datetime, and the
    zone looked up once per name rather than per call (a worker converts one per run)."""
    tz = _ZONES.get(zone)
    if tz is None:
        try:
            tz = load_zone(zone)
        except ValueError:
            tz = UTC
        if len(_ZONES) < 1024:  # zone names come from task declarations: a handful
            _ZONES[zone] = tz
    return datetime.fromtimestamp(due_ms / 1000, tz)
