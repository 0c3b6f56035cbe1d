"""The agent's loop thread asks for a 1 ns timer slack (clerk._frames.fine_timer_slack): its
sub-ms waits before a due run then end within microseconds of their end, not ~50-80 µs past it."""

from __future__ import annotations

import ctypes
import sys
import threading

import pytest

from clerk._frames import fine_timer_slack

PR_GET_TIMERSLACK = 30


@pytest.mark.timeout(10)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_fine_timer_slack_sets_the_calling_threads_slack_only() -> None:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    before = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    seen: list[int] = []

    def loop_thread() -> None:
        assert fine_timer_slack()
        seen.append(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0))

    t = threading.Thread(target=loop_thread)
    t.start()
    t.join(5)
    assert seen == [1]
    assert prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == before  # per thread: this one untouched
