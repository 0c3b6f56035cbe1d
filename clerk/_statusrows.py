"""The task layer's part of a node's status: a row per task and the layer's counters, built in
slices (:mod:`clerk._statusjob`: the rules, among them how every row ends up of one moment).
Mixed into :class:`clerk._runner.TaskRunner`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from clerk._gcpolicy import current as gc_policy
from clerk._statusjob import STATUS_PASSES, Slice, Steps, run

if TYPE_CHECKING:
    from clerk._executor import Executor
    from clerk._host import Host
    from clerk._nodes_guard import NodesGuard
    from clerk._outbox import Outbox
    from clerk._resultacks import PendingAcks
    from clerk._schedule import Scheduler
    from clerk._store import Store
    from clerk._tasks import TaskDef

__all__ = ["StatusRows"]


class StatusRows:
    """The task layer's status (see the module docstring)."""

    if TYPE_CHECKING:  # provided by clerk._runner.TaskRunner
        agent: Host
        scheduler: Scheduler
        nodes_guard: NodesGuard
        defs: dict[str, TaskDef]
        _variants: dict[str, Any]
        _activate: Any
        stale: int
        outbox: Outbox
        _acks: PendingAcks
        executor: Executor | None
        store: Store | None

        def _follow_steps(self, sl: Slice | None) -> Iterator[None]: ...
        def _resolve(self, wall: float, deadline: float = ..., adopt: bool = ...) -> bool: ...
        def quorum_status(self) -> dict[str, Any] | None: ...

    def add_status(self, st: dict[str, Any]) -> None:
        """Add the task layer's part to ``st``, in one go."""
        steps = self.status_steps(st, Slice())
        run(_returning(steps, st))

    def _status_row(self, name: str, wall: float) -> dict[str, Any]:
        row = self.scheduler.status_row(name, wall)
        row["nodes_overruns"] = self.nodes_guard.overruns.get(name, 0)
        row["loaded_here"] = name in self.defs
        if name in self._variants:
            row["definitions"] = self._variants[name]  # members disagree (clerk._deploy)
        if name in self.nodes_guard.unavailable:
            row["nodes_unavailable"] = self.nodes_guard.unavailable[name]
        return row

    def status_steps(self, st: dict[str, Any], sl: Slice) -> Iterator[None]:
        """Add the task layer's part to ``st``, yielding whenever ``sl`` is over."""
        wall = self.agent.clock.wall()
        sched = self.scheduler
        watch: set[str] = set()
        sched.dirty.watchers.append(watch)
        try:
            if self._activate is None:
                yield from self._follow_steps(sl)  # a follower: the rows changed since
                while not self._resolve(wall, sl.deadline):
                    yield
            built: dict[str, dict[str, Any]] = {}
            todo: set[str] | list[str] = list(sched.defs)
            reordered = False  # definitions came or went: ``built`` is not in their order
            passes = 0
            mode = (sched.active, self._activate is None)
            while True:
                for name in todo:
                    if name in sched.defs:
                        built[name] = self._status_row(name, wall)
                    else:
                        built.pop(name, None)
                    if passes < STATUS_PASSES and sl.over():
                        yield
                if passes < STATUS_PASSES:
                    yield  # the look below in a slice of its own (~0.5 ms at 10,000 tasks)
                passes += 1
                if mode != (sched.active, self._activate is None):
                    # Taken over or stepped down meanwhile: every row again (a new table).
                    mode = (sched.active, self._activate is None)
                    watch.clear()
                    built.clear()
                    todo = list(sched.defs)
                    continue
                if self._activate is None and passes < STATUS_PASSES:
                    yield from self._follow_steps(sl)  # what the replica got meanwhile
                todo = set(watch)
                watch.clear()
                if len(built) != len(sched.defs) or built.keys() != sched.defs.keys():
                    todo |= built.keys() ^ sched.defs.keys()  # definitions came or went
                    reordered = True
                if not todo:
                    break  # no change since every row was built: all of one moment
        finally:
            sched.dirty.watchers.remove(watch)
        if self._activate is not None:
            # Taking over (in slices, see _take_over_step): the table as it is now, without
            # loading or resolving anything into it meanwhile.
            st["taking_over"] = True
        # (in the order of the definitions, as built unless they changed: 10,000 rows looked up
        # by name were a millisecond of this step)
        st["tasks"] = [built[name] for name in sched.defs] if reordered else list(built.values())
        self._status_tail(st)

    def _status_tail(self, st: dict[str, Any]) -> None:
        runs = self.scheduler.node_runs
        for m in st.get("members", []):
            m["runs"] = runs.get(m["name"], 0)
        st["node_runs"] = dict(runs)
        st["stale"] = self.stale
        write_ahead = self.quorum_status()
        if write_ahead is not None:  # quorum mode, manager (clerk._runquorum)
            st["write_ahead"] = write_ahead
        policy = gc_policy()
        if policy is not None:  # the agent process's collections (clerk._gcpolicy)
            st["gc"] = policy.status()
        st["results_unacked"] = self.outbox.pending()
        if self.scheduler.active:
            st["result_acks_held"] = len(self._acks)
            st["result_acks_waited_out"] = self._acks.expired
        if self.executor is not None:
            st["executor"] = {**self.executor.stats(), "stale": self.stale}
        if self.store is not None:
            st["data_dir"] = {"path": str(self.store.path), "writes": self.store.writes,
                              "snapshots": self.store.snapshots,
                              "bytes_written": self.store.bytes_written,
                              "moved_aside": [str(p) for p in self.store.moved_aside]}
        else:
            st["data_dir"] = None


def _returning(steps: Iterator[None], st: dict[str, Any]) -> Steps:
    yield from steps
    return st
