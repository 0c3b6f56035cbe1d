#!/usr/bin/env python3
"""Compare cron libraries for Clerk's cron grid: correctness at DST changes, and speed.

    .venv/bin/python tools/bench_cron.py [--n 2000]

Part 1 prints, for DST cases in three zones, the fire times cronsim, croniter and Clerk's grid
(clerk._calendar.CronGrid, on cronsim) give, against the rule Debian cron and cronie document
("If time has moved forward, those jobs that would have run in the interval that has been
skipped will be run immediately. Conversely, if time has moved backward, care is taken to avoid
running jobs twice"; the rule applies to jobs at a fixed time, jobs with a "*" in their minute
or hour run by elapsed time).

Part 2 times the operations a scheduler needs, side by side in one run (this machine is
noisy; read the ratio): the next fire times in a row (an iterator), a cold "next after t", a
cold "last at or before t" (reverse), and Clerk's ``slot_at`` on a moving clock.

croniter is a bench-only dependency: if missing, the script installs it into the running
interpreter's environment with pip.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cronsim import CronSim  # noqa: E402

from clerk._calendar import CronGrid  # noqa: E402


def ensure_croniter() -> type:
    try:
        return importlib.import_module("croniter").croniter
    except ImportError:
        print("installing croniter (bench-only) with pip ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "croniter"],
                       check=True)
        return importlib.import_module("croniter").croniter


# (zone, expression, local start, how many, the expected fire times by Debian's rule)
CASES = [
    ("Europe/Berlin", "30 2 * * *", (2026, 3, 28, 12), 2,
     ["03-29 03:00+02", "03-30 02:30+02"], "daily 02:30, spring forward"),
    ("Europe/Berlin", "30 2 * * *", (2026, 10, 24, 12), 2,
     ["10-25 02:30+02", "10-26 02:30+01"], "daily 02:30, fall back"),
    ("Europe/Berlin", "30 * * * *", (2026, 10, 25, 1, 45), 3,
     ["10-25 02:30+02", "10-25 02:30+01", "10-25 03:30+01"], "hourly :30, fall back"),
    ("Europe/Berlin", "30 * * * *", (2026, 3, 29, 1, 45), 1,
     ["03-29 03:30+02"], "hourly :30, spring forward"),
    ("Australia/Lord_Howe", "15 2 * * *", (2026, 10, 3, 12), 2,
     ["10-04 02:30+11", "10-05 02:15+11"], "02:15, 30-min spring gap"),
    ("Australia/Lord_Howe", "45 1 * * *", (2026, 4, 4, 12), 2,
     ["04-05 01:45+11", "04-06 01:45+1030"], "01:45, 30-min fall back"),
    ("Australia/Adelaide", "30 2 * * *", (2026, 10, 3, 12), 1,
     ["10-04 03:00+1030"], "02:30, southern spring"),
    ("Europe/Berlin", "0 30 2 * * *", (2026, 10, 24, 12), 2,
     ["10-25 02:30+02", "10-26 02:30+01"], "six fields, fall back"),
]


def fmt(dt: datetime) -> str:
    off = dt.strftime("%z")
    off = off[:3] if off.endswith("00") else off
    return dt.strftime("%m-%d %H:%M") + off


def run_cronsim(zone: str, expr: str, start: datetime, n: int) -> list[str]:
    it = CronSim(expr, start)
    return [fmt(next(it)) for _ in range(n)]


def run_croniter(croniter: type, zone: str, expr: str, start: datetime, n: int) -> list[str]:
    it = croniter(expr, start, second_at_beginning=True)
    return [fmt(it.get_next(datetime)) for _ in range(n)]


def run_clerk(zone: str, expr: str, start: datetime, n: int) -> list[str]:
    g = CronGrid(expr, zone)
    out, t = [], int(start.timestamp())
    for _ in range(n):
        t = g.next_after(t)  # type: ignore[assignment]
        out.append(fmt(datetime.fromtimestamp(t, g.zone)))
    return out


def correctness(croniter: type) -> None:
    print("DST correctness against Debian cron / cronie's documented rule")
    print(f"{'case':<28} {'zone':<20} {'cronsim':>8} {'croniter':>9} {'clerk':>6}")
    score = {"cronsim": 0, "croniter": 0, "clerk": 0}
    notes = []
    for zone, expr, parts, n, expected, label in CASES:
        start = datetime(*parts, tzinfo=ZoneInfo(zone))  # type: ignore[misc]
        got = {"cronsim": run_cronsim(zone, expr, start, n),
               "croniter": run_croniter(croniter, zone, expr, start, n),
               "clerk": run_clerk(zone, expr, start, n)}
        marks = []
        for who, fires in got.items():
            ok = fires == expected
            score[who] += ok
            marks.append("ok" if ok else "WRONG")
            if not ok:
                notes.append(f"  {who} on {label!r} ({expr} {zone}): {fires}, "
                             f"expected {expected}")
        print(f"{label:<28} {zone:<20} {marks[0]:>8} {marks[1]:>9} {marks[2]:>6}")
    print(f"{'cases right':<49} {score['cronsim']:>8} {score['croniter']:>9} "
          f"{score['clerk']:>6}  (of {len(CASES)})")
    for line in notes:
        print(line)


def per_op(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call, best of three rounds."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def speed(croniter: type, n: int) -> None:
    print()
    print(f"Speed, microseconds per operation (best of 3 x {n}); ratio = croniter / cronsim")
    print(f"{'operation':<34} {'expression':<16} {'cronsim':>9} {'croniter':>9} {'ratio':>6}")
    zone = ZoneInfo("Europe/Berlin")
    base = datetime(2026, 10, 24, 12, tzinfo=zone)
    for expr in ("*/5 * * * *", "30 2 * * *", "0 9 * * MON-FRI", "* * * * * *"):
        cs_it = CronSim(expr, base)
        ci_it = croniter(expr, base, second_at_beginning=True)
        rows = [
            ("next fire time (iterator)", lambda cs=cs_it: next(cs),
             lambda ci=ci_it: ci.get_next(datetime)),
            ("cold next after t", lambda e=expr: next(CronSim(e, base)),
             lambda e=expr: croniter(e, base, second_at_beginning=True).get_next(datetime)),
            ("cold last before t", lambda e=expr: next(CronSim(e, base, reverse=True)),
             lambda e=expr: croniter(e, base, second_at_beginning=True).get_prev(datetime)),
        ]
        for label, a, b in rows:
            ta, tb = per_op(a, n), per_op(b, n)
            print(f"{label:<34} {expr:<16} {ta:>9.1f} {tb:>9.1f} {tb / ta:>6.2f}")
    print()
    print("Clerk's grid (on cronsim): slot_at on a clock moving 250 ms per call, cold slot_at")
    for expr in ("*/5 * * * *", "30 2 * * *", "* * * * * *"):
        g = CronGrid(expr, "Europe/Berlin")
        clock = [base.timestamp() * 1000]

        def moving(g: CronGrid = g, clock: list[float] = clock) -> int:
            clock[0] += 250
            return g.slot_at(clock[0])

        def cold(expr: str = expr) -> int:
            return CronGrid(expr, "Europe/Berlin").slot_at(base.timestamp() * 1000)

        print(f"  {expr:<16} moving {per_op(moving, n):>8.1f} us   "
              f"cold {per_op(cold, max(1, n // 10)):>8.1f} us")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="calls per timing round")
    args = p.parse_args()
    croniter = ensure_croniter()
    correctness(croniter)
    speed(croniter, args.n)


if __name__ == "__main__":
    main()
