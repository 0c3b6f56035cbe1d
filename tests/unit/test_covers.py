"""What a merge HANDOVER covers (clerk._covers): its wire form, and the winner's rule
(``Scheduler.handed_over_by``): a ``stale`` takeover counts as offered the members the
HANDOVER of the manager it followed covers, once every part of that step-down is merged;
a member not covered is still waited for; no entry (an older build) covers no member."""

from __future__ import annotations

import random

import pytest

from clerk._codec import decode, encode
from clerk._core import Role
from clerk._covers import COVERS_KEY, CoverParts, Covers, add_covers, covers_of
from clerk._handover import part_id, table_parts
from clerk._messages import Handover, MemberInfo, Peer
from clerk._record import unpack_table
from clerk._schedule import Scheduler
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef

PEER = Peer("f", "10.0.0.6:7400", "inc+m", 0)
ROWS: list[tuple[str, str | None]] = [
    (f"task{i}", '{"state":' + str(i) + ',"has_state":true}') for i in range(30)]


def _parts(limit: int = 200) -> list[object]:
    return table_parts(ROWS, limit)


def test_the_entry_round_trips_through_the_codec_in_every_part() -> None:
    parts = add_covers(_parts(), ["f", "c", "a", "a"], 7)
    assert len(parts) > 2
    for i, part in enumerate(parts):
        msg = Handover(PEER, 7, (MemberInfo("a", "10.0.0.1:7400", "inc", 0, True),) if i == 0
                       else (), part)
        back = decode(encode(msg))
        assert back == msg
        assert isinstance(back, Handover)
        assert covers_of(back.state) == Covers(frozenset({"a", "c", "f"}), 7, i, len(parts))


def test_an_absent_entry_decodes_as_covering_nobody() -> None:
    """An older build's HANDOVER (no entry): nothing covered, the old rule (wait)."""
    for part in _parts():
        back = decode(encode(Handover(PEER, 7, (), part)))
        assert isinstance(back, Handover)
        assert covers_of(back.state) is None
    assert add_covers(_parts(), [], 7) == _parts()  # (none to cover: the old form, as is)
    assert covers_of(None) is None


def test_an_older_build_reads_the_part_as_before() -> None:
    """An older build reads a packed table's ``packed`` and ``chunks`` only, and confirms a
    part by the digest of its chunks: the entry changes neither."""
    plain, covered = _parts(), add_covers(_parts(), ["a"], 7)
    for p, c in zip(plain, covered, strict=True):
        assert unpack_table(c) == unpack_table(p)
        assert part_id(c) == part_id(p)


@pytest.mark.parametrize("entry", [
    "x", {"members": "a", "term": 1, "part": 0, "of": 1},
    {"members": ["a", 3], "term": 1, "part": 0, "of": 1},
    {"members": ["a"], "term": True, "part": 0, "of": 1},
    {"members": ["a"], "term": 1, "part": 1, "of": 1},
    {"members": ["a"], "term": 1, "part": -1, "of": 1},
    {"members": ["a"], "term": 1, "part": 0},
    {"members": ["a"] * 5000, "term": 1, "part": 0, "of": 1},
])
def test_a_malformed_entry_covers_nobody(entry: object) -> None:
    assert covers_of({"packed": 1, "chunks": [], COVERS_KEY: entry}) is None


def test_the_members_are_covered_once_every_part_is_merged() -> None:
    parts = CoverParts()
    members = frozenset({"a", "c"})
    assert parts.add("f", Covers(members, 3, 0, 3)) == frozenset()
    assert parts.add("f", Covers(members, 3, 0, 3)) == frozenset()  # (sent again)
    assert parts.add("f", Covers(members, 4, 1, 3)) == frozenset()  # (another step-down)
    assert parts.add("f", Covers(members, 3, 2, 3)) == frozenset()
    assert parts.add("f", Covers(members, 3, 1, 3)) == members


