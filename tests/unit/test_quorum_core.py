"""Quorum mode in the core (clerk._quorumcore) on the simulated network: only voters claim,
phase 1 before COORDINATOR, a minority side has no manager, promises survive restarts."""

from __future__ import annotations

import random

import pytest

from clerk._codec import MAX_MESSAGE_BYTES, decode, encode
from clerk._core import (
    NodeCore,
    QuorumChanged,
    Received,
    Role,
    Send,
    Start,
    Tick,
    VoterWrite,
    WriteCommitted,
)
from clerk._messages import Accept, Claim, Peer, Prepare, Promise, Reject
from clerk._quorum import Proposer
from clerk._record import unpack_table
from clerk._simnet import SimNetwork

NAMES = ["n0", "n1", "n2", "n3", "n4"]
VOTERS = ("n0", "n1", "n2")  # the three lowest-ranked: the bully alone would pick n4


def build(voters: tuple[str, ...] = VOTERS, seed: int = 1) -> SimNetwork:
    net = SimNetwork(seed, voters=voters)
    seeds = tuple(f"{x}:7400" for x in NAMES[-3:])
    for name in reversed(NAMES):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == 5,
                              limit=15.0, step=0.01) is not None, net.summary()
    return net


def manager(net: SimNetwork) -> str:
    ms = net.managers()
    assert len(ms) == 1, [m.name for m in ms]
    return ms[0].name


def test_the_highest_voter_becomes_manager_not_the_highest_node() -> None:
    net = build()
    assert manager(net) == "n2"
    st = net.nodes["n4"].core.quorum_status()
    assert st["mode"] == "quorum" and st["quorum"] == "ok" and st["voters"] == list(VOTERS)
    assert net.nodes["n2"].core.status()["quorum"]["promised"][2] == "n2"
    assert all(net.nodes[v].disk is not None for v in VOTERS)
    assert all(net.nodes[n].disk is None for n in ("n3", "n4"))  # non-voters write nothing


def test_manager_crash_fails_over_to_the_next_voter_fast() -> None:
    net = build()
    t0 = net.now
    net.crash("n2")
    took = net.run_until_true(lambda: net.agreed() is not None, limit=5.0, step=0.001)
    assert took is not None and manager(net) == "n1"
    assert took - t0 < 0.2  # kill -9: tens of ms, as in the default mode (plus one round trip)


def test_a_side_without_a_majority_of_voters_has_no_manager() -> None:
    net = build()
    net.partition(["n2", "n3", "n4"])  # the manager keeps only one voter (itself)
    net.run_for(5.0)
    minority = [net.nodes[n] for n in ("n2", "n3", "n4")]
    assert not any(n.core.role is Role.MANAGER for n in minority)
    assert net.nodes["n2"].core.quorum_status()["quorum"] == "lost"
    assert net.nodes["n2"].core.quorum_status()["detail"] == "2 of 3 voters unreachable"
    majority = [n for n in net.managers() if n.name in ("n0", "n1")]
    assert [n.name for n in majority] == ["n1"]
    net.heal()
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == 5,
                              limit=15.0, step=0.01) is not None
    assert manager(net) in VOTERS
    assert all(n.core.quorum_status()["quorum"] == "ok" for n in net.live())


def test_quorum_lost_and_back_is_reported() -> None:
    net = build()
    seen: list[tuple[str, bool]] = []
    net.observers.append(lambda node, ev, effects: seen.extend(
        (node.name, e.ok) for e in effects if isinstance(e, QuorumChanged)))
    net.crash("n0")
    net.crash("n1")
    net.run_for(3.0)
    assert ("n2", False) in seen and not net.managers()
    net.restart("n0")
    assert net.run_until_true(lambda: net.agreed() is not None, limit=10.0) is not None
    assert ("n2", True) in seen[seen.index(("n2", False)):]


def test_a_restarted_voter_keeps_its_promise() -> None:
    net = build()
    promised = net.nodes["n1"].disk["promised"]  # type: ignore[index]
    net.crash("n1")
    net.restart("n1")
    core = net.nodes["n1"].core
    assert core.quorum_status()["promised"] == promised
    assert core.max_term >= promised[0]  # its own next ballot goes above its promise


def core_of(name: str, voters: tuple[str, ...], record: dict | None = None) -> NodeCore:
    return NodeCore(Peer(name, f"{name}:1", "inc", 0), now=0.0, rng=random.Random(1),
                    voters=voters, voter_record=record)


