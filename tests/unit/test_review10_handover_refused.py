"""review10: a graceful HANDOVER whose packed table ``unpack_table`` refuses (215686d: a number
that is not finite in it; or not JSON) reset the successor's replica to nothing: it took over
with an empty table, counted nothing, and its replica (which its data directory snapshots)
lost every row it held. Now it takes over with its replica as it is, as it does for a gap
(``handover_gap``), and counts ``handover_rows``."""

from __future__ import annotations

import pytest

from clerk._core import Received, Role
from clerk._messages import Handover
from tests.unit.corenet import T, cluster

TABLE = {"tasks": {"t": {"slot": 41, "state": [1]}}}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ['{"tasks":{"t":{"slot":42,"state":[NaN]}}}',
                                  '{"tasks":{"t":{"slot":42,"state":[1e400]}}}',
                                  '{"tasks":{"t":{"slot":42,'])
def test_a_refused_handover_table_keeps_the_successors_replica(text: str) -> None:
    """On main: b.replicated is None after it took over, dropped['handover_rows'] == 0."""
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    a.set_replicated(TABLE)
    net.advance(T.heartbeat_interval * 2)
    assert b.replicated == TABLE
    members = tuple(m for m in a.member_list() if m.name != "a")
    net.do(b, Received(Handover(a.me, 1, members, {"packed": 1, "chunks": [text]})))
    assert b.role is Role.MANAGER
    assert b.replicated == TABLE
    assert b.dropped["handover_rows"] == 1


@pytest.mark.timeout(10)
def test_a_good_handover_table_still_replaces_the_replica() -> None:
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    a.set_replicated(TABLE)
    net.advance(T.heartbeat_interval * 2)
    members = tuple(m for m in a.member_list() if m.name != "a")
    newer = '{"tasks":{"t":{"slot":42,"state":[2]}}}'
    net.do(b, Received(Handover(a.me, 1, members, {"packed": 1, "chunks": [newer]})))
    assert b.role is Role.MANAGER
    assert b.replicated == {"tasks": {"t": {"slot": 42, "state": [2]}}}
    assert b.dropped["handover_rows"] == 0