def _stale() -> Scheduler:
    """A manager "b" that took over from its replica (``stale``) of the table of "f", the
    manager it followed: it waits for the OFFERs of a and c."""
    defn = tdef(timeout=5000)
    old = started(sched(defn, seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    new = Scheduler([defn], random.Random(2), await_offers=True)
    new.always_offers = lambda node: True
    new.load(old.table())
    new.stale = True
    new.followed = "f"
    new.activate(due("t", K + 2) + 0.05, graceful=False, claim=(2, "b"))
    assert new.tick(due("t", K + 3), NODES)[0] == []  # (waits)
    return new


def test_a_member_the_followed_handover_does_not_cover_is_still_waited_for() -> None:
    """The review4 case in one scheduler: f was itself waiting for c's OFFER, so its
    HANDOVER covers a (and f) only; b waits for c. Before, any HANDOVER from f ended the
    wait."""
    b = _stale()
    b.handed_over_by("f", Covers(frozenset({"f", "a"}), 5, 0, 1))
    assert b.offered >= {"f", "a"} and "c" not in b.offered
    assert b.tick(due("t", K + 4), NODES)[0] == []
    b.offer_from("c")
    ds, _ = b.tick(due("t", K + 5), NODES)
    assert [d.slot for d in ds] == [K + 5]


def test_a_handover_covering_every_member_ends_the_wait_at_once() -> None:
    """healgap's gain: the other side's OFFERs lost at the heal, the followed manager's
    HANDOVER (all its parts) covers them."""
    b = _stale()
    b.handed_over_by("f", Covers(frozenset({"f", "a", "c"}), 5, 0, 2))
    assert b.tick(due("t", K + 4), NODES)[0] == []  # (its second part not merged yet)
    assert "f" not in b.offered  # (nor is its sender's table whole in ours)
    b.handed_over_by("f", Covers(frozenset({"f", "a", "c"}), 5, 1, 2))
    ds, _ = b.tick(due("t", K + 5), NODES)
    assert [d.slot for d in ds] == [K + 5]
    # Transitive: they are in ``offered``, which b's own HANDOVER covers in turn (the task
    # layer's ``CoreState.covers``); a member whose wait ended by its bound never is.
    assert b.offered >= {"f", "a", "c"}


@pytest.mark.parametrize("sender, covers", [
    ("f", None),  # an older build's HANDOVER: only its sender counts as offered
    ("g", Covers(frozenset({"g", "a", "c"}), 5, 0, 1)),  # not the manager b followed
])
def test_other_handovers_count_as_their_senders_offer_only(sender: str,
                                                           covers: Covers | None) -> None:
    b = _stale()
    b.handed_over_by(sender, covers)
    assert sender in b.offered and not {"a", "c"} & b.offered
    assert b.tick(due("t", K + 4), NODES)[0] == []


def test_a_manager_not_stale_counts_a_handovers_sender_once_it_is_whole() -> None:
    """Any merge HANDOVER counts as its sender's OFFER (an ``init`` waits for it), once every
    part of it is merged; its members do not (only a stale takeover's wait ends by them)."""
    b = _stale()
    b.stale = False
    b.handed_over_by("f", Covers(frozenset({"f", "a"}), 5, 1, 2))
    assert "f" not in b.offered
    assert b.handed_over_by("f", Covers(frozenset({"f", "a"}), 5, 0, 2)) == frozenset()
    assert "f" in b.offered and "a" not in b.offered


# --- the stepped-down manager's side (clerk._handover.step_down_to) ----------------------------


def test_a_step_down_covers_its_members_that_offered_and_follow_it_still() -> None:
    """Through NodeCore: a (manager of a and b) steps down to z; its task layer says a, b and
    q offered (q is no member: left out). Every part carries the entry, within the limit."""
    from clerk._codec import MAX_MESSAGE_BYTES
    from tests.unit.test_handover import _two_managers, handover_parts_at_heal

    net, a, b, z = _two_managers()
    a.covers = lambda: {"a", "b", "q"}
    hand = handover_parts_at_heal(net, a, z)
    assert all(sum(len(f) for f in encode(h)) <= MAX_MESSAGE_BYTES for h in hand)
    entries = [covers_of(h.state) for h in hand]
    assert [(c.part, c.of) for c in entries if c is not None] == [
        (i, len(hand)) for i in range(len(hand))]
    assert {c.members for c in entries if c is not None} == {frozenset({"a", "b"})}


def test_a_member_silent_for_a_manager_timeout_is_not_covered() -> None:
    """b stopped acknowledging a (it may follow another manager by now, with its rows): a's
    HANDOVER does not cover it, though b is still a live member (member_timeout is longer)."""
    from tests.unit.corenet import T
    from tests.unit.test_handover import _two_managers, big_table

    net, a, b, z = _two_managers()
    a.covers = lambda: {"a", "b"}
    a.set_replicated(big_table(2))
    net.partition([b], [a])  # (b and a apart too, besides the earlier split)
    net.advance(T.manager_timeout + T.heartbeat_interval)
    row = a.members.get("b")
    assert row is not None and row.alive
    net.cut = {c for c in net.cut if c != frozenset((a.me.address, z.me.address))}
    net.advance(T.probe_interval + T.heartbeat_interval * 3)
    assert a.manager == "z" and a.role is not Role.MANAGER
    hand = net.sends(a, Handover, to=z)
    assert hand and all(c is not None and c.members == {"a"}
                        for c in map(covers_of, (h.state for h in hand)))
