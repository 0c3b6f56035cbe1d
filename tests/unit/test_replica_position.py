"""Where a replica stands (clerk._replica: ``caught_up``, ``position``, ``offer_keys``), and
the COORDINATOR field that announces it (clerk._messages.TableAt, the codec's ``OMIT_NONE``)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from clerk._codec import DecodeError, _compile_dataclass, decode, encode
from clerk._messages import TABLE_MARK, Claim, Coordinator, Peer, TableAt, reads_table_at
from clerk._replica import Replica, ReplicaLog, handover_delta, offer_keys, row_key

ROW = "x" * 400  # a row's padding: a few rows fill a small chunk


def _put(log: ReplicaLog, task: str, value: int) -> None:
    log.put(row_key(task), json.dumps({"state": value, "pad": ROW}, separators=(",", ":")))


def _state(rep: Replica, task: str) -> int | None:
    text = dict(rep.items()).get(row_key(task))
    return None if text is None else int(json.loads(text)["state"])


def _log() -> ReplicaLog:
    log = ReplicaLog("L")
    for i in range(4):
        _put(log, f"t{i}", 0)
    log.mark_complete()
    return log


def _apply_all(log: ReplicaLog, rep: Replica, chunk: int = 10**9) -> None:
    while (d := log.delta(rep.seq if rep.log == log.log else -1, chunk)) is not None:
        rep.apply(d)


def test_two_replicas_at_one_sequence_can_hold_different_versions_of_a_row() -> None:
    # Why a sequence alone does not say what a replica holds: A gets r's change at once; B,
    # lagging, gets a chunk cut before r's next change (r's entry moved past the cut).
    log = _log()
    a, b = Replica(), Replica()
    _apply_all(log, a)
    _apply_all(log, b)
    _put(log, "r", 1)  # r's first change
    _put(log, "t0", 1)
    _apply_all(log, a)  # A holds r = 1
    _put(log, "t1", 1)
    _put(log, "r", 2)  # r again: its change now sorts after t1's
    d = log.delta(b.seq, max_chars=500)  # B: a chunk ending before r
    assert d is not None and d.upto < log.seq and not d.done
    b.apply(d)
    assert _state(b, "r") is None and _state(a, "r") == 1
    # B's sequence is past r's first change, yet B lacks it: B is not caught up, so it
    # announces no position, and A offers it every row (r = 1 included).
    assert b.seq > 0 and b.position() is None
    assert offer_keys(a, b.position()) is None


def test_a_caught_up_replica_lacks_only_rows_changed_after_its_sequence() -> None:
    log = _log()
    a, b = Replica(), Replica()
    _apply_all(log, a)
    _apply_all(log, b)
    assert b.caught_up and b.position() == TableAt("L", log.seq)
    _put(log, "t2", 7)
    _apply_all(log, a)  # A is ahead of B by one row
    assert offer_keys(a, b.position()) == {row_key("t2")}
    assert offer_keys(b, b.position()) == set()
    assert offer_keys(a, a.position()) == set()
    # The manager's own log answers the same from its exact change sequences.
    assert offer_keys(log, b.position()) == {row_key("t2")}
    # Another log, no position, an unnamed log: every row.
    assert offer_keys(a, TableAt("M", 99)) is None
    assert offer_keys(a, None) is None
    assert offer_keys(Replica(), TableAt("", -1)) is None


def test_rows_of_an_earlier_log_have_no_known_sequence_and_are_offered() -> None:
    old = _log()
    rep = Replica()
    _apply_all(old, rep)
    new = ReplicaLog("N")
    _put(new, "t0", 5)
    d = new.delta(-1)
    assert d is not None and not d.done  # the new log is not complete yet
    rep.apply(d)
    assert rep.log == "N" and not rep.caught_up
    # t0 came with the new log (at sequence 0); t1-t3 are the earlier log's: no sequence.
    assert offer_keys(rep, TableAt("N", 0)) == {row_key(f"t{i}") for i in (1, 2, 3)}
    assert offer_keys(rep, TableAt("N", 10**6)) == {row_key(f"t{i}") for i in (1, 2, 3)}


def test_a_hand_over_of_the_rows_the_successor_lacks_leaves_it_caught_up() -> None:
    log = _log()
    rep = Replica()
    _apply_all(log, rep)
    _put(log, "t3", 9)
    d = log.delta(rep.seq)
    assert d is not None
    raw = {"delta": 1, "log": d.log, "base": d.base, "upto": d.upto, "rows": list(d.rows),
           "gone": list(d.gone)}
    hd = handover_delta(raw)
    assert hd is not None and hd.done
    rep.apply(hd)
    assert rep.position() == TableAt("L", log.seq)
    rep.reset(log.table())  # a whole table: outside any log, no position
    assert rep.position() is None


PEER = Peer("a", "h:1", "0123456789ab" + TABLE_MARK + "+b", 0)
CLAIM = Claim(3, 0, "a", "h:1")


@dataclasses.dataclass(frozen=True, slots=True)
class OldCoordinator:
    """COORDINATOR as an older build declares it (no ``table``)."""

    sender: Peer
    term: int
    claim: Claim


def test_an_older_node_reads_a_coordinator_without_a_table_as_before() -> None:
    old_validate = _compile_dataclass(OldCoordinator)
    plain = encode(Coordinator(PEER, 3, CLAIM))
    assert b"table" not in plain[2]
    assert old_validate(json.loads(plain[2]), "coordinator") == OldCoordinator(PEER, 3, CLAIM)
    with_table = encode(Coordinator(PEER, 3, CLAIM, TableAt("L", 17)))
    with pytest.raises(DecodeError):  # why it is sent only to a node that reads it
        old_validate(json.loads(with_table[2]), "coordinator")
    assert decode(with_table) == Coordinator(PEER, 3, CLAIM, TableAt("L", 17))
    assert decode(plain).table is None  # type: ignore[union-attr]
    assert reads_table_at(PEER) and not reads_table_at(Peer("b", "h:2", "0123456789ab+b", 0))


def test_every_row_of_a_big_table_goes_in_offers_within_the_message_limit() -> None:
    from clerk._messages import Offer
    from clerk._record import unpack_table
    from clerk._replication import _keep_part, offer_parts

    rows = {f"t{i:05d}": {"state": {"pad": "y" * 400}, "has_state": True}
            for i in range(6000)}  # ~2.6 MB of table text: over one message
    parts = offer_parts(rows)
    assert len(parts) > 1
    got: dict[str, object] = {}
    for part in parts:
        encode(Offer(PEER, 3, part))  # each fits a message
        got.update(unpack_table(part)["tasks"])
    assert got == rows
    (part,) = offer_parts({})
    assert part == {"packed": 1, "chunks": ['{"tasks":{}}'], "part": 0, "of": 1,
                    "id": part["id"]}
    # While they wait (a takeover loading its table), every part of the newest OFFER of a
    # sender is kept; an OFFER of another claim replaces them.
    kept: dict[str, list[Offer]] = {}
    for part in parts:
        _keep_part(kept, Offer(PEER, 3, part))
    assert len(kept[PEER.name]) == len(parts)
    _keep_part(kept, Offer(PEER, 4, parts[0]))
    assert [m.term for m in kept[PEER.name]] == [4]


def test_a_claim_says_where_its_replica_stands_only_to_nodes_that_read_it() -> None:
    import random

    from clerk import _election
    from clerk._core import NodeCore, Received, Role, Send, Start
    from clerk._messages import Join

    me = Peer("m", "h:0", "000000000000" + TABLE_MARK + "+b", 0)
    new = Peer("a", "h:1", "111111111111" + TABLE_MARK + "+b", 0)
    old = Peer("b", "h:2", "222222222222+b", 0)
    core = NodeCore(me, now=0.0, rng=random.Random(1))
    core.handle(Start(), 0.0)
    for p in (new, old):
        core.handle(Received(Join(p, core.term, ())), 0.0)
    log = _log()
    _apply_all(log, core.replica)
    assert core.replica.position() == TableAt("L", log.seq)

    def coordinators() -> dict[str, Coordinator]:
        core.role = Role.FOLLOWER  # (a claim of a node that was not the manager)
        core._out.clear()
        _election.take_claim(core, 1.0)
        return {e.to: e.msg for e in core._out
                if isinstance(e, Send) and isinstance(e.msg, Coordinator)}

    sent = coordinators()
    assert sent[new.address].table == TableAt("L", log.seq)
    assert sent[old.address].table is None  # (and the codec leaves it out: see above)
    # A member that follows the claim from its holder's COORDINATOR knows where it stands.
    member = NodeCore(new, now=0.0, rng=random.Random(2))
    member.handle(Start(), 0.0)
    member.handle(Received(sent[new.address]), 1.0)
    assert member.manager == me.name and member.manager_table == TableAt("L", log.seq)
    # A replica not caught up (a chunk short of the end) says nothing.
    _put(log, "t0", 3)
    _put(log, "t1", 3)
    d = log.delta(core.replica.seq, max_chars=500)
    assert d is not None and not d.done
    core.replica.apply(d)
    assert coordinators()[new.address].table is None
