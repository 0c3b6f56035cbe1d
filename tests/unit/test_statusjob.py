"""A node's status built in slices between loop turns (clerk._statusjob, clerk._statusrows):
every slice short, every row of the answer of one moment (a row whose task changed after it
was built is built again), askers arriving meanwhile sharing the answer, and the parts of a
big status the same text whether made in slices or in one go."""

from __future__ import annotations

import random
from collections.abc import Generator, Iterator
from types import SimpleNamespace
from typing import Any

import clerk
from clerk._replica import Replica, ReplicaLog, RowEncoder
from clerk._replication import Replication
from clerk._schedule import Scheduler
from clerk._statusjob import STATUS_PASSES, Slice, StatusJobs, run
from clerk._statusparts import split_status, split_steps
from clerk._statusrows import StatusRows

WALL = 1_700_000_000.0


class _Clock:
    def wall(self) -> float:
        return WALL + 5


class _Host:
    clock = _Clock()


class _Guard:
    overruns: dict[str, int] = {}
    unavailable: dict[str, Any] = {}


class _Outbox:
    def pending(self) -> int:
        return 0


class _Acks(list[Any]):
    expired = 0


class _Rows(StatusRows):
    """The task layer's status over a real scheduler (the rest of the layer stubbed)."""

    def __init__(self, sched: Scheduler) -> None:
        self.agent = _Host()  # type: ignore[assignment]
        self.scheduler = sched
        self.nodes_guard = _Guard()  # type: ignore[assignment]
        self.defs = dict(sched.defs)
        self._variants = {}
        self._activate = None
        self.stale = 0
        self.outbox = _Outbox()  # type: ignore[assignment]
        self._acks = _Acks()  # type: ignore[assignment]
        self.executor = None
        self.store = None

    def _follow_steps(self, sl: Slice | None) -> Iterator[None]:
        return iter(())

    def _resolve(self, wall: float, deadline: float = 0.0, adopt: bool = True) -> bool:
        return True

    def quorum_status(self) -> dict[str, Any] | None:
        return None


def _manager(n: int) -> tuple[Scheduler, dict[str, frozenset[str]]]:
    defs = [clerk.task("clerk.examples:Tally", name=f"t{i:03d}", interval=1000)
            for i in range(n)]
    sched = Scheduler(defs, random.Random(1))
    sched.activate(WALL, graceful=False)
    return sched, {"n2@h": frozenset(d.name for d in defs)}


def _now(rows: _Rows) -> list[dict[str, Any]]:
    """The task rows as a status made in one go now has them."""
    st: dict[str, Any] = {"members": []}
    rows.add_status(st)
    return st["tasks"]  # type: ignore[no-any-return]


class _Always(Slice):
    """A slice always over its deadline: the job yields after every row."""

    def over(self) -> bool:
        return True


def test_rows_changed_while_the_status_is_built_are_built_again_all_of_one_moment() -> None:
    sched, loaded = _manager(40)
    rows = _Rows(sched)
    st: dict[str, Any] = {"members": []}
    steps = rows.status_steps(st, _Always())
    for _ in range(10):  # the first rows are built
        next(steps)
    # Meanwhile the loop dispatches every task and gets a result of the first one back (its
    # row was built before): the answer must show both.
    dispatches, _ = sched.tick(WALL + 2.0, loaded)
    assert len(dispatches) == 40
    d = dispatches[0]
    sched.on_result(d.task, d.run_id, d.node, "ok", {"count": 7}, 1.5, "", WALL + 2.1)
    turns = sum(1 for _ in steps)
    assert turns >= 40  # still a slice per row
    assert st["tasks"] == _now(rows)  # every row as of the end
    by_name = {row["name"]: row for row in st["tasks"]}
    assert by_name[d.task]["running"] is None and by_name[d.task]["last_run"] is not None
    assert all(by_name[x.task]["running"] is not None for x in dispatches[1:])
    assert not sched.dirty.watchers  # the job no longer watches the table


