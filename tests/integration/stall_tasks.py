"""A task module that, imported by a node's agent process, lets a test stall that agent's loop
once, at the end of a turn (after it read its mailbox): ``stall(dir, name, seconds)`` writes
the request, the agent (of node ``name``) takes it at its next turn's end and sleeps. The hook
is installed only when ``CLERK_TEST_STALL_DIR`` is set (by the test, for its cluster)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import clerk

STALL_DIR = "CLERK_TEST_STALL_DIR"


class Idle(clerk.Task):
    """Does nothing: its module is what the test needs loaded in the agent."""

    def init(self, args: Any) -> Any:
        return {}

    def execute(self, state: Any) -> Any:
        return state


def stall(directory: Path, name: str, seconds: float) -> Path:
    """Ask the agent of node ``name`` to stall its loop for ``seconds`` once; the request's
    file (gone once taken)."""
    path = directory / f"stall-{name}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(seconds))
    tmp.rename(path)
    return path


def _install(directory: str) -> None:
    from clerk._runner import TaskRunner

    persist = TaskRunner.persist

    def stalling_persist(self: TaskRunner, now: float, final: bool = False) -> None:
        persist(self, now, final)
        path = Path(directory) / f"stall-{self.agent.me.name}"
        try:
            seconds = float(path.read_text())
            path.unlink()
        except (FileNotFoundError, ValueError):
            return
        time.sleep(seconds)  # the loop's turn runs long: a loaded machine, a big table

    TaskRunner.persist = stalling_persist  # type: ignore[method-assign, assignment]


if os.environ.get(STALL_DIR):
    _install(os.environ[STALL_DIR])
