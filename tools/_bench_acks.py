"""The members' side of a benchmark's heartbeat round, shared by ``tools/bench_replication.py``
and ``tools/bench_gc.py``: each member that got a HEARTBEAT acknowledges it, with the table
position its delta brought (as a follower's ``acknowledge`` would), and the manager's core
handles those ACKs. Uses only message classes every tree has (a benchmark's "before" tree
imports it too)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clerk._core import NodeCore, Received, Send
from clerk._messages import Ack, Heartbeat, Peer

__all__ = ["ack_heartbeats"]


def ack_heartbeats(core: NodeCore, peers: Mapping[str, Peer], effects: Iterable[Any],
                   now: float) -> None:
    """Every member in ``peers`` (by address) ACKs the HEARTBEATs ``effects`` send it; the
    ACKs that carry a table position are handled by ``core`` at ``now``."""
    acks = []
    for e in effects:
        if isinstance(e, Send) and e.to in peers and isinstance(e.msg, Heartbeat):
            t = e.msg.table
            acks.append(Ack(peers[e.to], core.term, e.msg.seq, e.msg.epoch,
                            t.upto if t else -1, t.log if t else ""))
    for ack in acks:
        if ack.table >= 0:
            core.handle(Received(ack), now)
