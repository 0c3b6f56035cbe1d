"""Suite-wide fixtures: every test must leave no process and no file descriptor behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest

from supervisor.testing import WaitTimeout, wait_until


def _descendants() -> dict[int, str]:
    out: dict[int, str] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = " ".join(p.cmdline()[:4])
        except psutil.Error:
            pass
    return out


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a child process of the test runner running."""
    before = set(_descendants())
    yield
    if request.node.get_closest_marker("allow_leaks"):
        return
    try:
        wait_until(lambda: not (set(_descendants()) - before), timeout=5.0)
    except WaitTimeout:
        leaked = {pid: cmd for pid, cmd in _descendants().items() if pid not in before}
        for pid in leaked:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        pytest.fail(f"test leaked processes: {leaked}")


@pytest.fixture
def fd_count() -> int:
    """Number of open fds of the test process now (for leak checks in soak tests)."""
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes started without a ``data_dir`` use ``$XDG_STATE_HOME/clerk/<name>``: give every
    test its own, so no test reads another's (or the user's) durable task states."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


def pytest_report_header() -> str:
    """Say in every run's header how deep the simulations go (tests.unit.simdepth)."""
    from tests.unit.simdepth import DEEP, QUICK_SHARE

    if DEEP:
        return "simulations: CLERK_SIM_DEPTH=deep (every random example and seed)"
    return (f"simulations: CLERK_SIM_DEPTH=quick (about {QUICK_SHARE:.0%} of the random "
            f"examples and seeds; CLERK_SIM_DEPTH=deep for all)")
