"""``ChildSpec(hold_signals=True)``: the child's process starts with the stop signals blocked
(inherited from the spawning thread's mask through fork and exec), so one sent while it starts
waits for the handler its start function installs; the supervisor's own thread gets its mask
back. Without it, a child starts with none of them blocked."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from supervisor import HELD_SIGNALS, ChildSpec, InvalidSpecError, Supervisor
from supervisor.testing import wait_until

pytestmark = pytest.mark.timeout(60)


def _started_blocked(tmp_path: Path, hold: bool) -> set[int]:
    out = tmp_path / f"mask-{hold}"
    sup = Supervisor([ChildSpec(id="c", start="tests.integration.sup_children:blocked_signals",
                                args=(str(out),), hold_signals=hold, shutdown="brutal_kill")],
                     name="hold")
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    sup.start()
    try:
        wait_until(out.exists, timeout=30)
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # ours unchanged
        assert threading.current_thread() is threading.main_thread()
    finally:
        sup.stop()
    return {int(s) for s in out.read_text().split()}


def test_a_child_that_holds_signals_starts_with_them_blocked(tmp_path: Path) -> None:
    assert {int(s) for s in HELD_SIGNALS} <= _started_blocked(tmp_path, True)
    assert not {int(s) for s in HELD_SIGNALS} & _started_blocked(tmp_path, False)


@pytest.mark.parametrize("spec", [
    {"start": "tests.integration.sup_children:blocked_signals", "hold_signals": "yes"},
    {"command": ["sleep", "5"], "hold_signals": True},
])
def test_hold_signals_is_checked(spec: dict[str, object]) -> None:
    with pytest.raises(InvalidSpecError, match="hold_signals"):
        ChildSpec(id="c", **spec)  # type: ignore[arg-type]
