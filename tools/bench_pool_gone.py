#!/usr/bin/env python3
"""How long a node is without workers once its worker supervisor gives up.

    .venv/bin/python tools/bench_pool_gone.py               # 5 trials
    .venv/bin/python tools/bench_pool_gone.py --trials 9

Each trial runs a ``LocalCluster`` of 2 real nodes with a Counter task every 100 ms, SIGKILLs a
member's task workers as they come up until its worker supervisor gives up (more than
``max(10, 5 * workers)`` restarts in 60 s), and reads from that node's log (its records'
timestamps, one clock) the time from the agent's ERROR (``cannot run tasks any more``) to:

* **agent exit**: the node's supervisor sees the agent exit with 1 (it left the cluster first);
* **fresh pool ready**: the restarted agent's workers are ready (it is eligible for runs).

Prints a markdown table of the median, min and max over the trials (ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clerk  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402
from tests.integration.cluster_tasks import Counter  # noqa: E402
from tests.integration.task_helpers import all_eligible  # noqa: E402
from tests.integration.test_worker_pool_gone import _agent, _kill_workers  # noqa: E402


def _ts(line: str) -> float:
    stamp = datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
    return stamp.replace(tzinfo=UTC).timestamp()


def trial() -> tuple[float, float]:
    """(give-up to agent exit, give-up to fresh pool ready), in seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-pool-gone-") as scratch:
        return _trial(Path(scratch) / "log")


def _trial(log: Path) -> tuple[float, float]:
    t = clerk.task(Counter, name="c", interval=100, args={"log": str(log)})
    with LocalCluster(2, tasks=[t]) as cluster:
        manager = all_eligible(cluster, "c", timeout=30)
        victim = next(n for n in cluster.names if n != manager)
        agent = wait_until(lambda: _agent(cluster, victim), timeout=10)
        assert agent is not None
        killed: set[int] = set()

        def changed() -> bool:
            now = _agent(cluster, victim)
            if now is not None and now.pid != agent.pid:
                return True
            _kill_workers(agent, killed)
            return False

        wait_until(changed, timeout=60, interval=0.01)

        def figures() -> tuple[float, float] | None:
            lines = cluster.log(victim).splitlines()
            gave = [x for x in lines if "cannot run tasks any more" in x]
            if not gave:
                return None
            t0 = _ts(gave[0])
            exits = [x for x in lines if "exited: exit code 1" in x]
            ready = [x for x in lines if "workers ready" in x and _ts(x) > t0]
            return (_ts(exits[0]) - t0, _ts(ready[0]) - t0) if exits and ready else None

        result = wait_until(figures, timeout=30)
        assert result is not None
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    rows: list[tuple[float, float]] = []
    for i in range(args.trials):
        rows.append(trial())
        print(f"trial {i}: agent exit {rows[-1][0] * 1000:.0f} ms, fresh pool ready "
              f"{rows[-1][1] * 1000:.0f} ms", file=sys.stderr)
    print("| from the give-up to | median ms | min | max |")
    print("|---|---|---|---|")
    for k, label in enumerate(("agent exit", "fresh pool ready")):
        ms = [r[k] * 1000 for r in rows]
        print(f"| {label} | {statistics.median(ms):.0f} | {min(ms):.0f} | {max(ms):.0f} |")


if __name__ == "__main__":
    main()
