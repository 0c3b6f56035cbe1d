"""A member's OFFER built in slices (``clerk._offerjob``): the same rows as the OFFER built in
one step (the whole replica loaded into the scheduler first, then the rows chosen), whatever
the follower loaded before; the rows of the moment the job started, whatever the replica
gets meanwhile; in parts within their limit; the same in slices as in one go."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

from clerk._messages import TableAt
from clerk._offerjob import (
    NO_STATE,
    OFFER_CHARS,
    OFFER_MOST_PARTS,
    OFFER_PART_CHARS,
    offer_job,
    offer_rows,
)
from clerk._record import TaskRecord, unpack_table
from clerk._replica import Replica, ReplicaLog, RowEncoder, offer_keys, offer_test, row_key
from clerk._schedule import Scheduler
from clerk._statusjob import Slice, run
from tests.unit.test_schedule import IV, K, due, tdef

N = 30


class Cluster:
    """A manager's scheduler and log (``L1``), a member's replica of it, and the member's
    data directory: some states a little ahead of the replica's, one task only it has."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.defs = [tdef(f"t{i}", IV) for i in range(N)]
        self.members = {"a": tuple(d.name for d in self.defs)}
        self.manager = Scheduler(self.defs, random.Random(1))
        self.wall = due("t0", K)
        self.manager.activate(self.wall, graceful=False, claim=(1, "a"))
        self.log, self.encoder = ReplicaLog("L1"), RowEncoder()
        self.replica = Replica()
        self.rounds(2)
        self.sync()
        self.early = self.replica.items()  # what a follower may have loaded long ago
        self.rounds(2)
        self.disk = self.manager.table()
        self.disk["tasks"]["only-on-disk"] = {**self.disk["tasks"]["t0"], "has_state": True,
                                              "state": {"mine": 1}}
        self.rounds(self.rng.randrange(0, 3))
        self.sync()
        self.at = self.replica.seq  # a fellow's replica stands here ...
        self.rounds(1)  # ... and ours got a round more
        self.sync()
        # A run in flight in some rows (an OFFER never carries it).
        ds, _ = self.manager.tick(self.wall + IV / 1000, self.members)
        assert ds
        self.sync()

    def rounds(self, n: int) -> None:
        for _ in range(n):
            self.wall += IV / 1000
            ds, _ = self.manager.tick(self.wall, self.members)
            for d in ds:
                if self.rng.random() < 0.8:
                    self.manager.on_result(d.task, d.run_id, d.node, "ok",
                                           {"n": d.slot, "pad": "x" * self.rng.randrange(40)},
                                           1.0, "", self.wall + 0.01)

    def sync(self) -> None:
        self.encoder.step(self.manager, self.log, float("inf"))
        for delta in self.log.window(self.replica.seq, 1 << 30):
            self.replica.apply(delta)

    def follower(self, loaded: str) -> tuple[Scheduler, dict[str, str | None]]:
        """A member's scheduler: its data directory's rows, and the replica's rows it loaded
        before (``loaded``: none, some from long ago, all from long ago, all of now)."""
        s = Scheduler(self.defs, random.Random(2))
        s.load(self.disk)
        seen: dict[str, str | None] = {}
        if loaded == "some":
            s.follow_rows(self.early[::3], seen)
        elif loaded == "early":
            s.follow_rows(self.early, seen)
        elif loaded == "all":
            s.follow_rows(self.replica.items(), seen)
        return s, seen


def one_step_offer(s: Scheduler, seen: dict[str, str | None], source: Any,
                   at: TableAt | None) -> dict[str, Any]:
    """What ``Replication._offer`` sent when it built the OFFER in one step."""
    s.follow_rows(source.items(), seen)
    newer = offer_keys(source, at)
    rows = {name: rec.to_json() for name, rec in s.records.items()
            if rec.has_state and (newer is None or name in s.kept_own
                                  or seen.get(row_key(name)) is None
                                  or row_key(name) in newer)}
    for row in rows.values():
        row["running"] = None
    return rows


