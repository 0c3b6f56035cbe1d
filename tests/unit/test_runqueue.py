"""The executor's run queue (clerk._runqueue): the rules of the plain list it replaced, kept
with heaps; checked against that list on random schedules, and for its cost."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import pytest

from clerk._runqueue import Job, RunQueue

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class _Msg:
    run_id: str


def job(run: str, start: float, deadline: float, release: float = 0.0,
        received: float = 0.0) -> Job:
    return Job(_Msg(run), "to", received, deadline, release, start)


class ListModel:
    """The executor's queue as it was: a list, scanned (the reference)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def add(self, j: Job, now: float) -> None:
        j.held = j.release > now
        self.jobs.append(j)

    def release(self, now: float) -> None:
        for j in self.jobs:
            if j.held and j.release <= now:
                j.held = False

    def pop_ready(self) -> Job | None:
        j = min((j for j in self.jobs if not j.held), key=lambda j: j.start, default=None)
        if j is not None:
            self.jobs.remove(j)
        return j

    def push_back(self, j: Job) -> None:
        self.jobs.insert(0, j)

    def expired(self, now: float) -> list[Job]:
        out = [j for j in self.jobs if now >= j.deadline]
        for j in out:
            self.jobs.remove(j)
        return out

    def next_deadline(self) -> float:
        best = float("inf")
        for j in self.jobs:
            best = min(best, j.deadline)
            if j.held:
                best = min(best, j.release)
        return best


def test_earliest_start_first_ties_by_arrival() -> None:
    q = RunQueue()
    q.add(job("a", start=5, deadline=100), now=0)
    q.add(job("b", start=3, deadline=100), now=0)
    q.add(job("c", start=3, deadline=100), now=0)
    assert [q.pop_ready().msg.run_id for _ in range(3)] == ["b", "c", "a"]  # type: ignore[union-attr]
    assert q.pop_ready() is None and not q


def test_held_until_release_then_ready() -> None:
    q = RunQueue()
    q.add(job("h", start=10, deadline=100, release=8), now=0)
    assert q.held_count == 1 and q.pop_ready() is None
    assert q.next_deadline() == 8  # its release wakes the loop
    q.release(7.9)
    assert q.pop_ready() is None
    q.release(8)
    assert q.held_count == 0 and q.next_deadline() == 100
    assert q.pop_ready().msg.run_id == "h"  # type: ignore[union-attr]


def test_push_back_keeps_its_place_and_its_timeout() -> None:
    q = RunQueue()
    q.add(job("a", start=1, deadline=50), now=0)
    q.add(job("b", start=2, deadline=60), now=0)
    a = q.pop_ready()
    assert a is not None
    for _ in range(200):  # churn that compacts the heaps meanwhile
        q.add(job("x", start=0, deadline=1e9), now=0)
        assert q.pop_ready() is not None
    q.push_back(a)
    assert q.has_run("a") and len(q) == 2
    assert q.next_deadline() == 50
    assert [j.msg.run_id for j in q.expired(55)] == ["a"]
    assert not q.has_run("a") and q.has_run("b")


def test_expired_leave_the_queue() -> None:
    q = RunQueue()
    q.add(job("a", start=1, deadline=5, release=3), now=0)
    q.add(job("b", start=1, deadline=9), now=0)
    assert [j.msg.run_id for j in q.expired(5)] == ["a"]
    assert q.held_count == 0 and len(q) == 1 and q.next_deadline() == 9


@pytest.mark.parametrize("seed", range(40))
def test_matches_the_list_it_replaced(seed: int) -> None:
    rng = random.Random(seed)
    q, model = RunQueue(), ListModel()
    now = 0.0
    n = 0
    for _ in range(400):
        now += rng.choice([0.0, 0.0, 0.5, 1.0, 3.0])
        op = rng.random()
        if op < 0.45:
            n += 1
            start = now + rng.choice([0.0, 0.0, 2.0, 5.0])
            release = start - rng.choice([0.0, 1.0, 3.0]) if start > now else 0.0
            deadline = start + rng.choice([1.0, 4.0, 10.0])
            a = job(f"r{n}", start, deadline, release, received=now)
            b = job(f"r{n}", start, deadline, release, received=now)
            q.add(a, now)
            model.add(b, now)
        elif op < 0.75:
            q.release(now)
            model.release(now)
            got, want = q.pop_ready(), model.pop_ready()
            assert (got and got.msg.run_id) == (want and want.msg.run_id)
            if got is not None and want is not None and rng.random() < 0.2:
                q.push_back(got)
                model.push_back(want)
        else:
            got_ids = sorted(j.msg.run_id for j in q.expired(now))
            assert got_ids == sorted(j.msg.run_id for j in model.expired(now))
        assert q.next_deadline() == model.next_deadline()
        assert len(q) == len(model.jobs)
        assert q.held_count == sum(j.held for j in model.jobs)
        assert sorted(j.msg.run_id for j in q) == sorted(j.msg.run_id for j in model.jobs)


def test_a_tick_does_not_walk_the_queue() -> None:
    """10,000 runs queued: what every loop turn and tick does costs about what it costs with
    10 (it walked every queued run: 2.9 ms a tick at 10,000)."""

    def per_tick(n: int) -> float:
        q = RunQueue()
        for i in range(n):
            q.add(job(f"r{i}", start=float(i), deadline=1e6 + i, release=float(i)), now=0.0)
        t0 = time.perf_counter()
        for k in range(2000):
            q.next_deadline()
            q.expired(float(k) * 1e-6)
            q.release(0.0)
        return (time.perf_counter() - t0) / 2000

    small = min(per_tick(10) for _ in range(3))
    big = min(per_tick(10_000) for _ in range(3))
    assert big < 5 * small + 20e-6, (small, big)
