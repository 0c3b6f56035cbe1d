"""Hostile input against the pure core: the term bound, forged and replayed messages.

Runs the real :class:`~clerk._core.NodeCore` on the deterministic simulated network
(:mod:`clerk._simnet`) and feeds it what a stranger on an ``--insecure`` network could send.
Every forged message must be dropped and counted (``NodeCore.dropped``) and must leave the
cluster as it was: same manager, same term, everyone still agreeing.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import clerk._core as core_mod
from clerk._core import (
    Deliver,
    Dropped,
    LeftUnlisted,
    MemberDown,
    NodeCore,
    Received,
    Role,
    Send,
    Start,
    Stopped,
)
from clerk._messages import (
    Ack,
    Claim,
    Coordinator,
    Execute,
    Handover,
    Heartbeat,
    Join,
    Leave,
    MemberInfo,
    Peer,
    Refuse,
    Welcome,
)
from clerk._simnet import SimNetwork

STRANGER = Peer("mallory", "10.66.6.6:7400", "evil", 2**62)


def formed(n: int = 3, seed: int = 1) -> SimNetwork:
    net = SimNetwork(seed)
    names = [f"n{i}" for i in range(n)]
    seeds = tuple(f"{x}:7400" for x in names)
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None, limit=10.0) is not None
    net.run_for(0.5)
    return net


def feed(net: SimNetwork, name: str, msg: object) -> list[object]:
    """Hand ``msg`` to node ``name`` as if it arrived from the network; return the effects."""
    seen: list[object] = []

    def grab(node: object, event: object, effects: list[object]) -> None:
        if node is net.nodes[name] and isinstance(event, Received) and event.msg is msg:
            seen.extend(effects)

    net.observers.append(grab)  # type: ignore[arg-type]
    try:
        net.inject(name, Received(msg))  # type: ignore[arg-type]
    finally:
        net.observers.remove(grab)  # type: ignore[arg-type]
    return seen


def dropped(net: SimNetwork) -> dict[str, int]:
    total: dict[str, int] = {}
    for node in net.nodes.values():
        for reason, count in node.core.dropped.items():
            total[reason] = total.get(reason, 0) + count
    return total


# --- the term bound --------------------------------------------------------------------------


@pytest.mark.parametrize("term", [core_mod.MAX_TERM_JUMP * 2, 2**63 - 1])
def test_a_claim_from_the_far_future_is_dropped_everywhere(term: int) -> None:
    net = formed()
    before = net.agreed()
    assert before is not None
    for node in net.nodes.values():
        forged = Coordinator(STRANGER, term, Claim(term, 2**62, "mallory", STRANGER.address))
        effects = feed(net, node.name, forged)
        assert any(isinstance(e, Dropped) and e.reason == "term_jump" for e in effects)
        assert not any(isinstance(e, Send) for e in effects)  # no answer to a stranger
    net.run_for(2.0)
    assert net.agreed() == before
    assert all(n.core.max_term == before[1] for n in net.nodes.values())
    assert dropped(net) == {"term_jump": 3}


def test_a_claim_within_the_bound_is_followed_and_the_cluster_recovers_from_it() -> None:
    """Without CURVE a stranger can always claim ``term + 1`` (that is what the cookie is
    for); the bound only keeps it from poisoning the term space. Once it is silent, the cluster
    elects a real manager again within a failover."""
    net = formed()
    _, term = net.agreed() or ("", 0)
    jump = term + core_mod.MAX_TERM_JUMP  # the largest step the bound lets through
    for node in net.nodes.values():
        feed(net, node.name, Coordinator(STRANGER, jump, Claim(jump, 0, "mallory",
                                                                STRANGER.address)))
    assert net.run_until_true(lambda: net.agreed() is not None, limit=5.0) is not None
    manager, new_term = net.agreed() or ("", 0)
    assert manager.startswith("n") and new_term == jump + 1


def test_a_spray_of_far_terms_moves_the_horizon_once_per_probe_interval() -> None:
    net = formed()
    core = net.nodes["n0"].core
    start = core.max_term
    for i in range(50):
        feed(net, "n0", Heartbeat(STRANGER, 2**62 + i, 1, 1))
    assert core.max_term == start  # nothing followed
    assert core.term_bound.horizon == start + core.max_term_jump  # moved once, not 50 times
    assert core.dropped["term_jump"] == 50
    # Aiming just past the moved horizon does not work either within the same interval.
    target = core.term_bound.horizon + core.max_term_jump + 1
    feed(net, "n0", Heartbeat(STRANGER, target, 1, 1))
    assert core.max_term == start
    net.run_for(net.timings.probe_interval)
    feed(net, "n0", Heartbeat(STRANGER, 2**62, 1, 1))
    assert core.term_bound.horizon == start + 2 * core.max_term_jump


def test_a_partitioned_side_that_ran_many_elections_still_merges(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny bound (2), one side of a partition runs a dozen failovers and gets far ahead
    of the other; after the heal its messages are first dropped as too far in the future, each
    one moves the other side's horizon, and the cluster merges on the newer side's manager."""
    monkeypatch.setattr(core_mod, "MAX_TERM_JUMP", 2)
    net = formed(5, seed=7)
    names = sorted(net.nodes)
    minority, majority = names[:2], names[2:]
    net.partition(minority, majority)
    net.run_for(3.0)
    for _ in range(12):  # crash the majority's manager again and again
        view = {net.nodes[x].core.manager for x in majority if net.nodes[x].up}
        boss = next(iter(view - {None}), None)
        if boss is not None:
            net.crash(boss)
            net.run_for(1.5)
            net.restart(boss)
        net.run_for(1.5)
    far = max(net.nodes[x].core.term for x in majority)
    near = max(net.nodes[x].core.term for x in minority)
    assert far - near > 2 * core_mod.MAX_TERM_JUMP, (far, near)
    net.heal()
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == 5,
                              limit=20.0) is not None, net.summary()
    assert dropped(net).get("term_jump", 0) > 0  # the bound was in play, and was overcome
    _, term = net.agreed() or ("", 0)
    assert term >= far


