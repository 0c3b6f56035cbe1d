"""The mailbox is read as it is handled (clerk._agent's DRAIN_BUDGET_S): with real sockets,
two Transports over loopback TCP. A reader that stops part way leaves the rest queued in
ZeroMQ, in order, for its next turn, and receives nothing it did not ask for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice

import pytest

from clerk._transport import Transport
from clerk.testing import wait_until
from tests.integration.transport_helpers import transport_pair

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Transport, Transport, str]]:
    with transport_pair() as p:
        yield p


def turn(t: Transport, want: int, other: Transport) -> list[bytes]:
    """One loop turn of ``t`` that handles at most ``want`` mailbox messages."""
    other.poll(0, time.monotonic())  # (sends queued until connected go out in a poll)
    assert t.poll(10, time.monotonic(), router=False) == []  # mailbox traffic only
    return [i.frames[0] for i in islice(t.receive(), want)] if t.router_ready else []


def gather(into: list[bytes], upto: int, t: Transport, other: Transport) -> bool:
    into.extend(turn(t, upto - len(into), other))
    return len(into) >= upto


def test_a_reader_that_stops_part_way_gets_the_rest_next_turn_in_order(pair) -> None:
    a, b, b_address = pair
    a.connect(b_address)
    sent = [f"m{i}".encode() for i in range(10)]
    for frames in sent:
        a.send(b_address, [frames], time.monotonic())
    first: list[bytes] = []
    wait_until(lambda: gather(first, 4, b, a), timeout=5)  # a turn whose time ran out
    assert first == sent[:4]
    assert b.stats["received"] == 4  # nothing was read that was not handled
    rest: list[bytes] = []
    wait_until(lambda: gather(rest, 6, b, a), timeout=5)
    assert rest == sent[4:]  # the next turns: the rest, in order
    assert b.stats["received"] == len(sent)
