"""Property: a node that announces its tasks after it started JOINing (a real node's workers
become ready after its first JOIN, which carries none) ends up listed with them everywhere,
on a simulated network where messages of one link may overtake each other (issue 11).

A real node's first JOIN has no tasks; its tasks go in a later JOIN. When the first reached
the manager last (tests/integration/test_members_big.py: the transport let later messages
overtake it, clerk._transport now keeps a link's order), the manager listed the node with no
tasks and WELCOMEd it with that list; a WELCOME's list was not checked against the node's
tasks, and once the node ACKed its epoch no heartbeat brought the list again: every node
listed it with none for good. Hypothesis draws the cluster's size, a seed, the network's
jitter (up to many round trips, so a JOIN may arrive after the next), and when each late
node's workers are ready. Then, within ``CONVERGE_BOUND`` simulated seconds, every live
node's row of every member holds exactly the tasks that member announces.

It also found the joiner's side of it: told the others' set by digest while it announced none,
the joiner asked for that set; its own tasks, announced next, are that set, and holding it
ended the fetch (``TaskSets.add``) without the rows that waited for it taking it, and with no
retry left to look again: the joiner listed every other member with no tasks for good."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clerk._simnet import SimNetwork
from tests.unit.simcluster import every_set_listed
from tests.unit.simdepth import examples

CONVERGE_BOUND = 10.0
TASKS = tuple(f"app.tasks:T{i:03d}" for i in range(20))


def run(n_settled: int, n_late: int, seed: int, jitter: float,
        ready: list[float], digests: bool) -> None:
    net = SimNetwork(seed, delay=0.0005, jitter=jitter)
    late = {f"late{i}" for i in range(n_late)}
    announced: dict[str, tuple[str, ...]] = {}

    def tasks_of(name: str) -> tuple[str, ...]:
        return () if name in late and name not in announced else TASKS

    net.tasks_of = tasks_of
    settled = [f"n{i}" for i in range(n_settled)]
    if not digests:
        net.older = set(settled) | late  # (member lists with every entry)
    seeds = tuple(f"{x}:7400" for x in settled)
    for name in settled:
        net.add_node(name, seeds=tuple(s for s in seeds if not s.startswith(name + ":")))
    net.run_for(2.0)
    for i, name in enumerate(sorted(late)):
        node = net.add_node(name, seeds=seeds)

        def workers_ready(node=node, name=name) -> None:  # type: ignore[no-untyped-def]
            announced[name] = TASKS
            net.apply(node, node.core.set_tasks(TASKS, net.now))
            net.reschedule(node)

        net.at(net.now + ready[i % len(ready)], workers_ready)
    net.run_for(max(ready) + 0.01)

    done = net.run_until_true(lambda: every_set_listed(net), limit=CONVERGE_BOUND, step=0.01)
    views = {x.name: {r.name: len(r.tasks) for r in x.core.members} for x in net.live()}
    assert done is not None, f"not listed right {CONVERGE_BOUND} s after: {views}"


@example(2, 1, 241, 0.005, [0.0625], True)  # the joiner's own set, asked for, then its own
@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.integers(1, 2), st.integers(0, 2**32),
       st.sampled_from([0.0005, 0.005, 0.02, 0.05]),
       st.lists(st.floats(0.0, 0.1), min_size=1, max_size=2), st.booleans())
def test_a_node_whose_tasks_come_after_its_first_join_is_listed_with_them(
        n_settled: int, n_late: int, seed: int, jitter: float, ready: list[float],
        digests: bool) -> None:
    run(n_settled, n_late, seed, jitter, ready, digests)
