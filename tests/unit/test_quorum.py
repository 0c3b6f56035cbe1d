"""Quorum mode's registers (clerk._quorum): every promise/accept rule, the merge, commits, and
the proof sketch's two cases played out message by message."""

from __future__ import annotations

import json

import pytest

from clerk._quorum import (
    RECORD_VERSION,
    Proposer,
    Row,
    VoterRegister,
    ballot_from,
    chunk_rows,
    majority,
    merge_rows,
)

B1 = (1, 0, "a@h")
B2 = (2, 0, "b@h")
B2_LOW = (2, 0, "a@h")  # same term, lower name
VOTERS = ("a@h", "b@h", "c@h")


def rec(version: int, value: int = 0) -> dict[str, int]:
    return {"version": version, "value": value}


def test_majority_counts() -> None:
    assert [majority(n) for n in (1, 2, 3, 4, 5, 7)] == [1, 2, 2, 3, 3, 4]


def test_ballot_from_rejects_malformed() -> None:
    assert ballot_from([3, 1, "a"]) == (3, 1, "a")
    for bad in (None, [3, 1], [True, 1, "a"], [3, 1, 2], "x", [3.0, 1, "a"]):
        assert ballot_from(bad) is None


def test_promise_only_at_or_above_the_promised_ballot() -> None:
    v = VoterRegister()
    assert v.prepare(B2, "b:1")
    assert v.promised == B2 and v.promised_at == "b:1"
    assert not v.prepare(B1)  # lower: refused
    assert not v.prepare(B2_LOW)  # same term, lower rank: refused
    assert v.prepare(B2)  # the same ballot again (a resent PREPARE): promised again
    assert v.promised == B2


def test_accept_refused_below_the_promise_and_raises_it_above() -> None:
    v = VoterRegister()
    v.prepare(B2)
    assert not v.accept(B1, 1, {"t": {"reserved": 5, "record": rec(1)}})
    assert "t" not in v.rows
    b3 = (3, 0, "c@h")
    assert v.accept(b3, 1, {"t": {"reserved": 5, "record": rec(1)}})
    assert v.promised == b3  # accepting a higher ballot is promising it too


def test_reserved_only_grows_and_record_follows_the_newest_write() -> None:
    v = VoterRegister()
    assert v.accept(B1, 2, {"t": {"reserved": 7, "record": rec(2)}})
    # A reordered older write of the same ballot: neither reserved nor the record go back.
    assert v.accept(B1, 1, {"t": {"reserved": 6, "record": rec(1)}})
    assert v.rows["t"].reserved == 7 and v.rows["t"].record == rec(2)
    # A newer ballot replaces the record, but a lower reservation never lowers reserved.
    assert v.accept(B2, 1, {"t": {"reserved": 3, "record": rec(3)}})
    row = v.rows["t"]
    assert (row.reserved, row.record, row.accepted, row.seq) == (7, rec(3), B2, 1)


def test_a_reservation_alone_leaves_the_record() -> None:
    v = VoterRegister()
    assert v.accept(B1, 1, {"t": {"reserved": 1, "record": rec(1)}})
    assert v.accept(B2, 1, {"t": {"reserved": 2}, "u": {"reserved": 9}})
    assert (v.rows["t"].reserved, v.rows["t"].record, v.rows["t"].accepted) == (2, rec(1), B1)
    # A task first seen through a reservation has no record, and loses every merge to one.
    assert v.rows["u"].record is None
    assert merge_rows([{"u": v.rows["u"]}, {"u": Row(3, B1, 1, rec(5))}])["u"].record == rec(5)


def test_record_round_trip_and_corrupt_records_are_errors() -> None:
    v = VoterRegister()
    v.prepare(B2, "b:1")
    v.accept(B2, 4, {"t": {"reserved": None, "record": rec(1)}})
    raw = json.loads(json.dumps(v.record()))
    assert raw["version"] == RECORD_VERSION and raw["promised"] == list(B2)
    w = VoterRegister(raw)
    assert w.record() == v.record()
    for bad in ({"version": 99}, {"version": 1, "promised": [1]},
                {"version": 1, "promised": None, "rows": {"t": {"reserved": "x"}}},
                {"version": 1, "rows": []}):
        with pytest.raises(ValueError):
            VoterRegister(bad)


