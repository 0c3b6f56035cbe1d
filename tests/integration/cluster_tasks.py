"""Task classes used by the cluster integration tests (imported by real node processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import clerk


class Counter(clerk.Task):
    """Counts its runs in its state and appends one line per run to ``args['log']``."""

    def init(self, args: Any) -> Any:
        return {"count": 0, "log": args["log"]}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        count = state["count"] + 1
        with open(state["log"], "a") as fh:
            fh.write(f"{run.task} {run.slot} {run.term} {run.node} {count} {time.time():.6f}\n")
            fh.flush()
            os.fsync(fh.fileno())
        return {**state, "count": count}


class Sleeper(clerk.Task):
    """Starts a grandchild, writes both pids, then sleeps far past any timeout."""

    def init(self, args: Any) -> Any:
        return args

    def execute(self, state: Any) -> Any:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path(state["pids"]).write_text(f"{os.getpid()} {child.pid}\n")
        time.sleep(600)
        return state


class Failing(clerk.Task):
    def init(self, args: Any) -> Any:
        return {"kept": 1}

    def execute(self, state: Any) -> Any:
        raise ValueError(f"boom with state {state}")
