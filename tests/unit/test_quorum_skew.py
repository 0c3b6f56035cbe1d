"""Quorum mode takes the voters' committed rows whatever the old manager's clock said.

Quorum mode promises that a state acknowledged by a majority of voters is never lost, "with no
assumption about clock offsets" (README). A new manager's phase 1 learns the majority's rows
and merges them (``clerk._runquorum``, the simulator's ``_quorum_table``), and that merge
refused a row claiming a slot more than ``FUTURE_SKEW_MS`` (5 s) past the new manager's clock,
as it refuses a forged OFFER: a manager whose clock ran 8 s ahead had its committed states
dropped at the next takeover, which continued from its own older replica (a count repeated;
"committed version went back"). The reservations were never so guarded
(``WriteAhead.continue_after``): the slots it ran ahead are skipped either way.

The simulator (real cores and schedulers): 5 nodes, voters n0-n2, the manager n2's clock 8 s
ahead; n1 is cut off for 3 s (its replica falls behind) while n2 and n0 commit; then n2 dies,
the cut heals, and n1 takes over from the majority's rows.
"""

from __future__ import annotations

import pytest

from clerk._simquorum import VOTERS, build
from clerk._simquorum import QuorumChecks as Checks

SKEW_S = 8.0  # past FUTURE_SKEW_MS (clerk._lead)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [2, 4, 7, 10])
def test_a_takeover_keeps_the_state_a_skewed_manager_committed(seed: int) -> None:
    net, world = build(5, seed, [0.0, 0.0, SKEW_S, 0.0, 0.0], 0.0005, 0.0005)
    checks = Checks(net, world)
    assert net.run_until_true(lambda: len(world.runs) >= 5, limit=30.0) is not None
    assert [m.name for m in net.managers()] == ["n2"]
    net.partition(["n0", "n2", "n3", "n4"], ["n1"])
    net.run_for(3.0)
    acked = world.acknowledged(list(VOTERS))  # the counter a majority of voters holds
    assert acked >= 1, acked
    net.crash("n2")
    net.heal()
    cut = len(world.runs)
    net.run_for(15.0)
    after = [r for r in world.runs[cut:] if r.manager != "n2"]
    assert after, "the ledger does not run again after the takeover"
    # main: the new manager started from its own replica's older counter
    older = [r.before for r in after if r.before is None or r.before < acked]
    assert not older, (acked, [r.before for r in after[:4]])
    assert not checks.violations, checks.violations
