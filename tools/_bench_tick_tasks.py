"""Task classes for tools/bench_tick.py (imported by the benchmark's worker process)."""

from __future__ import annotations

import time
from typing import Any

import clerk


class Hold(clerk.Task):
    """Runs until its worker is killed: a run in flight that never ends by itself."""

    def execute(self, state: Any) -> Any:
        time.sleep(10**6)
        return state
