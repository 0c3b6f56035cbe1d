"""Two trees' in-process measurement, in interleaved turns (``bench_sched``, ``bench_mgrpath``).

Each repeat runs ``one(tree, runs)`` for this tree and for the other, the order alternating
repeat by repeat (a loaded machine's drift then falls on both alike); ``one`` returns the µs of
CPU per run and a digest of what the tree computed, which must be the same for both trees and
every repeat (the two do the same work, or the comparison means nothing).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

__all__ = ["interleaved", "print_pair"]


def interleaved(one: Callable[[Path, int], tuple[float, str]], here: Path, there: Path,
                repeats: int, runs: int) -> tuple[float, float, bool]:
    """Medians of this tree's and the other's µs per run, and whether every digest matched."""
    got: dict[str, list[float]] = {"this tree": [], "against": []}
    digests: dict[str, set[str]] = {"this tree": set(), "against": set()}
    for rep in range(repeats):
        pair = (("this tree", here), ("against", there))
        for label, tree in pair if rep % 2 == 0 else pair[::-1]:
            us, digest = one(tree, runs)
            got[label].append(us)
            digests[label].add(digest)
    same = digests["this tree"] == digests["against"] and len(digests["against"]) == 1
    return statistics.median(got["this tree"]), statistics.median(got["against"]), same


def print_pair(this: float, against: float) -> None:
    print(f"{'against':<10} | {against:8.2f}")
    print(f"{'this tree':<10} | {this:8.2f} | {this / against:.2f}x")
