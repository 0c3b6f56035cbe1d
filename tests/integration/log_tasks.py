"""Tasks for the logging and user-code tests: they log, warn, await, sleep in nodes()..."""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from typing import Any

import clerk

log = logging.getLogger("tests.integration.log_tasks")


class Chatty(clerk.Task):
    """Logs one INFO line per run under its own logger, and warns every other run."""

    def init(self, args: Any) -> int:
        return 0

    def execute(self, state: int) -> int:
        log.info("tally %d", state)
        if state % 2:
            warnings.warn(f"odd tally {state}", stacklevel=1)
        return state + 1


class AsyncCount(clerk.Task):
    """``async def`` init and execute, awaiting inside the run."""

    async def init(self, args: Any) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"n": 0}

    async def execute(self, state: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.01)
        log.info("async tally %d", state["n"])
        return {"n": state["n"] + 1}


class AsyncHang(clerk.Task):
    """Awaits forever: only the timeout's kill ends it."""

    async def execute(self, state: Any) -> Any:
        await asyncio.sleep(3600)
        return state


class BadState(clerk.Task):
    """Returns a state JSON would change: a tuple and an int key."""

    def execute(self, state: Any) -> Any:
        return {"ok": [1], "t": (1, 2)}


class SlowNodes(clerk.Task):
    """``nodes()`` takes 2 s (on the manager): must not stall the cluster."""

    def nodes(self, members: list[str]) -> list[str]:
        time.sleep(2)
        return members

    def execute(self, state: Any) -> int:
        return (state or 0) + 1


class RaisingNodes(clerk.Task):
    """``nodes()`` raises: every run is an error of that run."""

    def nodes(self, members: list[str]) -> list[str]:
        raise LookupError("no rack map")

    def execute(self, state: Any) -> int:
        return (state or 0) + 1