def test_the_default_bound_is_far_above_what_a_cluster_reaches() -> None:
    # A node claims highest + 1, so a side must run this many elections unseen to hit it.
    assert core_mod.MAX_TERM_JUMP >= 1_000_000
    # ...and far below the 64-bit limit: an attacker needs billions of messages to get there.
    assert (2**63) // core_mod.MAX_TERM_JUMP > 8 * 10**12


# --- forged, replayed and reordered messages -------------------------------------------------


def manager_and_follower(net: SimNetwork) -> tuple[NodeCore, NodeCore]:
    boss = next(n.core for n in net.nodes.values() if n.core.role is Role.MANAGER)
    other = next(n.core for n in net.nodes.values() if n.core.role is Role.FOLLOWER)
    return boss, other


def test_forged_refuse_does_not_stop_a_follower() -> None:
    net = formed()
    boss, follower = manager_and_follower(net)
    fake = Peer(boss.me.name, "10.66.6.6:1", "evil", boss.me.priority)
    for sender, term in ((STRANGER, follower.term), (fake, follower.term),
                         (boss.me, follower.term - 1)):  # the last: an old REFUSE replayed
        effects = feed(net, follower.me.name, Refuse(sender, term, "go away"))
        assert not any(isinstance(e, Stopped) for e in effects)
        assert [e.reason for e in effects if isinstance(e, Dropped)] == ["refuse_stranger"]
    assert follower.role is Role.FOLLOWER


def test_forged_leave_from_a_non_member_or_stale_incarnation_is_dropped() -> None:
    net = formed()
    boss, follower = manager_and_follower(net)
    stale = Peer(follower.me.name, follower.me.address, "old-incarnation", follower.me.priority)
    for sender in (STRANGER, stale):
        effects = feed(net, boss.me.name, Leave(sender, boss.term))
        # (The manager's core hands it to the task layer, which merges an OFFER of that
        # node it held, if any, and counts the frame as "not_member" otherwise:
        # clerk._leftoffers; a follower's core counts it.)
        assert LeftUnlisted(sender) in effects
        assert not any(isinstance(e, MemberDown) for e in effects)
    assert follower.me.name in boss.members
    net.run_for(1.0)
    assert net.agreed() == (boss.me.name, boss.term)


def test_an_execute_that_is_the_first_word_of_a_claim_is_refused_not_run() -> None:
    net = formed()
    boss, follower = manager_and_follower(net)
    forged = Execute(STRANGER, follower.term, "t", "r1", 1, {"x": 1}, 1000)
    effects = feed(net, follower.me.name, forged)
    assert not any(isinstance(e, Deliver) for e in effects)
    assert [e.reason for e in effects if isinstance(e, Dropped)] == ["execute_unannounced"]
    real = Execute(boss.me, boss.term, "t", "r2", 2, {"x": 1}, 1000)
    assert Deliver(real) in feed(net, follower.me.name, real)


