"""How many random examples the simulator property tests draw: ``CLERK_SIM_DEPTH``.

``quick`` (the default: ``tools/test``, CI) draws about a third of the examples the tests were
written with (:data:`QUICK_SHARE`; never fewer than :data:`QUICK_MIN`), and runs the first third
of a list of random schedule seeds; ``deep`` draws them all. Every pinned case runs in both:
hypothesis ``@example``\\ s (the explicit phase is not counted in ``max_examples``), seed lists
of schedules that once failed (``FOUND``-style tables), single-seed regression tests. Run the
deep version before a change to the cores, the scheduler or the simulator lands, e.g.
``CLERK_SIM_DEPTH=deep tools/test tests/unit/test_sim_*.py tests/unit/test_quorum_sim.py``.

Why a third: the random draws beyond those were most of the suite's test time (the
simulations ~780 of ~2,210 s in ``tests/durations.txt`` at 3462258) while each bug they found
became a pinned case that runs every time; ``deep`` keeps the full search a command away.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["DEEP", "QUICK_MIN", "QUICK_SHARE", "depth", "examples", "seeds"]

QUICK_SHARE = 1 / 3
QUICK_MIN = 4
_DEPTHS = ("quick", "deep")

T = TypeVar("T")


def depth(environ: dict[str, str] | None = None) -> str:
    """``CLERK_SIM_DEPTH`` (``quick`` when unset or empty); anything else is an error."""
    env = os.environ if environ is None else environ
    value = env.get("CLERK_SIM_DEPTH", "").strip().lower() or "quick"
    if value not in _DEPTHS:
        raise ValueError(f"CLERK_SIM_DEPTH={env.get('CLERK_SIM_DEPTH')!r} (environment): "
                         f"expected one of {', '.join(_DEPTHS)}")
    return value


DEEP = depth() == "deep"


def examples(deep: int) -> int:
    """``max_examples`` for a property test written with ``deep`` examples."""
    if DEEP:
        return deep
    return min(deep, max(QUICK_MIN, math.ceil(deep * QUICK_SHARE)))


def seeds(deep: Sequence[T]) -> Sequence[T]:
    """The random schedule seeds to run of ``deep`` (a ``range`` or list): all of them when
    deep, the first :func:`examples` of them otherwise."""
    return deep if DEEP else deep[:examples(len(deep))]