def _sent(effect: object) -> Send:
    """A VoterWrite's ``then`` effect that is a Send (narrowed, for mypy)."""
    assert isinstance(effect, Send), effect
    return effect


def sends(effects: list) -> list:
    out = [e for e in effects if isinstance(e, Send)]
    for e in effects:
        if isinstance(e, VoterWrite):
            out += [s for s in e.then if isinstance(s, Send)]
    return out


def test_voter_answers_only_after_its_write_and_rejects_lower_ballots() -> None:
    v = core_of("v", ("v", "a", "b"))
    a, b = Peer("a", "a:1", "i", 0), Peer("b", "b:1", "i", 0)
    hi, lo = Claim(5, 0, "b", "b:1"), Claim(4, 0, "a", "a:1")
    out = v.handle(Received(Prepare(b, 5, hi)), 0.0)
    writes = [e for e in out if isinstance(e, VoterWrite)]
    assert len(writes) == 1 and writes[0].record["promised"] == [5, 0, "b"]
    assert not [e for e in out if isinstance(e, Send)]  # the PROMISE only after the write
    assert isinstance(_sent(writes[0].then[0]).msg, Promise)
    out = v.handle(Received(Prepare(a, 4, lo)), 0.0)
    rej = [s.msg for s in sends(out)]
    assert len(rej) == 1 and isinstance(rej[0], Reject) and rej[0].promised == hi
    assert not [e for e in out if isinstance(e, VoterWrite)]
    out = v.handle(Received(Accept(a, 4, lo, 1, None)), 0.0)
    assert isinstance(sends(out)[0].msg, Reject)


def test_a_ballot_not_the_senders_own_is_dropped() -> None:
    v = core_of("v", ("v", "a"))
    a = Peer("a", "a:1", "i", 0)
    out = v.handle(Received(Prepare(a, 5, Claim(5, 0, "b", "b:1"))), 0.0)
    assert not sends(out) and v.dropped["quorum_ballot"] == 1


def test_corrupt_voter_record_is_an_error() -> None:
    with pytest.raises(ValueError):
        core_of("v", ("v",), {"version": 7})


def test_non_voter_ignores_the_record_and_never_claims() -> None:
    c = core_of("x", ("v",), {"version": 7})  # not a voter: the record is not read
    c.handle(Start(), 0.0)
    assert c.role is not Role.MANAGER
    for t in range(1, 40):
        c.handle(Tick(), t * 0.1)
        assert c.role is not Role.MANAGER


def test_single_voter_claims_once_its_own_vote_is_durable() -> None:
    c = core_of("v", ("v",))
    out = c.handle(Start(), 0.0)
    assert c.role is Role.CANDIDATE
    w = [e for e in out if isinstance(e, VoterWrite)]
    assert len(w) == 1 and _sent(w[0].then[0]).to == "v:1"  # its own PROMISE, to itself
    c.handle(Received(_sent(w[0].then[0]).msg), 0.001)
    assert c.role is Role.MANAGER and c.quorum_status()["quorum"] == "ok"


def test_every_survivor_reports_the_voters_it_reaches_after_losing_a_majority() -> None:
    net = build()
    net.crash("n2")
    net.crash("n1")
    net.run_for(1.5)
    for _ in range(30):  # stays true, not only at one moment (non-voters keep asking)
        net.run_for(0.1)
        for name in ("n0", "n3", "n4"):
            q = net.nodes[name].core.quorum_status()
            assert (q["quorum"], q["detail"], q["reachable"]) == (
                "lost", "2 of 3 voters unreachable", ["n0"]), (name, net.now, q)
    assert not net.managers()
    net.restart("n1")
    assert net.run_until_true(lambda: net.agreed() is not None, limit=10.0) is not None
    assert all(n.core.quorum_status()["quorum"] == "ok" for n in net.live())


