"""A follower brought up to its replica row by row (``Scheduler.follow_rows``) for a status, a
``show`` or an OFFER: the same table as loading the whole replicated table each time (what it
did: ~1 s at 10,000 tasks), and the same rows "beyond the replica" for an OFFER to a fellow
member (the rows of its data directory better than the replica's, or that the replica lacks).
"""

from __future__ import annotations

import random
from typing import Any

from clerk._lineage import better
from clerk._record import TaskRecord
from clerk._replica import Replica, ReplicaLog, RowEncoder, row_key
from clerk._schedule import Scheduler
from tests.unit.test_schedule import IV, K, due, tdef


def old_beyond(s: Scheduler, table: Any) -> set[str]:
    """What ``Replication._offer`` computed before it loaded the replicated table."""
    theirs = table.get("tasks") if isinstance(table, dict) else None
    theirs = theirs if isinstance(theirs, dict) else {}
    out = set()
    for name, rec in s.records.items():
        other = TaskRecord.from_json(theirs.get(name))
        if rec.has_state and (other is None or better(rec, other)):
            out.add(name)
    return out


def new_beyond(s: Scheduler, seen: dict[str, str | None]) -> set[str]:
    """What ``Replication._offer`` computes now (after ``follow_rows``)."""
    return {name for name, rec in s.records.items()
            if rec.has_state and (name in s.kept_own or seen.get(row_key(name)) is None)}


def test_following_row_by_row_equals_loading_the_whole_table() -> None:
    rng = random.Random(4)
    defs = [tdef(f"t{i}", IV) for i in range(25)]
    members = {"a": tuple(d.name for d in defs)}
    manager = Scheduler(defs, random.Random(1))
    wall = due("t0", K)
    manager.activate(wall, graceful=False, claim=(1, "a"))
    log, encoder = ReplicaLog("L1"), RowEncoder()

    def rounds(n: int) -> None:
        nonlocal wall
        for _ in range(n):
            wall += IV / 1000
            ds, _ = manager.tick(wall, members)
            for d in ds:
                if rng.random() < 0.8:
                    manager.on_result(d.task, d.run_id, d.node, "ok", {"n": d.slot}, 1.0, "",
                                      wall + 0.01)

    rounds(3)
    encoder.step(manager, log, float("inf"))  # the log its replica starts from
    # The follower's data directory: a table from a little later (some states better than
    # its replica's at first), and a row the replica never has.
    rounds(2)
    disk = manager.table()
    disk["tasks"]["only-on-disk"] = {**disk["tasks"]["t0"], "has_state": True,
                                     "state": {"mine": 1}}
    follower, reference = Scheduler(defs, random.Random(2)), Scheduler(defs, random.Random(2))
    follower.load(disk)
    reference.load(disk)
    replica = Replica()
    seen: dict[str, str | None] = {}
    kept = 0
    for r in range(12):
        for delta in log.window(replica.seq, 1 << 30):
            replica.apply(delta)
        if r == 6:  # a hand-over's table without one row: gone from the replica
            whole = replica.table()
            del whole["tasks"]["t3"]
            replica.reset(whole)
        table = replica.table()
        expected = old_beyond(reference, table)
        reference.load(table)
        follower.follow_rows(replica.items(), seen)
        assert ({n: rec.to_json() for n, rec in follower.records.items()}
                == {n: rec.to_json() for n, rec in reference.records.items()})
        assert new_beyond(follower, seen) == expected
        kept += len(expected - {"only-on-disk", "t3"})
        rounds(1)
        encoder.step(manager, log, float("inf"))
    assert kept >= 3  # states of the data directory better than the replica's were compared


def test_following_parses_only_the_rows_that_changed() -> None:
    defs = [tdef(f"t{i}", IV) for i in range(40)]
    manager = Scheduler(defs, random.Random(1))
    wall = due("t0", K)
    manager.activate(wall, graceful=False, claim=(1, "a"))
    log, encoder = ReplicaLog("L1"), RowEncoder()
    encoder.step(manager, log, float("inf"))
    follower = Scheduler(defs, random.Random(2))
    seen: dict[str, str | None] = {}
    assert follower.follow_rows(log.items(), seen) == len(log.items())
    assert follower.follow_rows(log.items(), seen) == 0
    d, _ = manager.trigger("t5", wall + 0.5, {"a": ("t5",)})
    assert d is not None
    encoder.step(manager, log, float("inf"))
    assert follower.follow_rows(log.items(), seen) == 1  # that row (node_runs: at results)
    assert follower.records["t5"].running is not None