def offered(parts: list[Any]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for part in parts:
        table = unpack_table(part)
        assert isinstance(table, dict) and set(table) == {"tasks"}
        assert not rows.keys() & table["tasks"].keys()
        rows.update(table["tasks"])
    return rows


def norm(rows: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, raw in rows.items():
        rec = TaskRecord.from_json(raw)
        assert rec is not None
        if rec.has_state:
            out[name] = rec.to_json()
    return out


def test_an_offer_in_slices_holds_the_rows_of_an_offer_in_one_step() -> None:
    cases = 0
    for seed, loaded, fellow in itertools.product(range(6), ("none", "some", "early", "all"),
                                                  ("", "behind", "same")):
        c = Cluster(seed)
        at = (TableAt("L1", c.at) if fellow == "behind" else
              TableAt("L1", c.replica.seq) if fellow == "same" else None)
        old, old_seen = c.follower(loaded)
        expected = one_step_offer(old, old_seen, c.replica, at)
        new, seen = c.follower(loaded)
        sl = Slice(itertools.count().__next__)  # every look at the clock: over
        steps = offer_rows(new, c.replica.texts(), offer_test(c.replica, at), seen, sl)
        yields = 0
        while True:
            sl.start(0.5)
            try:
                next(steps)
                yields += 1
            except StopIteration as stop:
                parts = stop.value
                break
        got = offered(parts)
        assert norm(got) == norm(expected), (seed, loaded, fellow)
        # Rows beyond those: only rows without a state (none here: every such row says so).
        assert got.keys() == expected.keys(), (seed, loaded, fellow)
        assert all(row["running"] is None for row in got.values())
        assert yields >= len(c.replica.items())  # a slice per row here
        # The same in one go.
        again, seen2 = c.follower(loaded)
        assert offered(run(offer_rows(again, c.replica.texts(), offer_test(c.replica, at),
                                      seen2, Slice()))) == got
        if fellow == "same":
            assert len(expected) < N  # only what the fellow may lack
        cases += 1
    assert cases == 72


def test_rows_not_loaded_without_a_state_of_ours_are_offered_unparsed() -> None:
    c = Cluster(1)
    s, seen = c.follower("none")
    for rec in s.records.values():  # no data directory: nothing of ours to merge
        rec.has_state, rec.state = False, None
    s.kept_own.clear()
    loads: list[int] = []
    real = s.load_rows

    def counted(items: Any, start: int, deadline: float) -> int:
        loads.append(start)
        return real(items, start, deadline)

    s.load_rows = counted  # type: ignore[method-assign,assignment]
    parts = run(offer_rows(s, c.replica.texts(), None, seen, Slice()))
    assert loads == [] and seen == {}
    held = {k[2:]: t for k, t in c.replica.items() if k.startswith("t:") and t is not None}
    with_state = {n for n, t in held.items() if not t.startswith(NO_STATE)}
    assert offered(parts).keys() == with_state
    assert norm(offered(parts)) == norm({n: json.loads(held[n]) | {"running": None}
                                         for n in with_state})


def test_the_offer_holds_the_rows_of_the_moment_it_started() -> None:
    """The new manager's deltas (another log, from -1) replace the replica's rows while the
    OFFER is being built: it still offers what this node held before them."""
    c = Cluster(3)
    old, old_seen = c.follower("none")
    expected = one_step_offer(old, old_seen, c.replica, None)
    s, seen = c.follower("none")
    sent: list[Any] = []
    job = offer_job("m", s, c.replica.texts(), offer_test(c.replica, None), seen, sent.append)
    # A new manager from elsewhere: a fresh table (every state at init), sent from -1.
    other = Scheduler(c.defs, random.Random(9))
    other.activate(c.wall, graceful=False, claim=(5, "b"))
    log2 = ReplicaLog("L2")
    RowEncoder().step(other, log2, float("inf"))
    for delta in log2.window(-1, 1 << 30):
        c.replica.apply(delta)
    assert c.replica.log == "L2"
    while not job.step(0.0):
        pass
    assert job.done and norm(offered(sent)) == norm(expected)


def test_a_big_offer_goes_in_parts_within_the_limit() -> None:
    c = Cluster(2)
    s, seen = c.follower("all")
    for rec in s.records.values():  # states of ~20 KB each: ~600 KB in all
        if rec.has_state:
            rec.state = {"blob": "y" * 20_000}
    parts = run(offer_rows(s, {}, None, seen, Slice()))
    sizes = [sum(len(ch) for ch in p["chunks"]) for p in parts]
    assert len(parts) > 3 and max(sizes) <= OFFER_PART_CHARS + 25_000
    assert offered(parts).keys() == {n for n, r in s.records.items() if r.has_state}
    # A table that would need more than half the parts a loading manager keeps: bigger parts.
    for rec in s.records.values():
        if rec.has_state:
            rec.state = {"blob": "y" * 200_000}
    parts = run(offer_rows(s, {}, None, seen, Slice()))
    sizes = [sum(len(ch) for ch in p["chunks"]) for p in parts]
    assert len(parts) <= OFFER_MOST_PARTS and max(sizes) <= OFFER_CHARS + 210_000
    # Nothing with a state: one empty part ("nothing here").
    empty = Scheduler(c.defs, random.Random(2))
    (part,) = run(offer_rows(empty, {}, None, {}, Slice()))
    assert part == {"packed": 1, "chunks": ['{"tasks":{}}'], "part": 0, "of": 1,
                    "id": part["id"]}


def test_the_job_sends_a_part_per_step_and_the_first_in_the_slice_that_built_it() -> None:
    c = Cluster(4)
    s, seen = c.follower("all")
    sent: list[Any] = []
    job = offer_job("m", s, c.replica.texts(), None, seen, sent.append)
    assert job.step(10.0) and job.done and len(sent) == 1  # small: at once
    for rec in s.records.values():
        if rec.has_state:
            rec.state = {"blob": "z" * 30_000}
    sent.clear()
    job = offer_job("m", s, {}, None, seen, sent.append)
    steps = 0
    while not job.step(10.0):
        steps += 1
        assert len(sent) == steps  # a part per step, the first in the step that built it
    assert len(sent) > 2 and steps == len(sent) - 1
