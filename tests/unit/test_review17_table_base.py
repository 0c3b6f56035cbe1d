"""review17: after two crash takeovers in a row, the *table's* run in flight is in the time base
of the manager whose table it is, which need not be the manager the new one followed last.

m1 dispatches a 3 s run and replicates its table (the run in flight in it, in m1's time base)
before it dies. m2, 4 s ahead of m1, takes over and dies inside its replication gap: m3's
table is still m1's. m3, whose clock agrees with m2's (the manager it followed last, offset 0)
and which followed m1 before (4 s ahead of it: ``ahead_of``), moves the table's row by
``ahead_ms``, its offset to m2 (0): the row reads 4 s early on m3's clock, the run times out
while it still runs and the next slot goes beside it. The member's OFFER lists the same run
with m1's times (moved right by ``sender_base_ms``) but is ignored: the table's row is kept
(``adopt_run``: "the table's own"). 8610f5a moved offered runs by the sender's offset; the
table's rows keep ``their_base_ms`` on the assumption that the table is the last-followed
manager's. Now the node keeps the name of the manager whose table its replica holds
(``CoreState.table_from``) and the activation moves the rows by the larger of its offsets to
that one and to the one followed last (never earlier than before).
"""

from __future__ import annotations

import pytest

from tests.unit.test_review15_second_takeover import AHEAD_MS, TIMEOUT, first_early
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started, tdef


def early_after_second_takeover(table_of: str | None, ahead_of_m1: float = AHEAD_MS,
                                 ahead_ms: float = 0.0) -> float | None:
    """Seconds after m3's takeover at which it timed the run out or sent a slot beside it
    before the run's end (None: neither)."""
    m1 = started(sched(tdef(timeout=TIMEOUT), seed=1), due("t", K) + 0.1)
    m1.claim = (1, "n7")
    run_ok(m1, K + 1, state={"n": 1})
    ds, _ = m1.tick(due("t", K + 2), NODES)
    d = ds[0]
    table = m1.table()  # replicated with the run in flight (m1's time base)
    assert table is not None
    wall3 = due("t", K + 2) + 0.7 + AHEAD_MS / 1000  # m2's takeover and death: 0.7 s
    m3 = sched(tdef(timeout=TIMEOUT), seed=3)
    m3.load(table)
    m3.begin_activation(wall3, graceful=False, claim=(m1.claim[0] + 2, "n9"),
                        ahead_ms=ahead_ms, ahead_of={"n7": ahead_of_m1, "n8": ahead_ms},
                        table_of=table_of)
    m3.activate_step(float("inf"))
    m3.adopt_run("t", d.run_id, d.slot, d.node, d.due_ms, d.deadline_ms, wall3 + 0.01,
                 as_sent=True)
    return first_early(m3, d, wall3)


@pytest.mark.timeout(30)
def test_a_second_takeover_reads_the_tables_run_in_the_tables_time_base() -> None:
    assert early_after_second_takeover("n7") is None


@pytest.mark.timeout(30)
def test_the_table_of_an_unknown_or_behind_manager_moves_as_before() -> None:
    """Not known (no table_of, or a manager never followed): the offset to the manager
    followed last, as before (the exposure stays: timed out early). And never earlier than
    by that offset: m3 4 s ahead of m2, the table's m1 0 s, still moved by 4 s."""
    assert early_after_second_takeover(None) is not None
    assert early_after_second_takeover("n5") is not None
    assert early_after_second_takeover("n7", ahead_of_m1=0.0, ahead_ms=AHEAD_MS) is None
