"""A link to a host name whose peer is not reached asks for the name again and follows it to a
new IP (clerk._links.Relinker, clerk._dns.HostResolver.recheck), with the resolver's fake
lookup and clock (``workers=0``): only links down for RELINK_AFTER, only names (not IP
literals), at most once per RECHECK_MIN per name, a failed name with its backoff, and a link
already on the answer is left alone."""

from __future__ import annotations

import pytest

from clerk._dns import CACHE_TTL, RECHECK_MIN, HostResolver
from clerk._links import RELINK_AFTER, RELINK_CHECK, Relinker, endpoint_ip
from tests.unit.test_dns import FakeClock, FakeDNS, run_all

pytestmark = pytest.mark.timeout(30)

ADDR = "node-2.svc:5555"


class Links:
    """The transport's side: each address's endpoint (None: no link / not connected yet)."""

    def __init__(self) -> None:
        self.endpoints: dict[str, str | None] = {}

    def endpoint(self, address: str) -> str | None:
        return self.endpoints.get(address)


def setup(table: dict[str, str]) -> tuple[HostResolver, FakeDNS, FakeClock, Relinker, Links]:
    dns, clock = FakeDNS(table), FakeClock()
    r = HostResolver(lookup=dns, clock=clock, workers=0)
    assert r.resolve("node-2.svc") is None
    assert run_all(r) == [("node-2.svc", table["node-2.svc"])]
    links = Links()
    links.endpoints[ADDR] = f"tcp://{table['node-2.svc']}:5555"
    return r, dns, clock, Relinker(r), links


def pinned(address: str) -> bool:
    return True


def test_a_link_down_long_enough_asks_again_and_moves_to_the_new_answer() -> None:
    r, dns, clock, rl, links = setup({"node-2.svc": "10.0.0.2"})
    try:
        clock.now += 10  # the answer is 10 s old, well within CACHE_TTL
        rl.down(ADDR, now=50.0)
        assert rl.due(50.0)
        assert rl.check(50.0 + RELINK_AFTER / 2, links.endpoint, pinned) == []  # not yet
        assert dns.asked == ["node-2.svc"] and not rl.due(50.0 + RELINK_AFTER / 2)
        dns.table["node-2.svc"] = "10.0.0.9"  # the peer came back elsewhere
        now = 50.0 + RELINK_AFTER / 2 + RELINK_CHECK
        assert rl.check(now, links.endpoint, pinned) == []  # asked; the old answer in hand
        assert dns.asked == ["node-2.svc"] * 1 and r._urgent  # queued as urgent
        answers = run_all(r)
        assert answers == [("node-2.svc", "10.0.0.9")]
        assert rl.answered("node-2.svc", "10.0.0.9", links.endpoint) == [(ADDR, "10.0.0.9")]
        # The next check finds it too (from the cache), without another lookup.
        assert rl.check(now + RELINK_CHECK, links.endpoint, pinned) == [(ADDR, "10.0.0.9")]
        assert dns.asked == ["node-2.svc"] * 2
    finally:
        r.close()


def test_at_most_one_lookup_per_recheck_min_per_name_and_none_for_a_healthy_link() -> None:
    r, dns, clock, rl, links = setup({"node-2.svc": "10.0.0.2"})
    try:
        links.endpoints["node-2.svc:6666"] = "tcp://10.0.0.2:6666"  # another port, same name
        rl.down(ADDR, 0.0)
        rl.down("node-2.svc:6666", 0.0)
        clock.now += RECHECK_MIN
        for i in range(20):  # a check every second for 20 s (the clock runs with it)
            now = RELINK_AFTER + i * RELINK_CHECK
            assert rl.check(now, links.endpoint, pinned) == []  # same answer: nothing moves
            run_all(r)
            clock.now += RELINK_CHECK
        lookups = len(dns.asked) - 1
        assert 20 * RELINK_CHECK / RECHECK_MIN - 1 <= lookups <= 20 * RELINK_CHECK / RECHECK_MIN + 1
        # Once up, a link is not looked at again; with none down, no check is due.
        rl.up(ADDR)
        rl.up("node-2.svc:6666")
        asked = len(dns.asked)
        clock.now += CACHE_TTL / 2
        assert not rl.due(1000.0)
        assert rl.check(1000.0, links.endpoint, pinned) == [] and len(dns.asked) == asked
    finally:
        r.close()


def test_ip_literals_and_links_not_connected_yet_are_not_rechecked() -> None:
    r, dns, clock, rl, links = setup({"node-2.svc": "10.0.0.2"})
    try:
        rl.down("10.0.0.2:5555", 0.0)
        rl.down("localhost:5555", 0.0)
        assert not rl.due(100.0)
        rl.down("other.svc:5555", 0.0)  # no endpoint yet: the transport waits for its answer
        clock.now += 100
        assert rl.check(100.0, links.endpoint, pinned) == []
        assert not rl.is_down("other.svc:5555") and dns.asked == ["node-2.svc"]
    finally:
        r.close()


def test_a_failed_name_keeps_its_backoff_and_its_last_answer_is_not_moved_away_from() -> None:
    r, dns, clock, rl, links = setup({"node-2.svc": "10.0.0.2"})
    try:
        del dns.table["node-2.svc"]  # the record is gone while the peer restarts
        rl.down(ADDR, 0.0)
        clock.now += RECHECK_MIN
        assert rl.check(RELINK_AFTER, links.endpoint, pinned) == []
        assert run_all(r) == [] and len(dns.asked) == 2
        for i in range(1, 4):  # within the first retry's backoff: not asked again
            clock.now += 0.2
            assert rl.check(RELINK_AFTER + i, links.endpoint, pinned) == []
            run_all(r)
        assert len(dns.asked) == 2
        dns.table["node-2.svc"] = "10.0.0.3"
        clock.now += 60
        rl.check(100.0, links.endpoint, pinned)
        assert run_all(r) == [("node-2.svc", "10.0.0.3")]
        assert rl.check(101.0, links.endpoint, pinned) == [(ADDR, "10.0.0.3")]
    finally:
        r.close()


def test_an_answer_for_a_link_that_is_up_or_already_on_it_moves_nothing() -> None:
    r, _, _, rl, links = setup({"node-2.svc": "10.0.0.2"})
    try:
        assert rl.answered("node-2.svc", "10.0.0.7", links.endpoint) == []  # healthy
        rl.down(ADDR, 0.0)
        assert rl.answered("node-2.svc", "10.0.0.2", links.endpoint) == []  # the same IP
        assert rl.answered("other.svc", "10.0.0.7", links.endpoint) == []  # another name
        assert endpoint_ip("tcp://10.0.0.2:5555") == "10.0.0.2"
    finally:
        r.close()
