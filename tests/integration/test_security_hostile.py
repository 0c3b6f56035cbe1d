"""Garbage against a live ``--insecure`` node while its Counter task keeps running.

Every case of ``tools/fuzz.py``'s garbage list (malformed frames, forged and replayed messages,
terms from the far future), a flood of forged JOINs and stale claims from thousands of
addresses, and a short seeded fuzz pass: the node must stay up and keep its manager and term,
its task must keep running at its interval, each bad frame must show up in ``bad_frames`` in
its status, and its sockets must stay bounded.

The live task is ``QuickCounter`` (``tools/fuzz.py``'s ``COUNTER``): it does not ``fsync`` its
line. With ``Counter`` this test once failed in CI with a 0.79 s gap, the signature of one
run's ``fsync`` held ~0.6 s by a busy disk: the run stays in flight past the next three due
times, which the overlap rule skips (``tools/bench_flood_gaps.py``: a worker's ``fsync``
delayed 0.65 s with ``strace -e inject`` gives 0.65-0.80 s gaps, three slots skipped), while
the node's loop (its longest turn under the flood ~30 ms) does nothing wrong. The gap bound
judges the node, not the disk. Should it fail again, its message says which it was: slots
missing with ``skipped`` counted (a run in flight: the task or the worker was slow),
``refused``/``stale`` counted (runs that reached the worker too late), or consecutive slots
far apart (runs started late).
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest
import zmq

import clerk
from clerk._core import MAX_PROBATION
from clerk._transport import MAX_UNPINNED_LINKS
from clerk.testing import LocalCluster, wait_until

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 200  # ms


def load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clerk_tools_fuzz", ROOT / "tools" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = load_fuzz()


def run_times(log: Path) -> list[float]:
    try:
        return [float(x.split()[-1]) for x in log.read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        return []


def max_gap(times: list[float], start: float, end: float) -> float:
    edges = [start, *[t for t in times if start <= t <= end], end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def gap_report(log: Path, start: float, end: float, st: dict[str, Any]) -> str:
    """Where the longest gap was (slots and times from ``start``) and the node's own account
    of the task's slots: what tells a slow run (slots skipped), a late one (consecutive slots
    far apart) and a stale one (refused) apart."""
    rows = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 6 and start <= float(parts[5]) <= end:
            rows.append((int(parts[1]), float(parts[5])))
    edges = [(None, start), *rows, (None, end)]
    (a, ta), (b, tb) = max(zip(edges, edges[1:], strict=False),
                           key=lambda pair: pair[1][1] - pair[0][1])
    task: dict[str, Any] = next((t for t in st["tasks"] if t["name"] == "counter"), {})
    return (f"longest gap {tb - ta:.3f} s: slot {a} at +{ta - start:.3f} s to slot {b} at "
            f"+{tb - start:.3f} s; the node's count of the task's runs {task.get('runs')}, "
            f"last run {task.get('last_run')}; stale EXECUTEs {st.get('stale')}; longest "
            f"drain {st['transport'].get('drain_ms_max')} ms; gc {st.get('gc')}")


def agent_fds(cluster: LocalCluster, name: str) -> int:
    return max(psutil.Process(p).num_fds() for p in cluster.pids(name))


def test_garbage_and_forgeries_do_not_hurt_a_live_node(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    task = clerk.task(fuzz.COUNTER, name="counter", interval=INTERVAL, args={"log": str(log)})
    with LocalCluster(1, tasks=[task], insecure=True) as cluster:
        name = cluster.wait_for_manager(timeout=15)
        wait_until(lambda: len(run_times(log)) >= 3, timeout=15)
        st0 = cluster.status(name)
        target = fuzz.Target(name, cluster.address(name), st0["incarnation"], st0["term"])
        fds_before = agent_fds(cluster, name)
        rng = random.Random(6)
        cases = fuzz.garbage(target, rng)
        ctx = zmq.Context()
        start = time.time()
        try:
            dealer = fuzz.flood_socket(ctx, target.address)
            fuzz.send_garbage(dealer, cases, 10)  # each case, ten times (replays included)
            # Forged JOINs and stale claims from 3,000 distinct addresses each.
            fuzz.forged_joins(dealer, 3000)
            # The same garbage through a REQ socket (answers go back the REQ way).
            req = ctx.socket(zmq.REQ)
            req.linger = 0
            req.connect(f"tcp://{target.address}")
            req.send_multipart(cases[0][1] or [b""])
            assert req.poll(500, zmq.POLLIN) == 0  # garbage gets no answer
            dealer.close(linger=0)
            req.close(linger=0)
        finally:
            ctx.term()

        expected = {"frames", "json", "field", "kind", "version", "magic", "term_jump",
                    "not_member", "refuse_stranger", "execute_unannounced",
                    "result_not_member", "handover_stranger", "join_flood",
                    "batch", "batch_sender"}  # batches (clerk._batch) dropped whole

        def all_counted() -> bool:
            seen = cluster.status(name)["bad_frames"]
            return expected <= set(seen) and seen.get("join_flood", 0) >= 2000

        wait_until(all_counted, timeout=30,
                   message=lambda: f"bad_frames: {cluster.status(name)['bad_frames']}")
        # Two more runs after the storm, then judge the whole window.
        n = len(run_times(log))
        wait_until(lambda: len(run_times(log)) >= n + 2, timeout=10)
        end = time.time()
        st = cluster.status(name)
        assert cluster.running(name)
        assert (st["manager"], st["incarnation"], st["term"]) == (name, target.incarnation,
                                                                  target.term)
        assert max_gap(run_times(log), start, end) <= 3 * INTERVAL / 1000, (
            gap_report(log, start, end, st))
        # The flood (6,000+ frames, most of them JOINs and claims that cost real work) never
        # held the loop's timers up for long: a turn handles the mailbox for at most
        # DRAIN_BUDGET_S (20 ms) and leaves the rest queued for the next turn. The bound is
        # that plus slack for a loaded machine (a descheduled process, one costly message);
        # a turn that drained up to DRAIN_MESSAGES before its tick took 0.8-2 s at load 12-19.
        assert st["transport"].get("drain_cut", 0) > 0, st["transport"]  # it was a flood
        assert st["transport"]["drain_ms_max"] <= 300, st["transport"]
        # Bounded: at most a few dozen links to forged addresses, no socket per address.
        # (the forged joiners admitted on probation are members for a while: pinned links)
        assert st["transport"]["links"] <= MAX_UNPINNED_LINKS + MAX_PROBATION
        assert st["transport"]["links_opened"] >= 20  # they were asked for, and closed
        assert st["transport"].get("send_to_stranger_dropped", 0) > 0  # and rate-limited
        assert len(st["members"]) <= 1 + MAX_PROBATION
        # a few fds per link (socket, monitor, TCP), never one per forged address (3,000)
        assert agent_fds(cluster, name) <= fds_before + 6 * (MAX_UNPINNED_LINKS + MAX_PROBATION)
        assert "handler_error" not in st["bad_frames"]
        # Once the joiners on probation are dropped (member_timeout, 2 s) their links are
        # strangers' like any other: within that cap at once, not only when the next stranger
        # gets a link (up to 2 x 32 were left open, and the bound above failed now and then).
        wait_until(lambda: [m["name"] for m in cluster.status(name)["members"]
                            if m["alive"]] == [name], timeout=15)
        left = cluster.status(name)["transport"]["links"]
        assert left <= MAX_UNPINNED_LINKS, left
        assert "malformed frame" in cluster.log(name)  # logged (rate-limited)
        assert cluster.log(name).count("malformed frame") < 20


def test_a_short_fuzz_pass_leaves_the_node_alive_and_on_schedule() -> None:
    rep = fuzz.run_fuzz(2000, seed=1, interval_ms=INTERVAL)
    assert rep.alive and rep.manager_kept, rep
    assert rep.frames_sent == 2000
    assert rep.frames_rejected >= 0.5 * rep.frames_sent, rep.rejected_by_reason
    assert rep.on_schedule, rep
