"""clerk._adoptedruns: which adopted runs a new manager fails at once, node by node."""

from __future__ import annotations

import pytest

from clerk._adoptedruns import UNLISTED_RUN_WAIT_S, fails_at_takeover
from clerk._routing import LEAVE_ACK_WAIT


@pytest.mark.timeout(10)
def test_a_crash_takeover_keeps_a_run_on_a_node_it_does_not_list() -> None:
    # Not listed: it may have left with the run going (default mode): kept open.
    assert not fails_at_takeover(listed=False, alive=False, graceful=False, quorum=False)
    # ... failed at once as before in quorum mode, or with the rule off (the simulator's
    # SimLedger.unlisted_runs_wait = False).
    assert fails_at_takeover(listed=False, alive=False, graceful=False, quorum=True)
    assert fails_at_takeover(listed=False, alive=False, graceful=False, quorum=False,
                             unlisted_wait=False)


@pytest.mark.timeout(10)
def test_a_node_this_manager_saw_go_fails_at_once_and_a_live_one_is_asked() -> None:
    for quorum in (False, True):
        assert fails_at_takeover(listed=True, alive=False, graceful=False, quorum=quorum)
        assert not fails_at_takeover(listed=True, alive=True, graceful=False, quorum=quorum)


@pytest.mark.timeout(10)
def test_a_hand_over_fails_none() -> None:
    for listed in (False, True):
        for alive in (False, True):
            for quorum in (False, True):
                assert not fails_at_takeover(listed, alive, graceful=True, quorum=quorum)


@pytest.mark.timeout(10)
def test_the_wait_for_a_node_not_listed_outlasts_what_a_leaver_keeps() -> None:
    # A member that left keeps its result LEAVE_ACK_WAIT from its leave, which came before
    # the takeover: the bound from the takeover must be longer, with room for the resend.
    assert UNLISTED_RUN_WAIT_S >= LEAVE_ACK_WAIT + 1.0
