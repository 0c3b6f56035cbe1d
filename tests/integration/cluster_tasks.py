"""Task classes used by the cluster integration tests (imported by real node processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import clerk


class Counter(clerk.Task):
    """Counts its runs in its state and appends one line per run to ``args['log']`` (its start
    time last), flushed to the disk (``fsync``) before the run ends."""

    SYNC = True

    def init(self, args: Any) -> Any:
        return {"count": 0, "log": args["log"]}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        count = state["count"] + 1
        with open(state["log"], "a") as fh:
            fh.write(f"{run.task} {run.slot} {run.term} {run.node} {count} {time.time():.6f}\n")
            fh.flush()
            if self.SYNC:
                os.fsync(fh.fileno())
        return {**state, "count": count}


class QuickCounter(Counter):
    """A :class:`Counter` whose line is written, not flushed to the disk: a run takes
    microseconds, not an ``fsync`` (which a busy disk can hold for 0.6 s and more: the run is in
    flight for that long, and the overlap rule rightly skips the slots due meanwhile; the hostile
    test's one CI failure, a 0.79 s gap, has exactly that signature). For the
    tests that judge the node's timing by the gaps between runs: they must not time the disk.
    Other processes read the line at once all the same (the page cache); only a crash of the
    machine could lose it."""

    SYNC = False


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


def _append(path: str, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class OnlyOn:
    """Mixed into a task before its class: only the node named ``ONLY`` (its name before the
    ``@``) may run it (``nodes()`` filtering)."""

    ONLY = "n1"

    def nodes(self, members: list[str]) -> list[str]:
        return [m for m in members if m.startswith(self.ONLY + "@")]


class PinnedCounter(OnlyOn, Counter):
    """A Counter that only node ``n2`` may run (``nodes()`` filtering)."""

    ONLY = "n2"


class SlowCounterOnN1(OnlyOn, Counter):
    """A Counter that only node ``n1`` may run, and slowly: it appends ``start SLOT NODE`` to
    ``args['log']`` (ignored by ``counter_lines``), sleeps ``args['sleep']`` s, then counts."""

    def init(self, args: Any) -> Any:
        return {**super().init(args), "sleep": args["sleep"]}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        _append(state["log"], f"start {run.slot} {run.node}")
        time.sleep(state["sleep"])
        return super().execute(state)


class SlowCounterOnN2(SlowCounterOnN1):
    """:class:`SlowCounterOnN1` that only node ``n2`` may run."""

    ONLY = "n2"


class SlowCounterOnN3(SlowCounterOnN1):
    """:class:`SlowCounterOnN1` that only node ``n3`` may run."""

    ONLY = "n3"


class HeldCounterOnN1(OnlyOn, Counter):
    """A Counter that only node ``n1`` may run, each run held in flight while the test wants:
    it appends ``start SLOT NODE`` to ``args['log']`` (ignored by ``counter_lines``), then
    waits while the file ``args['hold']`` exists (looked for every 10 ms, ``args['max_s']`` s
    at most), then counts. Without the file a run counts at once; with it, a run stays in
    flight until the test removes it, at any load (a fixed sleep either wasted seconds on every
    run or, on a loaded machine, ended before the test's race was set up)."""

    def init(self, args: Any) -> Any:
        return {**super().init(args), "hold": args["hold"], "max_s": args["max_s"]}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        _append(state["log"], f"start {run.slot} {run.node}")
        hold, until = Path(state["hold"]), time.monotonic() + state["max_s"]
        while hold.exists() and time.monotonic() < until:
            time.sleep(0.01)
        return super().execute(state)


class HeldCounterOnN2(HeldCounterOnN1):
    """:class:`HeldCounterOnN1` that only node ``n2`` may run."""

    ONLY = "n2"


class Alternating(clerk.Task):
    """Fails on odd slots, counts on even ones; logs ``slot count-seen node`` per attempt."""

    def init(self, args: Any) -> Any:
        return {"count": 0, "log": args["log"]}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        _append(state["log"], f"{run.slot} {state['count']} {run.node}")
        if run.slot % 2:
            raise ValueError(f"boom at count {state['count']}")
        return {**state, "count": state["count"] + 1}


class SleepFirst(clerk.Task):
    """The first run starts a grandchild, writes both pids to ``args['pids']`` and sleeps far
    past any timeout; later runs append ``slot node`` to ``args['log']`` and return at once."""

    def init(self, args: Any) -> Any:
        return args

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        pids = Path(state["pids"])
        if not pids.exists():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            pids.write_text(f"{os.getpid()} {child.pid} {run.slot}\n")
            time.sleep(600)
        _append(state["log"], f"{run.slot} {run.node}")
        return state


class Slow(clerk.Task):
    """Logs ``start slot node`` and sleeps ``args['sleep']`` seconds per run."""

    def init(self, args: Any) -> Any:
        return args

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        _append(state["log"], f"start {run.slot} {run.node}")
        time.sleep(state["sleep"])
        return state


class Gated(clerk.Task):
    """Logs ``start slot node`` as a run begins and ``end slot node`` as it ends, which is once
    the file ``args['gate']`` exists (looked for every 10 ms, for ``args['max_s']`` s at most):
    a run that stays in flight for exactly as long as a test needs it to, at any load."""

    def init(self, args: Any) -> Any:
        return args

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        _append(state["log"], f"start {run.slot} {run.node}")
        gate, until = Path(state["gate"]), time.monotonic() + state["max_s"]
        while not gate.exists() and time.monotonic() < until:
            time.sleep(0.01)
        _append(state["log"], f"end {run.slot} {run.node}")
        return state


class SlowOnN1(OnlyOn, Slow):
    """A Slow task that only node ``n1`` may run."""


class Ledger(clerk.Task):
    """Counts its runs and appends ``slot term node count started due`` per run to
    ``args['log']`` (wall seconds): the ledger of the issue-9 fault tests."""

    def init(self, args: Any) -> Any:
        return {"count": 0, "log": args["log"]}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        count = state["count"] + 1
        _append(state["log"], f"{run.slot} {run.term} {run.node} {count} {time.time():.6f} "
                              f"{run.due.timestamp():.6f}")
        return {**state, "count": count}


class LedgerOnN1(OnlyOn, Ledger):
    """A :class:`Ledger` that only node ``n1`` may run: every slot of it goes to that node."""


class LedgerOnN2(LedgerOnN1):
    """A :class:`Ledger` that only node ``n2`` may run."""

    ONLY = "n2"


class LedgerOnN3(LedgerOnN1):
    """A :class:`Ledger` that only node ``n3`` may run."""

    ONLY = "n3"


class Nap(clerk.Task):
    """Sleeps ``state['s']`` seconds and returns its state. Its first state is its ``args``
    (a task loaded with ``args={"s": 0}`` is busy work that succeeds: without this ``init``,
    the default's None made every run fail with a TypeError)."""

    def init(self, args: Any) -> Any:
        return args

    def execute(self, state: Any) -> Any:
        time.sleep(state["s"])
        return state


def busy_naps(count: int = 8) -> list[clerk.TaskDef]:
    """``count`` no-op tasks every 100 ms (``busy0``...): a busy cluster beside the task
    under test."""
    return [clerk.task(Nap, name=f"busy{i}", interval=100, args={"s": 0}) for i in range(count)]


def per_node_tasks(tmp_path: Path, classes: Mapping[str, type[clerk.Task]], name: str,
                   files: tuple[str, ...], sleep: float, interval: int, timeout: int,
                   extra: Mapping[str, Any] | None = None,
                   ) -> tuple[dict[str, dict[str, Any]], list[clerk.TaskDef]]:
    """One task per node (``<name>-n1``...: each of the class ``classes`` gives that node,
    one only it may run), its args a path ``<file>-<node>`` in ``tmp_path`` for each of
    ``files``, ``sleep`` and ``extra``: (the args by node, the tasks)."""
    args = {n: {**{key: str(tmp_path / f"{key}-{n}") for key in files}, "sleep": sleep,
                **(extra or {})}
            for n in classes}
    return args, [clerk.task(cls, name=f"{name}-{n}", interval=interval, timeout=timeout,
                             args=args[n]) for n, cls in classes.items()]


class OnTime(clerk.Task):
    """Reads the wall clock first thing, then appends ``slot node started due`` to
    ``args['log']`` (wall seconds): a run's start against its due time, as a user sees it."""

    def init(self, args: Any) -> Any:
        return {"log": args["log"]}

    def execute(self, state: Any) -> Any:
        started = time.time()
        run = clerk.current_run()
        _append(state["log"], f"{run.slot} {run.node} {started:.6f} {run.due.timestamp():.6f}")
        return state


class StampStart(clerk.Task):
    """Returns when it started (wall s) and its due time: for executor tests."""

    def execute(self, state: Any) -> Any:
        started = time.time()
        return {"start": started, "due": clerk.current_run().due.timestamp()}


class SuddenlyLongOnN1(OnlyOn, clerk.Task):
    """A counter that only node ``n1`` may run, in a millisecond, until the file
    ``args['long']`` exists: the first run that finds it removes it, SIGKILLs the pids listed
    in ``args['kill']`` (the manager's: a crash right after this run's dispatch) and runs
    ``args['sleep']`` s. Appends ``slot term node count started ended`` per run to
    ``args['log']`` (wall seconds) as it ends."""

    def init(self, args: Any) -> Any:
        return {**args, "count": 0}

    def execute(self, state: Any) -> Any:
        started = time.time()
        run = clerk.current_run()
        try:
            os.unlink(state["long"])
        except FileNotFoundError:
            pass
        else:
            self.strike(state)
            time.sleep(state["sleep"])
        count = state["count"] + 1
        _append(state["log"], f"{run.slot} {run.term} {run.node} {count} {started:.6f} "
                              f"{time.time():.6f}")
        return {**state, "count": count}

    def strike(self, state: Any) -> None:
        """What the first run that finds ``args['long']`` does before its long sleep: kill
        the manager's pids (a subclass may do something else to the manager)."""
        for pid in Path(state["kill"]).read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        self.killed()

    def killed(self) -> None:
        """Right after the manager's pids were killed, before the long sleep."""


class SuddenlyLongOnN2(SuddenlyLongOnN1):
    ONLY = "n2"


class SuddenlyLongOnN3(SuddenlyLongOnN1):
    ONLY = "n3"


class LeavesMidRunOnN1(SuddenlyLongOnN1):
    """As :class:`SuddenlyLongOnN1`, and the run that kills the manager then asks its own
    node to leave (SIGTERM to its agent, this worker's parent: the node leaves gracefully
    while this run is in flight and no manager is elected yet) before it sleeps."""

    def killed(self) -> None:
        os.kill(os.getppid(), signal.SIGTERM)


class LeavesMidRunOnN2(LeavesMidRunOnN1):
    ONLY = "n2"


class LeavesMidRunOnN3(LeavesMidRunOnN1):
    ONLY = "n3"


class CountsNodesCalls(Counter):
    """A Counter whose ``nodes()`` appends a line to the file named by the environment
    variable ``CLERK_TEST_NODES_LOG`` per call (on the manager) and allows every member."""

    def nodes(self, members: list[str]) -> list[str]:
        _append(os.environ["CLERK_TEST_NODES_LOG"], " ".join(sorted(members)))
        return members


class MalformedDone(clerk.Task):
    """Its worker answers this run with ``state['body']`` (a str) as the DONE's body instead
    of its reply, once (the worker's next run answers as usual): a worker whose reply the
    agent cannot read. The worker itself then waits for its next run, as after any DONE."""

    def execute(self, state: Any) -> Any:
        import clerk._worker as worker

        real = worker.done_body

        def once(reply: dict[str, Any], state_json: str | None, array: bool = True) -> bytes:
            worker.done_body = real
            return str(state["body"]).encode()

        worker.done_body = once
        return state


class LeavesThenKillsOnN1(SuddenlyLongOnN1):
    """As :class:`SuddenlyLongOnN1`, but the run that finds ``args['long']`` first asks its
    own node to leave (SIGTERM to its agent, this worker's parent: its LEAVE reaches the live
    manager, which removes it and replicates that), then after ``args['gap']`` s kills the
    manager's pids, then sleeps: the manager dies after the LEAVE, before the result."""

    def strike(self, state: Any) -> None:
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(state["gap"])
        super().strike(state)


class LeavesThenKillsOnN2(LeavesThenKillsOnN1):
    ONLY = "n2"


class LeavesThenKillsOnN3(LeavesThenKillsOnN1):
    ONLY = "n3"


class LeavesOnN1(SuddenlyLongOnN1):
    """As :class:`SuddenlyLongOnN1`, but the run that finds ``args['long']`` asks its own node
    to leave (SIGTERM to its agent, this worker's parent) instead of killing anything, then
    sleeps: its node leaves with the run going, and stops it after ``LEAVE_WAIT`` (no result)."""

    def strike(self, state: Any) -> None:
        os.kill(os.getppid(), signal.SIGTERM)


class LeavesOnN2(LeavesOnN1):
    ONLY = "n2"


class LeavesOnN3(LeavesOnN1):
    ONLY = "n3"


class OnTimeOnN2(OnlyOn, OnTime):
    """OnTime that only node ``n2`` may run (tests/integration/test_clock_skew.py)."""

    ONLY = "n2"


class Poison(clerk.Task):
    """Every run ends its worker process at once (``os._exit(1)``), as a segfault or the
    kernel's OOM killer would: a *poison* task."""

    def execute(self, state: Any) -> Any:
        os._exit(1)


class NotFinite(clerk.Task):
    """Counts its runs; from its third on, returns ``args['bad']`` (a float that is not
    finite, ``nan`` or ``inf``) in the ``count`` field of its state, which JSON cannot carry."""

    def init(self, args: Any) -> Any:
        return {"count": 0, "bad": args["bad"]}

    def execute(self, state: Any) -> Any:
        count = state["count"] + 1
        return {**state, "count": float(state["bad"]) if count >= 3 else count}
