"""Pipelining with real worker processes (clerk._prefetch): runs sent ahead to busy workers
start at their due times, never before, each once; and a run sent ahead to a worker that is
killed at a timeout runs on the other worker, once."""

from __future__ import annotations

import time

import pytest

import clerk
from clerk._messages import Execute
from clerk.testing import wait_until
from tests.integration.test_executor_queue import ME, running_executor

STAMP = "tests.integration.cluster_tasks:StampStart"
NAP = "tests.integration.cluster_tasks:Nap"


def _execute(run: str, task: str, slot: int, state: object, due: float,
             timeout_ms: int) -> Execute:
    due_ms = int(due * 1000)
    return Execute(ME, 1, task, run, slot, state, timeout_ms, False, due_ms,
                   due_ms + timeout_ms)


@pytest.mark.timeout(90)
def test_runs_sent_ahead_start_on_time_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = {f"s{i}": clerk.task(STAMP, name=f"s{i}", interval=60_000, timeout=5_000)
            for i in range(4)}
    with running_executor(monkeypatch, defs, workers=2) as (ex, results, turn):
        for i, name in enumerate(defs):  # each task once: its duration is known here
            ex.submit(_execute(f"w{i}", name, 0, None, time.time(), 5_000), "m",
                      time.monotonic())
        wait_until(lambda: turn() or len(results) == 4, timeout=20, interval=0)
        base = time.time() + 0.05
        runs = 60
        for k in range(runs):  # 2 ms apart: ~3 per worker queued at any time
            ex.submit(_execute(f"r{k}", f"s{k % 4}", k + 1, None, base + k * 0.002, 5_000),
                      "m", time.monotonic())
            turn()
        wait_until(lambda: turn() or len(results) == 4 + runs, timeout=30, interval=0)
        got = {r.run_id: r for _, r in results[4:]}
        assert len(got) == runs and all(r.outcome == "ok" for r in got.values()), [
            (r.run_id, r.outcome, r.error[-200:]) for r in got.values() if r.outcome != "ok"]
        for r in got.values():
            assert r.state["start"] >= r.state["due"], (r.run_id, r.state)
        assert ex.stats()["sent_ahead"] > 0, ex.stats()
        assert ex.stats()["requeued"] == 0 and not ex.busy()


@pytest.mark.timeout(90)
def test_a_run_ahead_of_a_worker_killed_at_its_timeout_runs_elsewhere_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    defs = {"nap": clerk.task(NAP, name="nap", interval=60_000, timeout=10_000),
            "long": clerk.task(NAP, name="long", interval=60_000, timeout=10_000),
            "stamp": clerk.task(STAMP, name="stamp", interval=60_000, timeout=10_000)}
    with running_executor(monkeypatch, defs, workers=2) as (ex, results, turn):
        now = time.time()
        ex.submit(_execute("w0", "nap", 0, {"s": 0}, now, 5_000), "m", time.monotonic())
        ex.submit(_execute("w1", "long", 0, {"s": 0.05}, now, 5_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 2, timeout=20, interval=0)
        ex.submit(_execute("w2", "stamp", 0, None, time.time(), 5_000), "m", time.monotonic())
        wait_until(lambda: turn() or len(results) == 3, timeout=20, interval=0)
        # nap (short so far) hangs past its 1 s timeout; long (50 ms: nothing goes behind
        # it) keeps the other worker 0.3 s; stamp, due 30 ms ahead, goes behind nap.
        now = time.time()
        ex.submit(_execute("hang", "nap", 1, {"s": 30}, now, 1_000), "m", time.monotonic())
        ex.submit(_execute("other", "long", 1, {"s": 0.3}, now, 5_000), "m",
                  time.monotonic())
        ex.submit(_execute("ahead", "stamp", 1, None, now + 0.03, 10_000), "m",
                  time.monotonic())
        holder = next(w for w in ex.workers.values()
                      if w.job is not None and w.job.msg.run_id == "hang")
        assert [j.msg.run_id for j in holder.prefetched] == ["ahead"], ex.stats()
        wait_until(lambda: turn() or len(results) == 6, timeout=30, interval=0)
        got = {r.run_id: r for _, r in results}
        assert got["hang"].outcome == "timeout" and got["other"].outcome == "ok"
        assert got["ahead"].outcome == "ok", got["ahead"].error
        assert got["ahead"].state["start"] >= got["ahead"].state["due"]
        assert [r.run_id for _, r in results].count("ahead") == 1
        st = ex.stats()
        assert (st["requeued"], st["prefetch_lost"], st["restarts"]) == (1, 0, 1), st
        assert not ex.busy()
