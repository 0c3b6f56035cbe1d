"""A merge is confirmed once it is in the winner's table, not when its HANDOVER arrives.

The real cores and Scheduler, a table over the message limit (the merge's HANDOVER goes in
parts), and new managers that take ``load_s`` seconds to load the table they take over (a real
node loads a 10,000-task table in slices for ~1 s on a loaded machine; merges wait meanwhile).

Three sides: the old manager ``L`` (with an operator's pause: a fact only its table carries),
``W`` and ``X``, each elected with a term above ``L``'s, ``X`` above ``W``. ``L`` meets ``W``
first, while ``W`` is still loading its table, and hands its table over; ``W`` then meets ``X``
and steps down to it before its load is done, dropping the merge it held.

Rule: the pause is in the table of the manager after the heal. Before, ``W`` confirmed each part
(MERGED) when it arrived: ``L`` stopped sending it, and the pause was lost with ``W``'s held
merges. Now ``W`` confirms a part once merged; ``L``, unconfirmed, sends it again to the manager
it follows next (``X``).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from clerk import _handover
from clerk._coretypes import Role, Send
from clerk._messages import Handover
from clerk._simnet import SimNetwork
from clerk._simtasks import SimLedger
from tests.unit import test_sim_bigtable as big
from tests.unit import test_sim_state as base
from tests.unit.simdepth import examples

TASK = "filler007"  # disabled: never runs, holds no state; its pause is only in the table


def _scenario(seed: int, load_s: float, meet_x_after: float, crash_w: bool = False) -> None:
    net, world, names = big.build(5, seed)
    old = net.managers()[0].name
    assert old == "n4"
    world.load_s = load_s
    net.partition(["n4"], ["n0", "n1"])  # and n2, n3: three sides
    layer = world.layers[old]
    layer.scheduler.set_paused(TASK, True, old, layer.wall())
    layer._replicate()
    w = net.nodes["n1"]
    assert net.run_until_true(lambda: w.core.is_manager, limit=3.0) is not None
    net.partition(["n4", "n0", "n1"])  # L meets W (loading its table until load_s from now)
    loaded_by = net.now + load_s
    lc = net.nodes[old].core
    assert net.run_until_true(lambda: lc.role is Role.FOLLOWER and lc.manager == "n1",
                              limit=3.0, step=0.001) is not None
    net.run_for(meet_x_after)
    if crash_w:
        net.crash("n1")  # W dies before its load is done, with the merge it held
    else:
        net.heal()  # W meets X
        assert net.run_until_true(lambda: not w.core.is_manager, limit=5.0) is not None
    assert net.now < loaded_by, "the scenario needs W to stop managing while it loads"
    assert world.layers["n1"].scheduler.records[TASK].paused is False
    base._settle(net, names)
    # (the winner loads its table, then merges what it held meanwhile, and confirms it)
    assert net.run_until_true(lambda: not lc._merge_out, limit=10.0) is not None
    winner = net.managers()[0].name
    assert world.layers[winner].scheduler.records[TASK].paused, (
        "the pause handed to a winner that lost its claim while loading was lost", winner)


def test_a_winner_that_steps_down_while_loading_does_not_lose_a_merge_it_held() -> None:
    _scenario(seed=1, load_s=1.5, meet_x_after=0.05)


def test_a_winner_that_dies_while_loading_does_not_lose_a_merge_it_held() -> None:
    _scenario(seed=1, load_s=1.5, meet_x_after=0.05, crash_w=True)


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@example(seed=2, load_s=2.0, meet_x_after=0.3, crash_w=False)
@given(seed=st.integers(0, 2**32 - 1), load_s=st.floats(1.5, 3.0),
       meet_x_after=st.floats(0.0, 0.5), crash_w=st.booleans())
def test_a_merge_held_while_loading_survives_whatever_the_timing(
        seed: int, load_s: float, meet_x_after: float, crash_w: bool) -> None:
    _scenario(seed, load_s, meet_x_after, crash_w)


def test_a_winner_of_an_older_build_gets_the_table_again_once_not_ten_times() -> None:
    """It never confirms (no ``MERGE_MARK``): the loser sends its parts again
    ``MERGE_OLD_RESENDS`` times once it knows the winner's build (from the list the winner
    sends it), not for ``MERGE_GIVE_UP`` s (ten times: ~50 MB at 10,000 tasks)."""
    world = SimLedger(interval_ms=200, fillers=big.FILLERS)
    net = SimNetwork(5, layer=world, max_bytes=big.MAX_BYTES)
    names = ["n0", "n1", "n2"]
    net.older = {"n0", "n1"}
    for name in reversed(names):
        net.add_node(name, seeds=tuple(f"{x}:7400" for x in names))
    assert net.run_until_true(lambda: net.agreed() is not None, limit=10.0) is not None
    assert net.managers()[0].name == "n2"
    net.partition(["n2"])
    assert net.run_until_true(lambda: len(net.managers()) == 2, limit=5.0) is not None
    net.run_for(0.5)
    sent: Counter[str] = Counter()
    net.observers.append(lambda node, event, effects: sent.update(
        _handover.part_id(e.msg.state) for e in effects
        if node.name == "n2" and isinstance(e, Send) and isinstance(e.msg, Handover)
        and e.to == "n1:7400"))
    net.heal()
    net.run_for(_handover.MERGE_GIVE_UP + _handover.MERGE_RETRY_MAX)
    assert net.nodes["n2"].core.role is Role.FOLLOWER
    assert len(sent) >= 2, sent  # (the table went in parts)
    assert set(sent.values()) == {1 + _handover.MERGE_OLD_RESENDS}, sent
    assert not net.nodes["n2"].core._merge_out
