"""review15: a run only a member's OFFER lists, after two crash takeovers in a row.

skew2 (e6ceff7) moves such a run's times (as the manager that sent it sent them) by how far
the new manager is ahead of the manager *it followed* (``begin_activation``'s ``ahead_ms``).
When that is not the manager that sent the run, the shift is another offset. Here m1 sends a
3 s run and dies before any replica shows it; m2, 4 s ahead of m1, takes over and adopts the
run from the member's OFFER (moved +4 s: right), then dies inside its replication gap; m3,
whose clock agrees with m2's (offset 0 to the manager it followed), takes over from the table
of before and adopts the same OFFER (still m1's times): moved by 0, the run is read 4 s early
on m3's clock, timed out after the 1 s grace while it still runs, and the next slot goes
beside it. A double fault (two manager crashes inside one run, the second inside the gap).
Now each node keeps its offset to every manager it followed lately, by name
(clerk._clockskew.SkewEstimator.ahead_by_manager), and a new manager moves an offered run by
its offset to the manager that sent it (``Scheduler.sender_base_ms``: the run id names it):
m3 followed m1 before m2. A manager it never followed: still its offset to the one it
followed last (the last case here).
"""

from __future__ import annotations

import pytest

from clerk._schedule import Dispatch, Scheduler
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef

TIMEOUT = 3000
AHEAD_MS = 4000.0


def second_takeover(ahead_of: dict[str, float] | None) -> float | None:
    """m1 -> m2 (4 s ahead, adopts the OFFER-only run) -> m3 (m2's clock, ``ahead_of`` its
    offsets to the managers it followed): the seconds after m3's takeover at which it first
    timed the run out or sent a slot beside it, before the run's end (None: it did neither)."""
    m1 = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    run_ok(m1, K + 1, state={"n": 1})
    table = m1.table()
    ds, _ = m1.tick(due("t", K + 2), NODES)  # the run only the member knows of
    d = ds[0]
    # m2 (4 s ahead of m1) takes over 0.5 s later and adopts the run from the OFFER.
    wall2 = due("t", K + 2) + 0.5 + AHEAD_MS / 1000
    m2 = sched(tdef(timeout=TIMEOUT), seed=2)
    m2.load(table)
    m2.begin_activation(wall2, graceful=False, claim=(m1.claim[0] + 1, "n8"),
                        ahead_ms=AHEAD_MS)
    m2.activate_step(float("inf"))
    assert m2.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall2 + 0.01,
                        as_sent=True)
    # m2 dies before replicating it; m3 (m2's clock) takes over 0.2 s later from the table
    # of before, and the member's OFFER lists the run as m1 sent it.
    wall3 = wall2 + 0.2
    m3: Scheduler = sched(tdef(timeout=TIMEOUT), seed=3)
    m3.load(table)
    m3.begin_activation(wall3, graceful=False, claim=(m1.claim[0] + 2, "n9"), ahead_ms=0.0,
                        ahead_of={k.replace("m1", m1.claim[1]): v
                                  for k, v in (ahead_of or {}).items()})
    m3.activate_step(float("inf"))
    assert m3.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall3 + 0.01,
                        as_sent=True)
    return first_early(m3, d, wall3)


def first_early(m3: Scheduler, d: Dispatch, wall3: float) -> float | None:
    """Seconds after ``wall3`` (m3's takeover) at which m3 first timed the run ``d`` out or
    sent a slot beside it, before the run's end (m1's deadline, on m3's clock ``AHEAD_MS``
    later); None: neither."""
    end3 = (d.deadline_ms + AHEAD_MS) / 1000
    t = wall3 + 0.1
    while t < end3:
        got, fins = m3.tick(t, NODES)
        if got or fins:
            return t - wall3
        t += 0.25
    return None


@pytest.mark.timeout(30)
def test_a_second_takeover_reads_an_offer_only_run_in_its_time_base() -> None:
    # m3 followed m1 (4 s behind it) before m2 (its own clock): its estimator kept both.
    assert second_takeover({"m1": AHEAD_MS, "n8": 0.0}) is None


@pytest.mark.timeout(30)
def test_without_the_senders_offset_the_run_times_out_early() -> None:
    """The exposure, shown: m3 never followed m1 (it joined under m2), so it moves the run
    by its offset to m2 (0): read 4 s early, timed out while it still runs (README: clocks
    that disagree)."""
    early = second_takeover({"n8": 0.0})
    assert early is not None and early < AHEAD_MS / 1000, early
    assert second_takeover(None) == early


@pytest.mark.timeout(30)
def test_the_tables_runs_keep_the_offset_to_the_manager_whose_table_it_is() -> None:
    """A row's run in flight is in the time base of the manager whose table it is (each
    activation moves its rows into its own): moved by ``ahead_ms``, not by the offset to the
    manager that dispatched it (moving a row m2 already moved, by m1's offset, would time the
    run out that much late)."""
    m1 = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    ds, _ = m1.tick(due("t", K + 1), NODES)
    row = m1.table()
    wall = due("t", K + 1) + 0.5
    m2 = sched(tdef(timeout=TIMEOUT), seed=2)
    m2.load(row)
    m2.begin_activation(wall, graceful=False, claim=(m1.claim[0] + 1, "n8"), ahead_ms=1000.0,
                        ahead_of={m1.claim[1]: 9000.0})
    m2.activate_step(float("inf"))
    run = m2.records["t"].running
    assert run is not None and run["run"] == ds[0].run_id
    assert run["deadline"] == pytest.approx(ds[0].deadline_ms + 1000.0 + 1000.0, abs=2)