def test_merge_takes_max_reserved_and_the_newest_record() -> None:
    p1 = {"t": Row(9, B1, 5, rec(4)), "u": Row(1, B1, 1, rec(1))}
    p2 = {"t": Row(4, B2, 1, rec(3))}
    merged = merge_rows([p1, p2])
    assert merged["t"].reserved == 9  # the max over the majority
    assert merged["t"].record == rec(3)  # written under the higher ballot wins
    assert merged["u"].record == rec(1)  # a task only one voter holds is kept
    # Same (ballot, seq): the higher record version wins, in any order.
    a = {"t": Row(1, B1, 1, rec(1))}
    b = {"t": Row(1, B1, 1, rec(2))}
    assert merge_rows([a, b])["t"].record == rec(2) == merge_rows([b, a])["t"].record


def test_phase_one_needs_a_majority_and_every_part() -> None:
    p = Proposer(B2, VOTERS, 0.0)
    rows = {"t": Row(3, B1, 1, rec(1)).to_json()}
    assert not p.on_promise("a@h", 0, 1, rows)
    assert not p.on_promise("a@h", 0, 1, rows)  # a duplicate counts once
    assert not p.on_promise("x@h", 0, 1, {})  # not a voter
    assert not p.on_promise("b@h", 0, 2, {})  # first of two parts
    assert p.on_promise("b@h", 1, 2, {})
    assert p.ready and p.learned_reserved("t") == 3
    assert not p.on_promise("c@h", 0, 1, {})  # already done


def test_malformed_promise_is_not_counted() -> None:
    p = Proposer(B2, ("a@h",), 0.0)
    assert not p.on_promise("a@h", 0, 1, {"t": {"reserved": "no"}})
    assert not p.ready


def test_write_commits_on_a_majority_only() -> None:
    p = Proposer(B2, VOTERS, 0.0)
    seq = p.write({"t": {"reserved": 4, "record": rec(1)}}, 1.0)
    assert p.oldest_pending() == 1.0
    assert p.on_accepted("a@h", seq, 1.1) == []
    assert p.reserved("t") is None  # one of three: not committed
    assert p.on_accepted("x@h", seq, 1.1) == []  # a stranger does not count
    assert p.on_accepted("b@h", seq, 1.2) == [seq]
    assert p.reserved("t") == 4 and p.oldest_pending() is None
    assert p.on_accepted("c@h", seq, 1.3) == []  # the late third changes nothing


def test_commits_out_of_order_keep_the_newest_row() -> None:
    p = Proposer(B2, ("a@h",), 0.0)
    s1 = p.write({"t": {"reserved": 4, "record": rec(1)}}, 0.0)
    s2 = p.write({"t": {"reserved": 5, "record": rec(2)}}, 0.0)
    p.on_accepted("a@h", s2, 0.1)
    p.on_accepted("a@h", s1, 0.2)
    assert p.reserved("t") == 5


def test_a_result_write_does_not_hide_the_committed_reservation() -> None:
    p = Proposer(B2, ("a@h",), 0.0)
    s1 = p.write({"t": {"reserved": 8}}, 0.0)
    s2 = p.write({"t": {"reserved": None, "record": rec(3)}}, 0.0)
    p.on_accepted("a@h", s1, 0.1)
    p.on_accepted("a@h", s2, 0.2)
    assert p.reserved("t") == 8 and p.committed["t"] == (s2, rec(3))
    s3 = p.write({"t": {"reserved": 5}}, 0.0)  # (never lower)
    p.on_accepted("a@h", s3, 0.3)
    assert p.reserved("t") == 8


def _run_phase1(p: Proposer, voters: dict[str, VoterRegister], names: list[str]) -> None:
    for n in names:
        assert voters[n].prepare(p.ballot)
        p.on_promise(n, 0, 1, voters[n].rows_json())


def test_proof_case_accepted_before_promising_shows_the_reservation() -> None:
    """b1's reservation of slot 7 is accepted by {a, b}; b2 then promises with {b, c}: the
    shared voter b shows reserved 7, so b2 never reserves 7 again."""
    voters = {n: VoterRegister() for n in VOTERS}
    p1 = Proposer(B1, VOTERS, 0.0)
    _run_phase1(p1, voters, ["a@h", "b@h"])
    seq = p1.write({"t": {"reserved": 7, "record": rec(1)}}, 0.0)
    for n in ("a@h", "b@h"):
        assert voters[n].accept(B1, seq, p1.pending[seq].rows)
        p1.on_accepted(n, seq, 0.0)
    assert p1.reserved("t") == 7  # committed: slot 7 may be dispatched under b1
    p2 = Proposer(B2, VOTERS, 1.0)
    _run_phase1(p2, voters, ["b@h", "c@h"])
    assert p2.ready and p2.learned_reserved("t") == 7
    assert p2.table["t"].record == rec(1)  # the committed record survives too


