"""Review of branch ``rows2`` (a HEARTBEAT's table rows after its body, to a member whose
incarnation announces ``RAW_ROWS_MARK``): a rolling deploy where a member of the new build
restarts as the old build, at the same address, before the manager notices.

The old build is emulated at delivery (``OldBuildNet``): a node whose incarnation lacks the
mark decodes as the old build does, which refuses a body followed by text and a table delta
with a ``tail`` field (an unknown field): such a HEARTBEAT is dropped as malformed. Checked:
once the restarted member is admitted again, nothing it is sent is of the new form, its
replica ends with the manager's table, and it follows the manager throughout.

Skipped where the codec has no ``RAW_ROWS_MARK`` (main before rows2).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerk import _messages
from clerk._codec import decode, encode
from clerk._core import MemberUp, Received, Role, Start
from clerk._messages import Heartbeat
from tests.unit.corenet import Net, T

MARK: str | None = getattr(_messages, "RAW_ROWS_MARK", None)
pytestmark = pytest.mark.skipif(MARK is None, reason="no RAW_ROWS_MARK in this build")


def _old_build_refuses(frames: list[bytes]) -> bool:
    """Would a node of the build before rows2 refuse these frames (text after the body, or
    a table delta with ``tail``)?"""
    if frames[1] != b"heartbeat":
        return False
    text = frames[2].decode()
    try:
        body, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return True
    if end != len(text):
        return True
    table = body.get("table") if isinstance(body, dict) else None
    return isinstance(table, dict) and "tail" in table


class OldBuildNet(Net):
    """corenet's Net where a node without the mark reads as the old build."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[tuple[float, str]] = []  # (time, to address)

    def deliver(self, src: str, send: Any) -> None:
        if send.to in self.down or src in self.down or frozenset((src, send.to)) in self.cut:
            return
        core = self.cores.get(send.to)
        if core is None:
            return
        frames = encode(send.msg)
        assert MARK is not None
        if MARK not in core.me.incarnation and _old_build_refuses(frames):
            self.refused.append((self.now, send.to))
            return
        self.do(core, Received(decode(frames)))


def _table(n: int, gen: int) -> dict[str, Any]:
    return {"tasks": {f"t{i}": {"slot": i + gen, "s": 'é"\\'} for i in range(n)}}


@pytest.mark.parametrize("notify", [True, False])
def test_a_member_restarted_as_the_old_build_is_sent_the_old_form(notify: bool) -> None:
    assert MARK is not None
    net = OldBuildNet()
    a = net.node("a", 9, incarnation="a-1" + MARK)
    b = net.node("b", 5, seeds=["a"], incarnation="b-1" + MARK)
    net.node("c", 1, seeds=["a"], incarnation="c-1" + MARK)
    net.advance(T.heartbeat_interval * 3)
    a.set_replicated(_table(30, 0))
    net.advance(T.heartbeat_interval * 3)
    assert b.replicated == a.replicated and not net.refused
    # b restarts as the old build (no mark) at the same address; with ``notify`` False the
    # manager does not see the connection close (kill -9 and a restart within the same
    # reconnect interval).
    net.crash(b, notify=notify)
    a.set_replicated(_table(30, 1))  # rows change meanwhile
    net.advance(T.heartbeat_interval)
    b2 = net.node("b", 5, seeds=["a"], incarnation="b-2", start=False)
    if not notify:  # up at b's address before its JOIN: the manager still sends b-1's form
        a.set_replicated(_table(30, 2))
        net.advance(T.heartbeat_interval * 2)
        assert [to for _, to in net.refused] and all(
            to == b2.me.address for _, to in net.refused)
    net.do(b2, Start())
    net.run()
    for gen in range(3, 7):
        a.set_replicated(_table(30, gen))
        net.advance(T.heartbeat_interval * 2)
    net.advance(T.member_timeout)
    assert b2.role is Role.FOLLOWER and b2.manager == "a", (b2.role, b2.manager)
    assert b2.replicated == a.replicated
    row = a.members.get("b")
    assert row is not None and row.peer.incarnation == "b-2"
    # Once b-2 is a member, nothing it is sent is of the new form.
    admitted = next(t for t, _, e in net.log
                    if isinstance(e, MemberUp) and e.info.incarnation == "b-2")
    late = [t for t, to in net.refused if to == b2.me.address and t > admitted]
    assert not late, f"{len(late)} HEARTBEATs of the new form after b-2 was admitted"
    hb = [m for m in net.sends(a, Heartbeat, to=b2) if m.table is not None]
    assert hb
