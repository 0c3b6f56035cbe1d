"""Example tasks, used by ``tools/demo`` and the README's quick start.

::

    [[task]]
    task = "clerk.examples:Tally"
    interval = 1000
    args = { start = 0 }
"""

from __future__ import annotations

import logging
from typing import Any

from clerk._tasks import Task, current_run

__all__ = ["Tally"]

log = logging.getLogger("clerk.examples")


class Tally(Task):
    """Counts its runs across the whole cluster: the count lives in the task's state, so it
    survives the manager's death and carries on from node to node."""

    def init(self, args: Any) -> Any:
        start = args.get("start", 0) if isinstance(args, dict) else 0
        return {"count": start, "nodes": {}}

    def execute(self, state: Any) -> Any:
        run = current_run()
        nodes = dict(state.get("nodes", {}))
        nodes[run.node] = nodes.get(run.node, 0) + 1
        count = state["count"] + 1
        log.info("tally %d (slot %d, term %d) on %s", count, run.slot, run.term, run.node)
        return {"count": count, "nodes": nodes}
