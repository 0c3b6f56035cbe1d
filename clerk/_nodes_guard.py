"""``Task.nodes()`` on the manager, with a time budget: user code never stalls the loop.

Rules:

* ``nodes(members)`` is user code that runs on the manager before each run. The manager's
  loop waits for it at most :data:`NODES_BUDGET_S` (20 ms); the call itself runs on a helper
  thread (a small pool), so a slow one cannot hold up heartbeats, elections or other tasks.
* Past the budget, the run goes to any live member that has the task (as if ``nodes()`` had
  returned them all), with a warning (at most one per task every :data:`WARN_EVERY_S`) and a
  counter per task (``nodes_overruns`` in ``clerk status``).
* While a task's earlier ``nodes()`` call is still running, the next one does not start a
  second: it takes the fallback at once, and counts. A ``nodes()`` that hangs costs one
  thread, not one per slot.
* A ``nodes()`` that raises is an error of that run: the exception goes to the scheduler,
  which records the run as an error with the exception's text.
* A task that does not override ``nodes()`` costs nothing: no thread, no wait.
* **Asked ahead** (a task of an ``interval`` up to :data:`AHEAD_MAX_S`): as soon as a run's
  answer is in, the call for the task's *next* run starts on a helper thread, with the same
  members (once the loop has sent this turn's dispatches: :meth:`NodesGuard.ask_ahead`, so the
  helper does not compete with them for the interpreter), so that the next dispatch finds its
  answer ready instead of waiting for a thread hand-off (two thread wake-ups: ~0.1-0.5 ms on a
  loaded machine, several ms at load 20+). That answer is used only if the members are the same
  and it was asked at most :data:`AHEAD_STALE_S` before; otherwise ``nodes()`` is asked again,
  as above. Each run still gets one ``nodes()`` answer of its own, asked at most one interval
  (plus a late tick) before its dispatch; a slow one ahead is an overrun of the run it was asked
  for, as above.
* A task the manager has not loaded itself (a rolling deploy, see clerk._deploy) has its class
  imported here, once per target; if the manager cannot import it (the new code is not on this
  node yet), the run goes to any live member that has the task, and status says why
  (``nodes_unavailable``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import Counter
from collections.abc import Callable

from clerk._errors import ConfigError
from clerk._tasks import Task, TaskDef, load_task_class

__all__ = ["AHEAD_MAX_S", "AHEAD_STALE_S", "NODES_BUDGET_S", "NodesGuard"]

log = logging.getLogger("clerk.tasks")

#: The longest the manager's loop waits for one ``nodes()`` call. The loop heartbeats every
#: 100 ms and followers suspect a silent manager after 700 ms (clerk._timings); 20 ms per call
#: keeps even several due tasks at once far from that, and is ample for the quick,
#: side-effect-free filter ``nodes()`` is documented to be (a dict lookup takes microseconds).
NODES_BUDGET_S = 0.020
#: Overrun warnings per task at most this often (a hanging nodes() must not flood the log).
WARN_EVERY_S = 10.0
#: Helper threads for nodes() calls: a few hung calls must not leave the others waiting.
POOL_THREADS = 4
#: Tasks of an interval up to this have nodes() asked ahead, for their next run. A second: the
#: hand-off matters against short intervals, and an answer asked ahead is at most that old.
AHEAD_MAX_S = 1.0
#: An answer asked ahead is used up to this long after it was asked: one interval of the
#: longest task it applies to, plus as much again for a late tick (a stalled loop, a pause).
AHEAD_STALE_S = 2 * AHEAD_MAX_S


class NodesGuard:
    """Calls ``nodes()`` of each task class within the budget (see the module docstring)."""

    def __init__(self, classes: dict[str, type[Task]], budget_s: float = NODES_BUDGET_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.classes = classes
        self.budget_s = budget_s
        self._clock = clock  # monotonic seconds (injected by tests)
        self.overruns: Counter[str] = Counter()
        self.unavailable: dict[str, str] = {}  # task -> why its nodes() cannot be asked here
        self._imported: dict[str, type[Task] | None] = {}  # by target, for others' tasks
        self._pending: dict[str, concurrent.futures.Future[list[str]]] = {}
        #: Calls asked ahead, by task: (the members asked, when (monotonic), the call).
        self._ahead: dict[str, tuple[tuple[str, ...], float,
                                     concurrent.futures.Future[list[str]]]] = {}
        self._to_ask: dict[str, tuple[TaskDef, type[Task], list[str]]] = {}  # see ask_ahead
        self._warned: dict[str, float] = {}
        self._keeps: dict[str, tuple[TaskDef, bool]] = {}  # see keeps
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def keeps(self, d: TaskDef) -> bool:
        """Whether this gives ``d`` the members as it is asked with them (its class has no
        ``nodes()`` of its own, or cannot be loaded here): a dispatch then need not ask
        (``clerk._running``). Remembered per definition (its class, by target)."""
        got = self._keeps.get(d.name)
        if got is not None and got[0] is d:
            return got[1]
        cls = self._class_for(d)
        keeps = cls is None or cls.nodes is Task.nodes
        self._keeps[d.name] = (d, keeps)
        return keeps

    def __call__(self, d: TaskDef, members: list[str]) -> list[str]:
        cls = self._class_for(d)
        if cls is None or cls.nodes is Task.nodes:
            return list(members)
        asked = tuple(members)
        future: concurrent.futures.Future[list[str]] | None = None
        ahead = self._ahead.pop(d.name, None)
        if ahead is not None and ahead[0] == asked and (
                self._clock() - ahead[1] <= AHEAD_STALE_S):
            future = ahead[2]  # this run's call, asked ahead
        else:
            earlier = self._pending.get(d.name)
            if earlier is not None and not earlier.done():
                return self._overrun(d, members, "its previous nodes() call is still running")
            future = self._submit(d, cls, members)
        try:
            chosen = future.result(timeout=self.budget_s)
        except concurrent.futures.TimeoutError:
            return self._overrun(d, members, f"nodes() took over {self.budget_s * 1000:.0f} ms")
        self._pending.pop(d.name, None)
        if d.interval is not None and d.interval <= AHEAD_MAX_S * 1000:
            self._to_ask[d.name] = (d, cls, list(members))
        return chosen  # (an exception of nodes() propagates: an error of this run)

    def ask_ahead(self) -> None:
        """Start the calls for the next runs of the tasks answered since the last time (the
        loop calls this once its dispatches are sent)."""
        to_ask, self._to_ask = self._to_ask, {}
        for name, (d, cls, members) in to_ask.items():
            earlier = self._pending.get(name)
            if earlier is not None and not earlier.done():
                continue  # (an overrun's call still running: the next run asks, as above)
            self._ahead[name] = (tuple(members), self._clock(), self._submit(d, cls, members))

    def _submit(self, d: TaskDef, cls: type[Task],
                members: list[str]) -> concurrent.futures.Future[list[str]]:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                POOL_THREADS, thread_name_prefix="clerk nodes()")
        future = self._pool.submit(_call_nodes, cls, list(members))
        self._pending[d.name] = future
        return future

    def _class_for(self, d: TaskDef) -> type[Task] | None:
        cls = self.classes.get(d.name)
        if cls is not None and f"{cls.__module__}:{cls.__qualname__}" == d.target:
            return cls
        if d.target not in self._imported:
            try:
                self._imported[d.target] = load_task_class(d.target, name=d.name)
                self.unavailable.pop(d.name, None)
            except ConfigError as exc:
                self._imported[d.target] = None
                self.unavailable[d.name] = (f"{exc.problem}; its runs go to any live member "
                                            "that has it")
                log.warning("task=%s: nodes() cannot be asked on this manager (%s)", d.name,
                            self.unavailable[d.name], extra={"task": d.name})
        return self._imported[d.target]

    def _overrun(self, d: TaskDef, members: list[str], why: str) -> list[str]:
        self.overruns[d.name] += 1
        now = time.monotonic()
        if now - self._warned.get(d.name, -1e9) >= WARN_EVERY_S:
            self._warned[d.name] = now
            log.warning("task=%s %s: this run goes to any member that has the task "
                        "(%d such run(s) so far; nodes() must be quick)", d.name, why,
                        self.overruns[d.name], extra={"task": d.name})
        return list(members)

    def close(self) -> None:
        self._ahead.clear()
        self._to_ask.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _call_nodes(cls: type[Task], members: list[str]) -> list[str]:
    return [str(n) for n in cls().nodes(list(members))]
