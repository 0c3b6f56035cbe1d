#!/usr/bin/env python3
"""The decode of a packed whole table (``clerk._record.unpack_table``): ``json.loads`` (what it
was) against the finite-only decoder it reads with now (``clerk._finitejson``).

    .venv/bin/python tools/bench_unpack_table.py [--tasks 1000] [--repeats 31]

The table is one a manager that ran for a while leaves (``old_table`` of
tests/unit/test_activate_sliced.py: states, runs in flight, paused tasks), packed as a
hand-over sends it. Medians of ``time.thread_time`` over interleaved repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clerk._record import _STRICT, pack_table  # noqa: E402
from tests.unit.test_activate_sliced import defs_for, old_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    table = old_table(defs_for(args.tasks, 3), 3, 1_700_000_000.0)
    text = "".join(pack_table(table)["chunks"])
    loads: list[float] = []
    strict: list[float] = []
    for _ in range(args.repeats):
        t = time.thread_time()
        json.loads(text)
        loads.append(time.thread_time() - t)
        t = time.thread_time()
        _STRICT(text)
        strict.append(time.thread_time() - t)
    a, b = statistics.median(loads) * 1e3, statistics.median(strict) * 1e3
    print(f"{args.tasks} tasks, {len(text)} characters: json.loads {a:.2f} ms, "
          f"finite-only {b:.2f} ms ({(b / a - 1) * 100:+.0f} %)")


if __name__ == "__main__":
    main()