def test_a_merge_handover_from_a_stranger_is_dropped() -> None:
    net = formed()
    boss, _ = manager_and_follower(net)
    ghost = MemberInfo("ghost", "10.9.9.9:7400", "g", 0, True, ())
    effects = feed(net, boss.me.name, Handover(STRANGER, 0, (ghost,), {"tasks": {}}))
    assert [e.reason for e in effects if isinstance(e, Dropped)] == ["handover_stranger"]
    assert "ghost" not in boss.members
    # A stale claim first (which a manager answers) does not make the stranger a known one.
    low = Peer("low", "10.66.6.7:7400", "l", -1)
    feed(net, boss.me.name, Coordinator(low, 0, Claim(0, -1, low.name, low.address)))
    effects = feed(net, boss.me.name, Handover(low, 0, (ghost,), {"tasks": {}}))
    assert [e.reason for e in effects if isinstance(e, Dropped)] == ["handover_stranger"]


def test_replayed_old_heartbeat_and_coordinator_change_nothing() -> None:
    net = formed()
    boss, follower = manager_and_follower(net)
    old_boss = boss.me.name
    boss_node = net.nodes[old_boss]
    net.crash(old_boss)
    assert net.run_until_true(lambda: net.agreed() is not None, limit=5.0) is not None
    view = net.agreed()
    old_term = boss.term
    for node in net.live():
        feed(net, node.name, Heartbeat(boss_node.core.me, old_term, 1, 0))
        feed(net, node.name, Coordinator(boss_node.core.me, old_term,
                                         Claim(old_term, boss.me.priority, old_boss,
                                               boss.me.address)))
    net.run_for(1.0)
    assert net.agreed() == view


def test_a_flood_of_forged_joins_is_bounded_and_real_joiners_still_get_in() -> None:
    net = formed()
    boss, _ = manager_and_follower(net)
    for i in range(10_000):
        p = Peer(f"forged{i}", f"10.0.{i // 250}.{i % 250}:7400", f"i{i}", 0)
        feed(net, boss.me.name, Join(p, 0))
    assert len(boss.members) <= 3 + core_mod.MAX_PROBATION
    assert boss.dropped["join_flood"] >= 10_000 - core_mod.MAX_PROBATION
    net.run_for(net.timings.member_timeout + 1.0)  # the forged ones never ack: expired
    assert len(boss.members) == 3
    late = net.add_node("n9", seeds=("n2:7400",))
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == 4,
                              limit=5.0) is not None
    assert late.name in boss.members
    assert len(boss._lost) == 0  # forged members that never acked are not probed for an hour
    assert isinstance(Ack, type)


# --- the cookie ------------------------------------------------------------------------------


def test_cookie_from_env_wins_over_the_default_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clerk._security import keys_from_cookie, load_cookie

    monkeypatch.setenv("HOME", str(tmp_path))
    cookie = b"s3cret-s3cret-s3cret"
    assert load_cookie(None, env={"CLERK_COOKIE": "  s3cret-s3cret-s3cret \n"}) == cookie
    assert not (tmp_path / ".clerk").exists()  # nothing created when the env var is set
    assert keys_from_cookie(b"s3cret") == keys_from_cookie(b"s3cret")
    assert keys_from_cookie(b"s3cret").public != keys_from_cookie(b"other").public


def test_default_cookie_is_created_0600_once_and_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat

    from clerk._security import load_cookie

    monkeypatch.setenv("HOME", str(tmp_path))
    first = load_cookie(None, env={})
    path = tmp_path / ".clerk" / "cookie"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 32
    assert load_cookie(None, env={}) == first  # the same cookie next time


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_cookie_file_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    from clerk._errors import ConfigError
    from clerk._security import load_cookie

    path = tmp_path / "cookie"
    path.write_text("secret\n")
    path.chmod(mode)
    with pytest.raises(ConfigError, match="readable by group or others") as err:
        load_cookie(str(path))
    assert str(path) in str(err.value) and "chmod 600" in str(err.value)


def test_a_forged_member_list_is_learned_only_up_to_the_cap() -> None:
    core = NodeCore(Peer("j", "j:7400", "j1", 0), now=0.0, rng=random.Random(0),
                    seeds=("seed:7400",))
    core.handle(Start(), 0.0)
    assert core.role is Role.JOINING
    many = tuple(MemberInfo(f"m{i}", f"10.1.{i // 250}.{i % 250}:7400", "x", 0, True, ())
                 for i in range(5000))
    effects = core.handle(Received(Welcome(STRANGER, 0, None, many)), 0.1)
    assert len(core.members) == core_mod.MAX_LEARN
    assert [e.reason for e in effects if isinstance(e, Dropped)] == ["member_table_full"]
