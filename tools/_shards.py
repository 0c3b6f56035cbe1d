#!/usr/bin/env python3
"""Split test files into balanced shards for ``tools/test``'s parallel pytest runs.

    python3 tools/_shards.py --shard 1 --of 2 [--head SECONDS] FILE...
    python3 tools/_shards.py --from-durations LOG > tests/durations.txt

Each file weighs what ``tests/durations.txt`` says it took (seconds, from a clean-clone CI
run's ``--durations=0``; a file not listed: ``DEFAULT_S``). The files go, heaviest first, to the
lightest shard so far (longest processing time first); shard 0 starts with ``--head`` seconds
of other work (the unit tests the foreground run has besides). Prints the files of shard
``--shard``, one a line, in their given order. Deterministic: the same files and weights give
the same shards. Alternating by name instead (as before) moved a third of the files to the
other shard whenever one file was added, and left the shards 1.5-1.8x apart.

``--from-durations LOG`` prints the weights file from a pytest log: every
``<seconds>s call|setup|teardown <file>::<test>`` line summed per file.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

#: Seconds a file not in the weights file counts for (a new file: about a median one's).
DEFAULT_S = 10.0
WEIGHTS = Path(__file__).resolve().parent.parent / "tests" / "durations.txt"
_LINE = re.compile(r"\s*([\d.]+)s (?:call|setup|teardown)\s+(tests/[^:\s]+)::")


def weights(path: Path = WEIGHTS) -> dict[str, float]:
    """The weights file's seconds per file (none if it is missing: every file ``DEFAULT_S``)."""
    out: dict[str, float] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return out
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        seconds, _, name = line.partition(" ")
        try:
            out[name.strip()] = float(seconds)
        except ValueError:
            raise SystemExit(f"{path}:{n}: not '<seconds> <file>': {line!r}") from None
    return out


def shards(files: list[str], count: int, head: float, weight: dict[str, float]) -> list[list[str]]:
    """``files`` in ``count`` shards of about equal weight (shard 0 starting at ``head``), each
    in the files' given order."""
    load = [head] + [0.0] * (count - 1)
    where: dict[str, int] = {}
    for name in sorted(files, key=lambda f: (-weight.get(f, DEFAULT_S), f)):
        i = min(range(count), key=lambda k: (load[k], k))
        where[name] = i
        load[i] += weight.get(name, DEFAULT_S)
    return [[f for f in files if where[f] == i] for i in range(count)]


def from_durations(log: str) -> str:
    total: defaultdict[str, float] = defaultdict(float)
    for line in log.splitlines():
        m = _LINE.match(line)
        if m:
            total[m.group(2)] += float(m.group(1))
    rows = [f"{total[name]:.1f} {name}" for name in sorted(total)]
    return "\n".join(["# Seconds each test file took (tools/_shards.py --from-durations).",
                      *rows]) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--of", type=int, default=2)
    ap.add_argument("--head", type=float, default=0.0)
    ap.add_argument("--from-durations", metavar="LOG")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args(argv)
    if args.from_durations:
        sys.stdout.write(from_durations(Path(args.from_durations).read_text()))
        return 0
    if not 0 <= args.shard < args.of:
        ap.error(f"--shard must be in 0..{args.of - 1}")
    for name in shards(args.files, args.of, args.head, weights())[args.shard]:
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