def test_proof_case_promised_first_refuses_the_lower_write() -> None:
    """b2 promised by {b, c} before b1's write reaches b: b refuses it, so b1 cannot gather a
    majority ({a} alone) and never dispatches the slot b2 does not know about."""
    voters = {n: VoterRegister() for n in VOTERS}
    p1 = Proposer(B1, VOTERS, 0.0)
    _run_phase1(p1, voters, ["a@h", "b@h"])
    p2 = Proposer(B2, VOTERS, 1.0)
    _run_phase1(p2, voters, ["b@h", "c@h"])
    seq = p1.write({"t": {"reserved": 7, "record": rec(1)}}, 0.0)
    committed: list[int] = []
    for n in VOTERS:
        if voters[n].accept(B1, seq, p1.pending[seq].rows):
            committed += p1.on_accepted(n, seq, 0.0)
    assert committed == [] and p1.reserved("t") is None
    assert voters["a@h"].rows["t"].reserved == 7  # accepted by a minority only


def test_an_older_ballots_record_never_replaces_a_committed_one() -> None:
    """A later manager continues from the committed record even if a minority holds an older
    write with a higher seq number."""
    voters = {n: VoterRegister() for n in VOTERS}
    p1 = Proposer(B1, VOTERS, 0.0)
    _run_phase1(p1, voters, list(VOTERS))
    for _ in range(5):  # seq 1..5 reach only a
        s = p1.write({"t": {"reserved": 1, "record": rec(1)}}, 0.0)
        voters["a@h"].accept(B1, s, p1.pending[s].rows)
    p2 = Proposer(B2, VOTERS, 0.0)
    _run_phase1(p2, voters, ["b@h", "c@h"])
    s = p2.write({"t": {"reserved": 2, "record": rec(2)}}, 0.0)
    for n in ("b@h", "c@h"):
        voters[n].accept(B2, s, p2.pending[s].rows)
        p2.on_accepted(n, s, 0.0)
    assert p2.committed["t"][1] == rec(2)
    p3 = Proposer((3, 0, "a@h"), VOTERS, 0.0)
    _run_phase1(p3, voters, ["a@h", "b@h"])
    assert p3.table["t"].record == rec(2) and p3.learned_reserved("t") == 2


def test_chunk_rows_bounds_each_part() -> None:
    rows = {f"task{i}": {"reserved": i, "record": {"state": "x" * 50}} for i in range(10_000)}
    parts = chunk_rows(rows, budget=64 * 1024)
    assert len(parts) > 1
    assert sum(len(p) for p in parts) == 10_000
    assert all(len(json.dumps(p)) <= 70 * 1024 for p in parts)
    assert chunk_rows({}) == [{}]
    big = {"a": {"s": "x" * 1000}, "b": {"s": "y"}}
    assert [list(p) for p in chunk_rows(big, budget=100)] == [["a"], ["b"]]


def test_phase_one_waits_for_the_candidates_own_durable_promise() -> None:
    """A majority of other voters is not enough: the candidate's own voter file must hold its
    ballot before any write under it, or a restart could claim the same ballot again and write
    different rows under it (seqs from 1 again)."""
    p = Proposer(B2, VOTERS, 0.0, own="b@h")
    assert not p.on_promise("a@h", 0, 1, {})
    assert not p.on_promise("c@h", 0, 1, {})
    assert not p.ready
    assert p.on_promise("b@h", 0, 1, {})
    assert p.ready


def test_a_promise_counts_only_once_every_part_of_one_answer_arrived() -> None:
    """Parts of two answers chunked differently (part 0 of 3, then part 1 of 2) must not add
    up to a complete PROMISE: part 2 of the first is still missing."""
    p = Proposer(B2, ("a@h",), 0.0)
    assert not p.on_promise("a@h", 0, 3, {})
    assert not p.on_promise("a@h", 1, 2, {})
    assert not p.ready
    assert p.on_promise("a@h", 0, 2, {})
    assert p.ready
