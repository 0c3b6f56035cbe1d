"""Property: member task sets by digest (clerk._tasksets) on the simulated network.

Hypothesis draws 3-6 nodes (some of an older build, which reads and sends member lists with
every entry), a seed and a schedule of joins, graceful leaves, crashes, restarts with another
build (a deploy: the node announces another set), re-announcements (``set_tasks``), and
stretches where every TASKS_REPLY (or only those to one node) is lost, so a digest's set
arrives late or, for a while, never. Checked after every event a node handles:

* a row never holds entries its member did not announce: it holds the member's entries of
  some start of that incarnation, or none (a new member whose set has not arrived yet);
* no member list by digest reaches a node of an older build (its codec would refuse it).

Then the faults stop (replies flow, every node that should be up is up): within
``CONVERGE_BOUND`` simulated seconds every live node agrees on one manager and every live
node's row of every live member holds exactly that member's entries, with nothing waited for.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._core import Effect, Event
from clerk._messages import Message, TasksQuery, TasksReply
from clerk._simnet import SimNetwork, SimNode
from tests.unit.simcluster import every_set_listed
from tests.unit.simdepth import examples

CONVERGE_BOUND = 10.0
#: The builds a node may run: a few shared sets (as one build on many nodes) and odd ones.
BUILDS = [
    tuple(f"app.tasks:T{i:03d}" for i in range(40)),
    tuple(f"app.tasks:T{i:03d}" for i in range(45)),
    ("app.tasks:T000", "other:x"),
    (),
]


def entries(build: int, started: float) -> tuple[str, ...]:
    """A build's entries as announced at ``started`` (the first few with parameters)."""
    out = []
    for i, name in enumerate(BUILDS[build]):
        if i < 5:
            out.append(name + '\x1f{"i":1000,"s":' + repr(round(started, 3))
                       + ',"t":"m:f"}')
        else:
            out.append(name)
    return tuple(out)


class World:
    """What each node announced (per incarnation, every start's entries) and the checks."""

    def __init__(self, net: SimNetwork) -> None:
        self.net = net
        self.build: dict[str, int] = {}
        self.announced: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        self.violations: list[str] = []
        net.tasks_of = self.tasks_of
        net.observers.append(self.check)

    def tasks_of(self, name: str) -> tuple[str, ...]:
        return entries(self.build.get(name, 0), self.net.now)

    def note(self, node: SimNode) -> None:
        key = (node.name, node.core.me.incarnation)
        self.announced.setdefault(key, set()).add(node.core.tasks)

    def check(self, node: SimNode, event: Event, effects: list[Effect]) -> None:
        self.note(node)
        for row in node.core.members:
            said = self.announced.get((row.name, row.peer.incarnation))
            if row.tasks and said is not None and row.tasks not in said:
                self.violations.append(f"{self.net.now:.3f} {node.name}: row {row.name} "
                                       f"holds entries it never announced")


def run_schedule(n: int, older: set[int], seed: int, steps: list[tuple[str, int, int]]) -> None:
    net = SimNetwork(seed)
    net.fifo = True
    world = World(net)
    names = [f"n{i}" for i in range(n)]
    net.older = {names[i] for i in older if i < n}
    seeds = tuple(f"{x}:7400" for x in names[-2:])
    for i, name in enumerate(reversed(names)):
        world.build[name] = i % 2
        net.add_node(name, seeds=seeds)
    net.run_for(2.0)
    lost: list[Callable[[str, str, Message], bool]] = []
    for action, who, arg in steps:
        name = names[who % n]
        node = net.nodes[name]
        if action == "crash" and node.up:
            net.crash(name)
        elif action == "deploy":
            world.build[name] = arg % len(BUILDS)
            net.restart(name)
        elif action == "leave" and node.up:
            net.leave(name)
        elif action == "announce" and node.up:
            world.build[name] = arg % len(BUILDS)
            net.apply(node, node.core.set_tasks(world.tasks_of(name), net.now))
            world.note(node)
            net.reschedule(node)
        elif action == "lose":
            target = None if arg % 2 else name

            def drop(src: str, dst: str, msg: Message, target: str | None = target) -> bool:
                return isinstance(msg, TasksReply) and (target is None or dst == target)

            lost.append(drop)
            net.cut_where(drop)
        elif action == "heal":
            net.heal()
        net.run_for(0.05 + (arg % 7) * 0.1)
    # Faults stop: replies flow, every node is up again (one that left comes back).
    net.heal()
    for name in names:
        node = net.nodes[name]
        if not node.up or node.core.role.name == "STOPPED":
            net.restart(name)
    stop = net.now

    done = net.run_until_true(lambda: every_set_listed(net), limit=CONVERGE_BOUND, step=0.01)
    views = {x.name: {r.name: (len(r.tasks), r.want is not None) for r in x.core.members}
             for x in net.live()}
    assert done is not None, f"not settled {net.now - stop:.1f} s after the faults: {views}"
    assert not world.violations, "\n".join(world.violations[:10])
    assert net.too_new == 0


STEP = st.tuples(st.sampled_from(["crash", "deploy", "leave", "announce", "lose", "lose",
                                  "heal", "wait"]),
                 st.integers(0, 5), st.integers(0, 20))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(3, 6), st.sets(st.integers(0, 5), max_size=2), st.integers(0, 2**32),
       st.lists(STEP, max_size=14))
def test_task_sets_by_digest_arrive_late_or_never_and_rows_stay_true(
        n: int, older: set[int], seed: int, steps: list[tuple[str, int, int]]) -> None:
    run_schedule(n, older, seed, steps)


def test_members_of_one_build_share_one_fetch() -> None:
    """Six nodes of one build and a joiner of another: nobody fetches anything until the
    joiner comes; then each of the five followers fetches the joiner's set once, and the
    joiner fetches the set the six share once (not once per member)."""
    net = SimNetwork(7)
    world = World(net)
    names = [f"n{i}" for i in range(6)]
    for name in reversed(names):
        world.build[name] = 0
        net.add_node(name, seeds=("n5:7400",))
    world.build["odd"] = 2
    net.run_for(2.0)
    assert net.sent["tasksquery"] == 0  # one build: nobody lacks a set
    asked: list[tuple[str, str]] = []
    net.observers.append(lambda node, event, effects: asked.extend(
        (node.name, e.msg.digest) for e in effects  # type: ignore[union-attr]
        if isinstance(getattr(e, "msg", None), TasksQuery)))
    net.add_node("odd", seeds=("n5:7400",))
    net.run_for(2.0)
    odd_set = net.nodes["odd"].core.members.own_form()[0]
    shared = net.nodes["n0"].core.members.own_form()[0]
    assert sorted(asked) == sorted([*((f"n{i}", odd_set) for i in range(5)), ("odd", shared)])
    assert all(r.tasks == net.nodes[r.name].core.tasks and r.want is None
               for x in net.live() for r in x.core.members)