def test_a_promise_of_ten_thousand_rows_travels_in_parts_under_the_message_limit() -> None:
    record = {"version": 1, "rows": {
        f"task{i:05d}": {"reserved": i, "accepted": [1, 0, "a"], "seq": 1,
                         "record": {"version": 3, "state": {"n": i, "pad": "x" * 100}}}
        for i in range(10_000)}, "promised": None}
    v = core_of("v", ("v", "a"), record)
    a = Peer("a", "a:1", "i", 0)
    ballot = Claim(5, 0, "a", "a:1")
    out = v.handle(Received(Prepare(a, 5, ballot)), 0.0)
    parts = [s.msg for s in sends(out)]
    assert len(parts) > 1 and all(isinstance(m, Promise) for m in parts)
    p = Proposer(ballot.key, ("v", "a"), 0.0)
    for m in parts:
        frames = encode(m)
        assert sum(len(f) for f in frames) <= MAX_MESSAGE_BYTES
        got = decode(frames)
        assert isinstance(got, Promise)
        p.on_promise("v", got.part, got.parts, unpack_table(got.rows))
    assert len(p.promises["v"]) == 10_000
    assert p.promises["v"]["task09999"].reserved == 9999


def test_a_large_write_is_split_into_several_commits() -> None:
    c = core_of("v", ("v",))
    w = [e for e in c.handle(Start(), 0.0) if isinstance(e, VoterWrite)]
    c.handle(Received(_sent(w[0].then[0]).msg), 0.001)
    assert c.role is Role.MANAGER
    rows = {f"t{i}": {"reserved": i, "record": {"version": 1, "pad": "y" * 2000}}
            for i in range(300)}  # ~600 KB: more than one part
    seqs, effects = c.quorum_write(rows, 0.002)
    assert len(seqs) > 1
    committed = []
    for e in effects:
        if isinstance(e, VoterWrite):
            for s in e.then:
                committed += [x.seq for x in c.handle(Received(_sent(s).msg), 0.003)
                              if isinstance(x, WriteCommitted)]
    assert committed == seqs
    assert c.proposer is not None and c.proposer.reserved("t299") == 299


def test_quorum_mode_does_not_import_a_deposed_managers_handed_over_table() -> None:
    """A merge HANDOVER in quorum mode: the deposed manager's table may hold a result whose
    write never committed; the new manager keeps to the voters' rows (phase 1) instead."""
    from types import SimpleNamespace

    from clerk._core import StateHandedOver
    from clerk._runner import TaskRunner

    merged: list[object] = []
    runner = SimpleNamespace(
        agent=SimpleNamespace(core=SimpleNamespace(quorum=object(), is_manager=True)),
        scheduler=SimpleNamespace(merge=lambda *a, **k: merged.append(a) or True))  # type: ignore[func-returns-value]
    TaskRunner.on_handover(runner, StateHandedOver("z", {"tasks": {}}, True),  # type: ignore[arg-type]
                           0.0, 0.0)
    assert merged == []


def test_quorum_mode_does_not_merge_a_members_offered_rows() -> None:
    """An OFFER in quorum mode: a member's data directory may hold a record whose write never
    committed; it is taken as an answer (init stops waiting for it), never merged."""
    from types import SimpleNamespace

    from clerk._messages import Offer, Peer
    from clerk._offerjob import OfferParts
    from clerk._runner import TaskRunner

    merged: list[object] = []
    answered: list[str] = []

    def runner(quorum: object, activate: bool | None = None) -> SimpleNamespace:
        return SimpleNamespace(
            agent=SimpleNamespace(core=SimpleNamespace(quorum=quorum, is_manager=True)),
            scheduler=SimpleNamespace(merge=lambda *a, **k: merged.append(a) or False,  # type: ignore[func-returns-value]
                                      offer_from=answered.append, active=True),
            _log_conflicts=lambda: None, _activate=activate, _offers_waiting={},
            _offer_parts=OfferParts())

    msg = Offer(Peer("m@x", "127.0.0.1:1", "i", 0), 1, {"tasks": {}})
    TaskRunner.on_offer(runner(object()), msg, 0.0, 0.0)  # type: ignore[arg-type]
    assert merged == [] and answered == ["m@x"]
    TaskRunner.on_offer(runner(None), msg, 0.0, 0.0)  # type: ignore[arg-type]
    assert len(merged) == 1 and answered == ["m@x", "m@x"]  # default mode merges
    loading = runner(None, activate=False)  # the table it takes over is still loading
    TaskRunner.on_offer(loading, msg, 0.0, 0.0)  # type: ignore[arg-type]
    assert len(merged) == 1 and answered == ["m@x", "m@x"]
    assert loading._offers_waiting == {"m@x": [msg]}  # merged once the table is loaded
