"""Host names resolved off the loop (clerk._dns.HostResolver), with a fake lookup and clock:
literals at once, answers cached and expiring, failures backed off and logged once, the queue
and the cache bounded, and a lookup that never answers never holding the caller."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

import pytest

from clerk import _dns
from clerk._dns import (
    CACHE_TTL,
    LOG_BURST,
    LOG_WINDOW,
    QUEUE_MAX,
    RETRY_MAX,
    RETRY_MIN,
    URGENT_RESERVE,
    URGENT_RETRY_MAX,
    HostResolver,
    literal,
    valid_address,
)

pytestmark = pytest.mark.timeout(30)


class FakeDNS:
    """A lookup that answers from a table (or fails), counting what it was asked."""

    def __init__(self, table: dict[str, str] | None = None) -> None:
        self.table = dict(table or {})
        self.asked: list[str] = []

    def __call__(self, host: str) -> str:
        self.asked.append(host)
        if host in self.table:
            return self.table[host]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def resolver(table: dict[str, str] | None = None) -> tuple[HostResolver, FakeDNS, FakeClock]:
    dns, clock = FakeDNS(table), FakeClock()
    return HostResolver(lookup=dns, clock=clock, workers=0), dns, clock


def run_all(r: HostResolver) -> list[tuple[str, str]]:
    while r.work():
        pass
    return r.answers()


def test_ip_literals_and_localhost_are_answered_at_once_without_a_lookup() -> None:
    r, dns, _ = resolver()
    try:
        assert r.resolve("10.1.2.3") == "10.1.2.3"
        assert r.resolve("127.0.0.1") == "127.0.0.1"
        assert r.resolve("localhost") == "127.0.0.1"
        assert r.resolve("LocalHost") == "127.0.0.1"
        assert dns.asked == [] and not r.work() and r.stats == {}
        assert r._wake_r is None  # not even the wake-up socket: nothing to wait for
    finally:
        r.close()
    assert literal("300.1.1.1") is None  # not an address: a name (it will fail to resolve)
    assert literal("db.example") is None


def test_addresses_are_checked_before_any_lookup() -> None:
    assert valid_address("db.example:7400") and valid_address("10.0.0.5:1")
    for bad in ("", "db.example", "db.example:", ":7400", "db.example:0", "db.example:70000",
                "a b:7400", "[::1]:7400", "x" * 254 + ":7400", "db:7400:1"):
        assert not valid_address(bad), bad


def test_a_name_is_looked_up_once_then_answered_from_the_cache() -> None:
    r, dns, _ = resolver({"db.example": "10.0.0.7"})
    assert r.resolve("db.example") is None  # queued, not looked up on this thread
    assert r.resolve("db.example") is None  # (under way: not queued twice)
    assert dns.asked == []
    assert run_all(r) == [("db.example", "10.0.0.7")]
    assert dns.asked == ["db.example"]
    for _ in range(5):
        assert r.resolve("db.example") == "10.0.0.7"
    assert dns.asked == ["db.example"]
    assert r.stats["resolve_queued"] == 1 and r.stats["resolve_ok"] == 1
    r.close()


def test_an_expired_answer_is_served_while_it_is_looked_up_again() -> None:
    r, dns, clock = resolver({"db.example": "10.0.0.7"})
    r.resolve("db.example")
    run_all(r)
    clock.now += CACHE_TTL - 1
    assert r.resolve("db.example") == "10.0.0.7"
    assert not r.work()  # not expired yet: no lookup
    clock.now += 2
    dns.table["db.example"] = "10.0.0.8"
    assert r.resolve("db.example") == "10.0.0.7"  # stale, while the refresh is under way
    assert run_all(r) == [("db.example", "10.0.0.8")]
    assert r.resolve("db.example") == "10.0.0.8"
    # A refresh that fails keeps the last answer (the resolver down takes no peer away).
    clock.now += CACHE_TTL + 1
    del dns.table["db.example"]
    assert r.resolve("db.example") == "10.0.0.8"
    assert run_all(r) == []
    assert r.resolve("db.example") == "10.0.0.8"
    r.close()


def test_a_failing_name_is_retried_with_a_doubling_backoff() -> None:
    r, dns, clock = resolver()
    waits = []
    r.resolve("gone.example")
    run_all(r)
    for _ in range(9):
        start = clock.now
        while r.resolve("gone.example") is None and not r.work():
            clock.now += 0.25  # the loop asks again and again: no lookup until the retry
        waits.append(clock.now - start)
        r.answers()
    assert waits[:4] == [RETRY_MIN, 2 * RETRY_MIN, 4 * RETRY_MIN, 8 * RETRY_MIN]
    assert max(waits) == RETRY_MAX
    assert len(dns.asked) == 10
    # Once it resolves, it is an answer like any other (and failures count from zero).
    dns.table["gone.example"] = "10.0.0.9"
    clock.now += RETRY_MAX
    r.resolve("gone.example")
    assert run_all(r) == [("gone.example", "10.0.0.9")]
    assert r.resolve("gone.example") == "10.0.0.9"
    r.close()


def test_a_members_or_seeds_failing_name_is_retried_within_seconds() -> None:
    r, dns, clock = resolver()
    r.resolve("seed.example", urgent=True)
    run_all(r)
    for _ in range(10):
        clock.now += URGENT_RETRY_MAX
        r.resolve("seed.example")  # (asked once as a seed: its backoff stays short)
        assert r.work()
        r.answers()
    assert len(dns.asked) == 11
    dns.table["seed.example"] = "10.0.0.2"  # its record appears (the seed is up)
    clock.now += URGENT_RETRY_MAX
    r.resolve("seed.example", urgent=True)
    assert run_all(r) == [("seed.example", "10.0.0.2")]
    r.close()


def test_a_failing_name_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    r, _, clock = resolver()
    with caplog.at_level(logging.INFO, logger="clerk.transport"):
        for _ in range(5):
            r.resolve("gone.example")
            run_all(r)
            clock.now += RETRY_MAX
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 1, lines
    assert "cannot resolve host name 'gone.example'" in lines[0]
    assert r.stats["resolve_failed"] == 5
    r.close()


def test_a_flood_of_failing_names_logs_a_few_lines_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    r, _, clock = resolver()
    with caplog.at_level(logging.WARNING, logger="clerk.transport"):
        for i in range(200):
            r.resolve(f"forged{i}.example")
            run_all(r)
        assert len(caplog.records) == LOG_BURST
        clock.now += LOG_WINDOW
        r.resolve("late.example")
        run_all(r)
    assert len(caplog.records) == LOG_BURST + 1
    assert f"{200 - LOG_BURST} other host name(s) failed" in caplog.records[-1].getMessage()
    r.close()


def test_the_queue_is_bounded_and_keeps_places_for_members_and_seeds() -> None:
    r, dns, _ = resolver()
    for i in range(QUEUE_MAX):
        r.resolve(f"stranger{i}.example")
    strangers = QUEUE_MAX - URGENT_RESERVE
    assert r.stats["resolve_queued"] == strangers
    assert r.stats["resolve_refused"] == URGENT_RESERVE
    for i in range(URGENT_RESERVE + 3):
        r.resolve(f"member{i}.example", urgent=True)
    assert r.stats["resolve_queued"] == QUEUE_MAX
    assert r.stats["resolve_refused"] == URGENT_RESERVE + 3
    run_all(r)
    # Members' names go first; a refused name was not remembered: asked again, it queues.
    assert dns.asked[:URGENT_RESERVE] == [f"member{i}.example" for i in range(URGENT_RESERVE)]
    assert len(dns.asked) == QUEUE_MAX
    assert r.resolve(f"stranger{QUEUE_MAX - 1}.example") is None
    assert r.work() and dns.asked[-1] == f"stranger{QUEUE_MAX - 1}.example"
    r.close()


def test_the_cache_is_bounded_and_drops_failed_names_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dns, "CACHE_MAX", 10)
    r, _, _ = resolver({f"member{i}.example": f"10.0.0.{i}" for i in range(5)})
    for i in range(5):
        r.resolve(f"member{i}.example")
    run_all(r)
    for i in range(100):  # a flood of failing names, as many as the queue takes at a time
        r.resolve(f"forged{i}.example")
        run_all(r)
    assert len(r._cache) == 10
    for i in range(5):  # the members' answers survived the flood
        assert r.resolve(f"member{i}.example") == f"10.0.0.{i}"
    for i in range(20):  # a flood of answered names: the least recently used go
        r._cache[f"other{i}.example"] = _dns._Entry("10.9.9.9", 1e9)
        r._remember(f"other{i}.example", r._cache[f"other{i}.example"])
    assert len(r._cache) == 10
    assert "member0.example" not in r._cache
    r.close()


def test_a_lookup_that_never_answers_never_holds_the_caller() -> None:
    release = threading.Event()
    asked: list[str] = []

    def stuck(host: str) -> str:
        asked.append(host)
        if host.startswith("stuck"):
            release.wait(20)  # an unreachable resolver
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "boom.example":
            raise RuntimeError("a broken lookup")
        return "10.0.0.1"

    r = HostResolver(lookup=stuck)
    try:
        t0 = time.perf_counter()
        for i in range(QUEUE_MAX * 3):
            assert r.resolve(f"stuck{i}.example") is None
        took = time.perf_counter() - t0
        assert took < 0.5, took  # ~1 µs each, whatever the lookups do
        assert r.stats["resolve_refused"] > 0  # bounded, not queued without end
        # Both workers are stuck; a member's name waits for one (urgent: next in line).
        assert r.resolve("member.example", urgent=True) is None
        release.set()
        got: list[tuple[str, str]] = []
        deadline = time.monotonic() + 10
        while ("member.example", "10.0.0.1") not in got and time.monotonic() < deadline:
            select.select([r.fileno()], [], [], 1.0)
            got += r.answers()
        assert ("member.example", "10.0.0.1") in got
        assert asked.index("member.example") <= 2  # behind the two lookups under way only
        # A lookup that raises something unexpected is a failure, not a dead worker.
        assert r.resolve("boom.example", urgent=True) is None
        deadline = time.monotonic() + 10
        while r._cache["boom.example"].failures == 0 and time.monotonic() < deadline:
            select.select([r.fileno()], [], [], 0.2)
            r.answers()
        assert r._cache["boom.example"].failures == 1
        assert len(r._threads) == 2 and all(t.is_alive() for t in r._threads)
    finally:
        release.set()
        r.close()
    assert all(not t.is_alive() for t in _join(r._threads))


def _join(threads: list[threading.Thread]) -> list[threading.Thread]:
    for t in threads:
        t.join(timeout=5)
    return threads
