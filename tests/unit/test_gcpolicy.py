"""The agent's garbage-collector policy (clerk._gcpolicy): what survives a collection is
frozen, collections are timed, a reclaim collects the cyclic garbage frozen objects became."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from clerk import _gcpolicy
from clerk._gcpolicy import GcPolicy

pytestmark = pytest.mark.timeout(30)


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    p = GcPolicy(freeze=True, reclaim_every_s=10.0)
    p.install(0.0)
    try:
        yield p
    finally:
        p.close()
        gc.unfreeze()
        gc.collect()


def test_install_freezes_what_exists(policy: GcPolicy) -> None:
    assert _gcpolicy.current() is policy
    assert gc.get_freeze_count() > 0
    assert gc.get_count()[0] < 50  # (what the test allocated since)
    assert gc.get_threshold()[0] == _gcpolicy.GEN0_THRESHOLD  # short pauses


def test_survivors_of_a_collection_are_frozen_and_timed(policy: GcPolicy) -> None:
    keep = [Cycle() for _ in range(100)]
    frozen = gc.get_freeze_count()
    gc.collect(0)
    # The survivors went to the permanent generation: no later collection walks them.
    assert gc.get_freeze_count() >= frozen + 100
    assert not gc.get_objects(generation=2)
    assert policy.count[0] >= 1 and policy.freezes >= 2
    assert policy.max_ms[0] > 0
    st = policy.status()
    assert st["collections"][0] >= 1 and st["freezes"] == policy.freezes
    del keep


def test_young_cyclic_garbage_is_still_collected(policy: GcPolicy) -> None:
    for _ in range(50):
        Cycle()  # garbage before any collection sees it
    before = policy.collected
    gc.collect(0)
    assert policy.collected >= before + 50


def test_a_reclaim_collects_cycles_that_died_frozen(policy: GcPolicy) -> None:
    cycles = [Cycle() for _ in range(30)]
    gc.collect(0)  # alive now: frozen
    del cycles  # cyclic garbage, out of the collector's reach...
    assert gc.collect(0) == 0
    got = policy.reclaim(5.0)  # ... until a reclaim
    assert got >= 30 and policy.reclaimed >= 30 and policy.reclaims == 1
    assert gc.get_freeze_count() > 0  # frozen again


def test_reclaim_waits_for_room_then_goes_anyway(policy: GcPolicy) -> None:
    asked: list[float] = []

    def room() -> float:
        asked.append(1.0)
        return 0.01

    policy.turn(5.0, room)  # not due yet: room is not even asked
    assert not asked and policy.reclaims == 0
    policy.turn(10.0, room)  # due, but something is due within RECLAIM_ROOM_S
    assert asked and policy.reclaims == 0
    policy.turn(10.0, lambda: 1.0)  # room
    assert policy.reclaims == 1
    policy.turn(policy._reclaim_at + _gcpolicy.RECLAIM_LATEST_S, room)  # late enough: anyway
    assert policy.reclaims == 2


def test_reclaims_come_rarer_while_they_find_nothing(policy: GcPolicy) -> None:
    for _ in range(5):  # until what the test process left behind is collected
        if policy.reclaim(0.0) == 0 and policy.interval_s > 10.0:
            break
    start = policy.interval_s
    assert start >= 20.0
    policy.reclaim(20.0)
    assert policy.interval_s == 2 * start and policy._reclaim_at == 20.0 + 2 * start
    cycles = [Cycle() for _ in range(5)]
    gc.collect(0)  # frozen alive...
    del cycles  # ... and garbage: the next reclaim finds it
    assert policy.reclaim(60.0) >= 5
    assert policy.interval_s == 10.0  # back to every RECLAIM_EVERY_S
    for i in range(20):
        policy.reclaim(100.0 + i)
    assert policy.interval_s == _gcpolicy.RECLAIM_MAX_EVERY_S


def test_close_stops_freezing() -> None:
    before = gc.get_threshold()
    p = GcPolicy(freeze=True)
    p.install(0.0)
    p.close()
    try:
        assert gc.get_threshold() == before
        assert _gcpolicy.current() is None
        assert p._on_gc not in gc.callbacks
        keep = [Cycle() for _ in range(10)]
        frozen = gc.get_freeze_count()
        gc.collect(0)
        assert gc.get_freeze_count() == frozen
        del keep
    finally:
        gc.unfreeze()