def test_a_table_changing_faster_than_the_rows_are_built_ends_after_the_last_pass() -> None:
    sched, loaded = _manager(5)
    rows = _Rows(sched)
    st: dict[str, Any] = {"members": []}
    steps = rows.status_steps(st, _Always())
    turns = 0
    for _ in steps:
        turns += 1
        sched.dirty.add("t000")  # a change at every turn
        assert turns < 10 * (STATUS_PASSES + 5)
    assert st["tasks"] == _now(rows)


def test_askers_arriving_meanwhile_share_the_job_and_its_answer() -> None:
    jobs = StatusJobs()
    made = []

    def make(sl: Slice) -> Generator[None, None, str]:
        made.append(sl)
        yield
        yield
        return "the status"

    jobs.ask("a", make)
    assert jobs.busy() and jobs.step() is None
    jobs.ask("b", make)
    assert jobs.step() is None
    assert jobs.step() == (["a", "b"], "the status")
    assert not jobs.busy() and len(made) == 1
    assert jobs.stats()["built"] == 1


def test_the_parts_made_in_slices_are_those_made_in_one_go() -> None:
    sched, _ = _manager(300)
    st = {"node": "n1", "members": [{"name": "n1", "tasks": ["x"] * 10}],
          "tasks": sched.status(WALL)}
    whole = split_status(st, budget=16 * 1024, chunk=1000)
    sliced = split_steps(st, _Always(), None, 16 * 1024, 1000)
    turns = 0
    try:
        while True:
            next(sliced)
            turns += 1
    except StopIteration as stop:
        assert stop.value == whole
    assert turns > 300 and len(whole[1]) > 1
    assert run(split_steps(st, Slice(), None, 1 << 30)) == (st, [])  # fits: as it is


def test_a_follower_catches_up_with_its_replica_in_slices_as_in_one_go() -> None:
    """``Replication._follow_steps`` (a follower's status: its scheduler brought up to the
    replica in slices) leaves the records ``Scheduler.follow_rows`` leaves, and notes the
    rows it loaded for a status being built (the job builds those rows again)."""
    rng = random.Random(4)
    defs = [clerk.task("clerk.examples:Tally", name=f"t{i:02d}", interval=1000)
            for i in range(30)]
    loaded = {"a": frozenset(d.name for d in defs)}
    manager = Scheduler(defs, random.Random(1))
    wall = WALL
    manager.activate(wall, graceful=False)
    log, encoder = ReplicaLog("L1"), RowEncoder()
    follower, reference = Scheduler(defs, random.Random(2)), Scheduler(defs, random.Random(2))
    node = SimpleNamespace(scheduler=follower, _activate=None, _rows_seen=None,
                           agent=SimpleNamespace(core=SimpleNamespace(table_log=ReplicaLog(),
                                                                      replica=Replica())))
    core = node.agent.core
    seen: dict[str, str | None] = {}
    watch: set[str] = set()
    follower.dirty.watchers.append(watch)
    for _ in range(6):
        wall += 1.0
        ds, _ = manager.tick(wall, loaded)
        for d in ds:
            if rng.random() < 0.7:
                manager.on_result(d.task, d.run_id, d.node, "ok", {"n": d.slot}, 1.0, "",
                                  wall + 0.01)
        encoder.step(manager, log, float("inf"))
        for delta in log.window(core.replica.seq, 1 << 30):
            core.replica.apply(delta)
        before = {n: r.to_json() for n, r in follower.records.items()}
        turns = sum(1 for _ in Replication._follow_steps(node, _Always()))  # type: ignore[arg-type, misc]
        reference.follow_rows(core.replica.items(), seen)
        after = {n: r.to_json() for n, r in follower.records.items()}
        assert after == {n: r.to_json() for n, r in reference.records.items()}
        assert {n for n in after if before.get(n) != after[n]} <= watch
        assert turns >= 1
        watch.clear()
