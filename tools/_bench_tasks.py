"""Task classes for tools/bench_tasks.py (imported by the benchmark's node processes)."""

from __future__ import annotations

import os
import time
from typing import Any, TextIO

import clerk

_files: dict[str, TextIO] = {}


class Noop(clerk.Task):
    """Does nothing (the benchmark's manager, n1, does not load it, so every run crosses the
    network: manager -> node -> worker -> back)."""

    def execute(self, state: Any) -> Any:
        return state


class PickyNoop(Noop):
    """A no-op with a ``nodes()`` filter (never n1), which the manager calls on a helper
    thread before each run (clerk._nodes_guard): what that hand-off adds."""

    def nodes(self, members: list[str]) -> list[str]:
        return [m for m in members if not m.startswith("n1@")]


class Stamp(clerk.Task):
    """Appends ``task slot start-time due-time`` to ``<args['dir']>/<pid>.log`` (one file per
    worker): its lateness as a user can see it, ``clerk.current_run().due``."""

    def init(self, args: Any) -> Any:
        return args

    def execute(self, state: Any) -> Any:
        started = time.time()
        run = clerk.current_run()
        path = f"{state['dir']}/{os.getpid()}.log"
        fh = _files.get(path)
        if fh is None:
            fh = _files[path] = open(path, "a")  # noqa: SIM115 (kept open across runs)
        fh.write(f"{run.task} {run.slot} {started:.6f} {run.due.timestamp():.6f}\n")
        fh.flush()
        return state
