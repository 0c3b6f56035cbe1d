"""An OFFER in parts counts only once every part is in (clerk._offerjob, "Numbered parts").

A member's OFFER over ``OFFER_PART_CHARS`` of rows (a hundred or so tasks with a state and a
run history) goes in several messages. The manager counted the member as having offered at the
first part: an ``init`` waiting for the members' states (or a dispatch of a successor whose
table waits for them) then ran while the state it waited for was still on its way in a later
part, and the task started over (or from an older state) while a live member held a newer one.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from clerk._messages import Offer, Peer
from clerk._offerjob import MAX_OFFER_PARTS, OFFER_PART_CHARS, OfferParts, offer_rows
from clerk._record import TaskRecord, unpack_table
from clerk._replication import offer_parts
from clerk._runner import TaskRunner
from clerk._schedule import Scheduler
from clerk._statusjob import Slice
from clerk._tasks import TaskDef

IV = 1000
B = Peer("b", "tcp://b:1", "inc-b", 0)
#: A state this big makes 40 rows ~2.5 OFFER_PART_CHARS of text: an OFFER of 3 parts.
PAD = "x" * (OFFER_PART_CHARS // 16)
NAMES = [f"t{i:02d}" for i in range(40)]
MEMBERS = {"a": tuple(NAMES), "b": tuple(NAMES)}
#: Between two parts (s): past every task's first slot after a takeover (the dispatch lead
#: skips the slots due just after it), well within OFFER_WAIT_SURE_MS for all three.
STEP = 2.5


def _defs() -> list[TaskDef]:
    return [TaskDef(name=n, target="x:Y", interval=IV, timeout=500, instant=False,
                    enabled=True, args=None) for n in NAMES]


def _member_offer() -> list[Any]:
    """Member b's OFFER as a real node builds it (``offer_rows``): every task's state, a
    count of 7, in numbered parts."""
    sched = Scheduler(_defs(), random.Random(2))
    rows: dict[str, str | None] = {}
    for name in NAMES:
        rec = TaskRecord(state={"count": 7, "pad": PAD}, has_state=True, version=7, runs=7,
                         origin={"term": 1, "node": "b", "time": 5})
        rows["t:" + name] = rec.to_text()
    steps = offer_rows(sched, rows, None, {}, Slice())
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return list(stop.value)


def _manager(wall: float) -> Scheduler:
    s = Scheduler(_defs(), random.Random(1), await_offers=True)
    s.always_offers = lambda node: True  # (every current build: OFFER_WAIT_SURE_MS)
    s.activate(wall, graceful=False, claim=(2, "a"))
    return s


def _tasks_in(part: Any) -> set[str]:
    return set(unpack_table(part)["tasks"])


def _inits(s: Scheduler, wall: float) -> tuple[list[str], list[str]]:
    """The tasks dispatched at ``wall``: (those from ``init``, those from a state)."""
    ds, _ = s.tick(wall, MEMBERS)
    return [d.task for d in ds if d.init], [d.task for d in ds if not d.init]


def test_an_offer_in_parts_ends_the_wait_for_init_only_with_its_last_part() -> None:
    parts = _member_offer()
    assert len(parts) == 3, [len(str(p)) for p in parts]
    later = _tasks_in(parts[1]) | _tasks_in(parts[2])
    wall = 1_800_000_000.0
    s = _manager(wall)
    inbox = OfferParts()
    for i, part in enumerate(parts):
        s.merge(part, wall, source="b")
        whole = inbox.add(B, 2, part)
        assert whole == (i == len(parts) - 1)
        if whole:
            s.offer_from("b")
        wall += STEP
        inits, _ = _inits(s, wall)
        assert inits == [], f"after part {i}: init ran while b's OFFER was on its way"
    wall += STEP
    inits, from_state = _inits(s, wall)
    assert inits == [] and set(from_state) == set(NAMES)
    assert all(s.records[n].state["count"] == 7 for n in later)


def test_a_manager_counts_a_member_as_offered_once_its_last_part_is_merged() -> None:
    # The node's own path (TaskRunner.on_offer): each part merged as it comes, the member
    # counted only with the last.
    parts = _member_offer()
    wall = 1_800_000_000.0
    s = _manager(wall)
    runner = SimpleNamespace(
        agent=SimpleNamespace(core=SimpleNamespace(quorum=None, is_manager=True)),
        scheduler=s, _log_conflicts=lambda: None, _activate=None, _offers_waiting={},
        _offer_parts=OfferParts(), _replicate=lambda now: None)
    for i, part in enumerate(parts):
        TaskRunner.on_offer(runner, Offer(B, 2, part), 0.0, wall)  # type: ignore[arg-type]
        assert ("b" in s.offered) == (i == len(parts) - 1)
        assert all(s.records[n].has_state for n in _tasks_in(part))


def test_counting_the_first_part_as_the_whole_offer_starts_tasks_over() -> None:
    # The old rule, for the record: the tasks of the later parts ran from init.
    parts = _member_offer()
    wall = 1_800_000_000.0
    s = _manager(wall)
    s.merge(parts[0], wall, source="b")
    s.offer_from("b")
    inits, _ = _inits(s, wall + STEP)
    assert set(inits) == _tasks_in(parts[1]) | _tasks_in(parts[2])


def test_parts_may_come_in_any_order_and_twice() -> None:
    inbox = OfferParts()
    parts = offer_parts({f"t{i}": {"state": PAD, "has_state": True} for i in range(40)},
                        limit=OFFER_PART_CHARS // 2)
    n = len(parts)
    assert n >= 3 and [p["part"] for p in parts] == list(range(n))
    assert {p["of"] for p in parts} == {n} and len({p["id"] for p in parts}) == 1
    order = [parts[-1], parts[0], parts[0], *parts[1:-1]]
    assert [inbox.add(B, 3, p) for p in order] == [False] * (len(order) - 1) + [True]


def test_a_new_offer_or_claim_starts_the_count_over() -> None:
    inbox = OfferParts()
    first = offer_parts({f"t{i}": {"state": PAD} for i in range(40)}, OFFER_PART_CHARS // 2)
    second = offer_parts({f"t{i}": {"state": PAD} for i in range(40)}, OFFER_PART_CHARS // 2)
    assert first[0]["id"] != second[0]["id"]
    assert not inbox.add(B, 3, first[0])
    # Another OFFER of the same member (it followed us again): its own parts only.
    assert not any(inbox.add(B, 3, p) for p in second[:-1])
    assert not inbox.add(B, 3, first[-1])
    # Under another claim (term) the parts held of the one before do not count.
    assert not inbox.add(B, 4, second[-1])
    inbox.clear()
    assert [inbox.add(B, 3, p) for p in second] == [False] * (len(second) - 1) + [True]


@pytest.mark.parametrize("state", [
    {"packed": 1, "chunks": ['{"tasks":{}}']},  # an older build's OFFER
    None,
    {"packed": 1, "chunks": [], "part": 0, "of": MAX_OFFER_PARTS + 1, "id": 1},
    {"packed": 1, "chunks": [], "part": 2, "of": 2, "id": 1},
    {"packed": 1, "chunks": [], "part": True, "of": 2, "id": 1},
    {"packed": 1, "chunks": [], "part": 0, "of": 2, "id": [1]},
])
def test_an_offer_without_sound_numbers_counts_at_once(state: Any) -> None:
    inbox = OfferParts()
    assert inbox.add(B, 1, state)
