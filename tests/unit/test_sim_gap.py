"""Replication rounds paced by a gap (``SimLedger.replicate_gap_s``, the runner's
``REPLICATE_GAP_S``) and runs longer than their interval.

The members learn that a run is in flight only from a round. On a busy cluster a change
within 25 ms of the last round waits for the next one; a manager that dies in that window
leaves a successor that does not know of the run it just dispatched. For a short run that is
harmless (it has ended, and its result, kept in its node's outbox, continues the row before
the successor dispatches again). A long run is still going: the successor sent the next slot
beside it (the task overlapped itself) and dropped its result, and the next run repeated a
count. Found by a review in the simulator (the simulator had replicated every change at once,
so no property had ever met the gap). Now a dispatch of a task whose runs are not short
(``clerk._replication.SHORT_RUN_MS``) goes to the members at once, gap or not; and a member's
OFFER carries the runs in flight on it, which the successor adopts (clerk._offerruns), which
covers a short task's run that suddenly runs long too (tests/unit/test_sim_offer_runs.py).
The exposure is shown here with neither.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from clerk._replication import SHORT_RUN_MS, short_runs
from clerk._simtasks import LEDGER
from tests.unit.test_sim_resultacks import ledger_cluster

GAP_S = 0.025
#: Longer than the interval (200 ms), so the overlap rule skips every other slot, and timed
#: so that a result (and its round) lands just before the next dispatch: that dispatch falls
#: inside the gap.
LONG_S = 0.37


def _crash_after_a_dispatch(seed: int, at_once: bool, offer_runs: bool = False) -> dict[str, Any]:
    """A 3-node ledger cluster with the gap and long runs; the manager dies right after it
    dispatched a run to another node; then 3 s more. What followed. ``offer_runs``: the
    members' OFFERs carry their runs in flight (tests/unit/test_sim_offer_runs.py)."""
    net, world, names = ledger_cluster(seed, 3, replicate_gap_s=GAP_S, run_s=LONG_S,
                                       long_runs_at_once=at_once, offer_runs=offer_runs)
    net.fifo = True
    manager = net.managers()[0].name
    layer = world.layers[manager]
    seen = {str(r["run"]) for r in [layer.scheduler.records[LEDGER].running] if r}

    def fresh_dispatch() -> bool:
        run = layer.scheduler.records[LEDGER].running
        if run is None or str(run["run"]) in seen:
            return False
        seen.add(str(run["run"]))
        return str(run["node"]) != manager

    assert net.run_until_true(fresh_dispatch, limit=5.0, step=0.0005) is not None
    slot = int(layer.scheduler.records[LEDGER].running["slot"])  # type: ignore[index]
    in_gap = layer._round_due is not None  # its round waits for the gap
    net.crash(manager)
    net.run_for(3.0)
    runs = sorted((r for r in world.runs if r.slot >= slot), key=lambda r: r.at)
    overlaps = [(a.slot, b.slot) for a, b in zip(runs, runs[1:], strict=False)
                if b.at < a.at + LONG_S - 1e-6]
    counts = Counter(r.after for r in world.runs if r.before is not None)
    boss = net.managers()[0].name
    conflicts = world.layers[boss].scheduler.records[LEDGER].conflicts
    return {"in_gap": in_gap, "overlaps": overlaps, "conflicts": conflicts,
            "repeated": sorted(c for c, k in counts.items() if k > 1),
            "twice": sorted(s for s, k in Counter(r.slot for r in world.runs).items() if k > 1)}


def _runs(at_once: bool, offer_runs: bool = False) -> list[dict[str, Any]]:
    return [_crash_after_a_dispatch(seed, at_once, offer_runs) for seed in range(8)]


def test_without_the_rule_a_crash_in_the_gap_overlaps_a_long_run_and_repeats_a_count() -> None:
    """The exposure, shown: with long runs' dispatches waiting for the gap like any change."""
    got = _runs(at_once=False)
    hit = [g for g in got if g["in_gap"]]
    assert len(hit) >= 3, got  # (the schedule comes about)
    assert any(g["overlaps"] and g["repeated"] for g in hit), got
    # The dropped update is counted, never silent (Running._count_dropped).
    assert all(g["conflicts"] >= 1 for g in hit if g["repeated"]), got


def test_a_long_runs_dispatch_goes_at_once_and_a_crash_loses_nothing() -> None:
    got = _runs(at_once=True)
    for g in got:
        assert not g["in_gap"], g  # its round went with it
        assert not g["overlaps"] and not g["repeated"] and not g["twice"], g
        assert g["conflicts"] == 0, g


def test_without_the_rule_the_offered_runs_alone_lose_nothing() -> None:
    """The runs in flight a member's OFFER carries (clerk._offerruns) cover the same window
    without the rule: the successor adopts the run from its node's OFFER."""
    got = _runs(at_once=False, offer_runs=True)
    assert sum(g["in_gap"] for g in got) >= 3, got
    for g in got:
        assert not g["overlaps"] and not g["repeated"] and not g["twice"], g
        assert g["conflicts"] == 0, g


def test_which_runs_are_short() -> None:
    """The rule's input: the row's last run, ended well, under SHORT_RUN_MS. Anything else
    (never ran, skipped, refused, timed out, long, malformed) sends its round at once."""
    assert short_runs({"outcome": "ok", "duration_ms": 0.4})
    assert short_runs({"outcome": "error", "duration_ms": SHORT_RUN_MS - 0.01})
    for last in (None, {}, {"outcome": "ok", "duration_ms": SHORT_RUN_MS},
                 {"outcome": "skipped", "duration_ms": 0.0},
                 {"outcome": "refused", "duration_ms": 0.0},
                 {"outcome": "timeout", "duration_ms": 1.0},
                 {"outcome": "ok", "duration_ms": True}, {"outcome": "ok"}, "ok"):
        assert not short_runs(last), last
