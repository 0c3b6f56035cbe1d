"""A graceful hand-over in parts (clerk._handparts): every part within the message limit by its
encoded bytes, whatever the text (quotes and backslashes escaped again, non-ASCII several
bytes), and the parts joined in any order give back exactly the packed table."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._codec import MAX_MESSAGE_BYTES, decode, encode
from clerk._handparts import MAX_PARTS, PartsInbox, handover_parts, is_part, wire_bytes
from clerk._messages import Handover, MemberInfo, Peer, TableAt
from clerk._record import unpack_table

ME = Peer("a", "a:7400", "0123456789ab+t+p", 0)


def _table_text(rows: int, filler: str) -> str:
    return json.dumps({f"t:task{i}": {"state": [filler] * 3, "n": i} for i in range(rows)},
                      separators=(",", ":"), ensure_ascii=False)


def _sizes(msgs: list[Handover]) -> list[int]:
    return [sum(len(f) for f in encode(m, max_bytes=1 << 40)) for m in msgs]


@pytest.mark.parametrize("filler", ['"q"\\\\' * 20, "plain", "ünï©ødé€" * 5])
def test_every_part_fits_by_encoded_bytes_and_the_parts_give_the_table_back(
        filler: str) -> None:
    text = _table_text(20_000, filler)
    members = (MemberInfo("b", "b:7400", "x", 0, True, tuple(f"t{i}" for i in range(500))),)
    msgs = handover_parts(ME, 3, members, text, "7", MAX_MESSAGE_BYTES, TableAt("L", 9))
    assert len(msgs) > 1
    assert max(_sizes(msgs)) <= MAX_MESSAGE_BYTES
    assert msgs[0].members == members and all(not m.members for m in msgs[1:])
    inbox = PartsInbox()
    wired = [decode(encode(m)) for m in reversed(msgs)]  # (over the wire, reversed)
    assert all(isinstance(m, Handover) for m in wired)
    got = [inbox.add(m) for m in wired if isinstance(m, Handover)]
    assert got[:-1] == [None] * (len(msgs) - 1)
    whole = got[-1]
    assert whole is not None and not is_part(whole.state)
    assert whole.members == members and whole.term == 3 and whole.sender == ME
    assert isinstance(whole.state, dict)
    assert (whole.state["log"], whole.state["upto"]) == ("L", 9)
    assert unpack_table(whole.state) == json.loads(text)


def test_a_small_limit_is_respected_too() -> None:
    text = _table_text(50, '"x"')
    msgs = handover_parts(ME, 1, (), text, "1", 7_000)
    assert max(_sizes(msgs)) <= 7_000
    assert "".join(c for m in msgs for c in m.state["chunks"]) == text  # type: ignore[index]


@settings(max_examples=50, deadline=None)
@given(text=st.text(min_size=1, max_size=3000), limit=st.integers(900, 4000))
def test_any_text_round_trips_within_the_limit(text: str, limit: int) -> None:
    text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)  # (no lone surrogates)
    msgs = handover_parts(ME, 1, (), text, "1", limit)
    assert max(_sizes(msgs)) <= limit
    assert "".join(c for m in msgs for c in m.state["chunks"]) == text  # type: ignore[index]


def test_wire_bytes_is_the_encoded_size() -> None:
    for text in ['a"b\\c', "plain", "ü€", "tab\there", ""]:
        assert wire_bytes(text) == len(json.dumps(text, ensure_ascii=False).encode())


def test_a_new_hand_over_replaces_the_parts_of_an_older_one() -> None:
    text = _table_text(200, "x")
    old = handover_parts(ME, 1, (), text, "0", 7_000)
    new = handover_parts(ME, 1, (), text, "1", 7_000)
    inbox = PartsInbox()
    assert inbox.add(old[0]) is None
    for m in new[:-1]:
        assert inbox.add(m) is None
    assert inbox.add(old[-1]) is None  # (of the older hand-over: starts it again)
    inbox = PartsInbox()
    results = [inbox.add(m) for m in new]
    assert results[-1] is not None and unpack_table(results[-1].state) == json.loads(text)


@pytest.mark.parametrize("state", [
    {"packed": 1, "chunks": [], "part": 0, "of": MAX_PARTS + 1, "id": "1"},
    {"packed": 1, "chunks": [], "part": 2, "of": 2, "id": "1"},
    {"packed": 1, "chunks": [1], "part": 0, "of": 2, "id": "1"},
    {"packed": 1, "chunks": [], "part": True, "of": 2, "id": "1"},
    {"packed": 1, "chunks": [], "part": 0, "of": 2, "id": 1},
])
def test_a_malformed_part_is_refused(state: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PartsInbox().add(Handover(ME, 1, (), state))


def test_parts_are_kept_only_under_the_claim_they_came_under() -> None:
    """``keep_only``: the parts of a hand-over by the manager at that term stay (the node
    follows it again), anything else drops them (another manager, another term, a claim of
    its own); the hand-over then starts again from its first part."""
    msgs = handover_parts(ME, 4, (), _table_text(400, "x"), "0", 7_000)
    assert len(msgs) > 2
    inbox = PartsInbox()
    inbox.add(msgs[0])
    inbox.keep_only(ME.name, 4)
    assert len(inbox) == 1
    for name, term in ((ME.name, 5), ("b", 4), (None, 4)):
        inbox.add(msgs[0])
        inbox.keep_only(name, term)
        assert len(inbox) == 0, (name, term)
    got = [inbox.add(m) for m in msgs[1:]]
    assert got == [None] * (len(msgs) - 1)  # (part 0 is gone: never taken without it)
    whole = inbox.add(msgs[0])
    assert whole is not None and unpack_table(whole.state) == json.loads(_table_text(400, "x"))
