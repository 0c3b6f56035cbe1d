"""tools/bench_mgrpath.py --parts: the child with its marked parts timed is the same program."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import bench_mgrpath  # type: ignore[import-not-found]  # noqa: E402

PARTS = {"RESULT decode", "result applied", "RESULT_ACKs", "rows into the log", "HEARTBEATs",
         "journal records", "scheduler ticks", "EXECUTE encode"}


def test_every_part_opens_and_closes_and_the_timed_child_compiles() -> None:
    child = bench_mgrpath.CHILD
    opened: list[str] = []
    names = set()
    for line in child.splitlines():
        code = line.strip()
        if code == "# </>":
            assert opened, "a part closed that was not opened"
            opened.pop()
        elif code.startswith("# <") and code.endswith(">"):
            assert not opened, f"part {code} opened inside {opened[-1]}"
            opened.append(code)
            names.add(code[3:-1])
    assert not opened
    assert names == PARTS
    timed = bench_mgrpath._timed_parts(child)
    compile(timed, "<timed child>", "exec")
    # Only lines added: the measured child's statements are all there, in order.
    kept = iter(timed.splitlines())
    assert all(any(line == t for t in kept) for line in child.splitlines()
               if not line.strip().startswith("# <") and line.strip() != "# </>")


def test_the_timed_child_runs_and_reports_every_part(tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    tree = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", bench_mgrpath._timed_parts(bench_mgrpath.CHILD),
                          str(tree), "300"], check=True, capture_output=True, text=True,
                         cwd=tree, env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=60)
    first, second = out.stdout.splitlines()
    us, digest = json.loads(first)
    parts = json.loads(second)
    assert set(parts) == PARTS
    assert all(v >= 0 for v in parts.values()) and sum(parts.values()) <= us * 1.5 + 50
