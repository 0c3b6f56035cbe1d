"""The incremental, sliced resolution of what the members announce (clerk._deploy.Resolver)
gives exactly what a full ``resolve`` over the latest member list gives, over random member
lists changing while a resolution is under way (members joining, leaving, re-announcing,
the same entries in a new tuple, definitions that disagree, bare names, garbage)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clerk._deploy as deploy
from clerk._deploy import Resolver, announce, resolve
from clerk._tasks import TaskDef
from tests.unit.test_schedule import sched, started, tdef

NAMES = ("a", "b", "c", "d", "e")
NODES = ("n0", "n1", "n2", "n3")
#: Each task in two variants (they disagree on the interval).
VARIANTS = {(n, v): tdef(n, interval=1000 * (v + 1)) for n in NAMES for v in (0, 1)}
OWN = [VARIANTS[("a", 0)], VARIANTS[("b", 1)], VARIANTS[("e", 0)]]

entry_kind = st.sampled_from(("v0", "v1", "bare", "garbage"))
announcement = st.dictionaries(st.sampled_from(NAMES), entry_kind, max_size=len(NAMES))
event = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(NODES), announcement,
              st.sampled_from((10.0, 20.0, 30.0))),
    st.tuples(st.just("drop"), st.sampled_from(NODES)),
    st.tuples(st.just("retuple"), st.sampled_from(NODES)),  # same entries, a new tuple
    st.tuples(st.just("steps"), st.integers(0, 12)),
)


def entries_of(ann: dict[str, str], started: float) -> tuple[str, ...]:
    out: list[str] = []
    for name, kind in ann.items():
        if kind == "bare":
            out.append(name)
        elif kind == "garbage":
            out.append(name + "\x1f{not json")
        else:
            out.extend(announce([VARIANTS[(name, int(kind[1]))]], started))
    return tuple(out)


@pytest.fixture(autouse=True)
def _one_entry_a_look() -> Iterator[None]:
    """Each step does one unit of work when its deadline has passed: the slices are small."""
    was = deploy._CHECK_EVERY
    deploy._CHECK_EVERY = 1
    yield
    deploy._CHECK_EVERY = was


def adopt(sched: dict[str, TaskDef], r: Resolver) -> None:
    """What the scheduler does with the changed tasks (Scheduler.update_defs, names)."""
    for name in sorted(r.take_changed()):
        if name in r.defs:
            sched[name] = r.defs[name]
        else:
            sched.pop(name, None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=30))
def test_incremental_equals_a_full_recompute(events: list[tuple]) -> None:
    r = Resolver(OWN)
    members: dict[str, tuple[str, ...]] = {}
    sched = {d.name: d for d in OWN}  # the scheduler starts with its own definitions
    announced: dict[str, list[frozenset[str]]] = {}  # the sets each node announced since
    for ev in events:
        if ev[0] == "steps":
            for _ in range(ev[1]):
                if r.step(-math.inf):
                    adopt(sched, r)
        else:
            if ev[0] == "set":
                members[ev[1]] = entries_of(ev[2], ev[3])
                announced.setdefault(ev[1], []).append(
                    frozenset(resolve([], {"x": members[ev[1]]}).loaded["x"]))
            elif ev[0] == "drop":
                members.pop(ev[1], None)
                announced.pop(ev[1], None)
            elif ev[1] in members:
                members[ev[1]] = tuple(list(members[ev[1]]))
            r.update(dict(members))
        # Never a run to a node that left, nor one that announces nothing any more; a node
        # that re-announces keeps a set it announced until its new one is known.
        for node, names in r.loaded.items():
            assert node in members
            assert names in announced[node], node
            if not members[node]:
                assert not names
    assert r.step(math.inf)
    adopt(sched, r)
    full = resolve(OWN, members)
    assert r.defs == full.defs
    assert r.variants == full.variants
    assert r.loaded == {node: frozenset(names) for node, names in full.loaded.items()}
    assert sched == full.defs  # the scheduler adopted exactly what changed
    assert not r.pending


def test_a_big_change_is_sliced_and_each_slice_keeps_its_deadline() -> None:
    """10 members x 2,000 tasks joining at once: many short steps, one result."""
    deploy._CHECK_EVERY = 64
    import time

    own = [tdef(f"t{i:05d}") for i in range(2000)]
    members = {f"m{j}": announce(own, 100.0 + j) for j in range(10)}
    r = Resolver(own)
    r.update(members)
    steps = 0
    while not r.step(time.perf_counter() + 0.0005):
        steps += 1
    assert steps > 5
    full = resolve(own, members)
    assert r.defs == full.defs and r.variants == full.variants
    # A member leaving is O(its entries), and takes effect in ``loaded`` at once; so does one
    # that announces nothing any more.
    del members["m3"]
    members["m4"] = ()
    r.update(members)
    assert "m3" not in r.loaded and r.loaded["m4"] == frozenset()
    assert r.step(math.inf)
    assert r.defs == resolve(own, members).defs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=20))
def test_the_scheduler_adopting_what_changed_equals_adopting_everything(
        events: list[tuple]) -> None:
    """``Scheduler.update_defs(names=...)`` of the changed tasks, in chunks, new ones first in
    name order (as the task runner does), leaves the scheduler as ``update_defs`` of every
    definition after each list does: the same definitions in the same order, the same
    stopped tasks."""
    wall = 1000.0
    full = started(sched(*OWN), wall)
    inc = started(sched(*OWN), wall)
    r = Resolver(OWN)
    members: dict[str, tuple[str, ...]] = {}
    for ev in events:
        if ev[0] == "steps":
            continue
        if ev[0] == "set":
            members[ev[1]] = entries_of(ev[2], ev[3])
        elif ev[0] == "drop":
            members.pop(ev[1], None)
        wall += 1.0
        full.update_defs(resolve(OWN, members).defs, wall)
        r.update(dict(members))
        assert r.step(math.inf)
        changed = r.take_changed()
        names = [*sorted(n for n in changed if n not in inc.defs),
                 *(n for n in changed if n in inc.defs)]
        for i in range(0, len(names), 2):
            inc.update_defs(r.defs, wall, names[i:i + 2])
        assert list(inc.defs.items()) == list(full.defs.items())
        assert inc.gone == full.gone
