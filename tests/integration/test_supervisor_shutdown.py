"""Shutdown values (brutal_kill / timeout / infinity), whole-tree termination, stop
order and start failures, with real processes."""

import time

import pytest

from supervisor import ChildSpec, ChildStartError, RestartIntensityError, ShutdownReason
from supervisor.testing import wait_until
from tests.integration import sup_children
from tests.integration.sup_harness import Harness, alive

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def exit_of(h, cid):
    return next(e.reason for e in h.events if e.kind == "exit" and e.child_id == cid)


def test_stop_terminates_right_to_left_and_reports_stopped(h):
    sup = h.sup([h.spec(x) for x in "abc"])
    sup.start()
    pids = h.settled(sup)
    sup.stop()
    assert [c for _, c, _ in h.lines("stop")] == ["c", "b", "a"]
    assert not any(alive(p) for p in pids.values())
    info = sup.wait(timeout=5)
    assert info.reason is ShutdownReason.STOPPED and info.ok and info.exit_code == 0
    sup.stop()  # idempotent


def test_brutal_kill_does_not_wait_for_sigterm_handling(h):
    sup = h.sup([h.spec("s", sup_children.stubborn, shutdown="brutal_kill")])
    sup.start()
    h.settled(sup)
    t0 = time.monotonic()
    sup.terminate_child("s")
    assert time.monotonic() - t0 < 2
    assert str(exit_of(h, "s")) == "shutdown (signal SIGKILL)"
    assert h.lines("term", "s") == []  # it never saw a SIGTERM


def test_timeout_kills_a_child_that_ignores_sigterm(h):
    sup = h.sup([h.spec("s", sup_children.stubborn, shutdown=300)])
    sup.start()
    h.settled(sup)
    t0 = time.monotonic()
    sup.terminate_child("s")
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 5
    assert h.lines("term", "s")  # it did get SIGTERM first
    assert exit_of(h, "s").signal == 9


def test_timeout_is_not_used_when_the_child_stops_in_time(h):
    sup = h.sup([h.spec("s", sup_children.stubborn, 0.0, shutdown=30_000)])
    sup.start()
    h.settled(sup)
    t0 = time.monotonic()
    sup.stop()
    assert time.monotonic() - t0 < 10
    assert exit_of(h, "s").kind == "shutdown" and exit_of(h, "s").exitcode == 0


def test_infinity_waits_for_a_slow_orderly_shutdown(h):
    sup = h.sup([h.spec("s", sup_children.stubborn, 1.0, shutdown="infinity")])
    sup.start()
    h.settled(sup)
    t0 = time.monotonic()
    sup.stop()
    assert time.monotonic() - t0 >= 1.0
    assert exit_of(h, "s").exitcode == 0  # exited by itself, not killed


@pytest.mark.parametrize("shutdown", ["brutal_kill", 2000])
def test_shutdown_ends_the_whole_process_tree(h, shutdown):
    sup = h.sup([h.spec("g", sup_children.with_grandchild, True, shutdown=shutdown)])
    sup.start()
    h.wait_started("g.gc")
    h.wait_started("g.gc2")  # this one left the process group (setsid)
    pids = [pid for _, _, pid in h.lines("start")]
    assert len(pids) == 3
    sup.terminate_child("g")
    wait_until(lambda: not any(alive(p) for p in pids), timeout=5)


def test_a_crashed_childs_leftovers_in_its_group_are_killed(h):
    sup = h.sup([h.spec("g", sup_children.with_grandchild)])
    sup.start()
    (gc,) = h.wait_started("g.gc")
    (child,) = h.wait_started("g")
    import os
    import signal

    os.kill(child, signal.SIGKILL)
    wait_until(lambda: not alive(gc), timeout=5)
    h.wait_started("g.gc", 2)  # and the restarted child made a new one


def test_start_failure_stops_the_started_children_and_raises(h):
    sup = h.sup(
        [h.spec("a"), ChildSpec(id="bad", command=["/no/such/program-xyz"]), h.spec("c")]
    )
    with pytest.raises(ChildStartError) as info:
        sup.start()
    assert info.value.child_id == "bad" and "not found" in str(info.value)
    assert h.lines("start", "c") == []
    with pytest.raises(ChildStartError):
        sup.wait(5)
    assert not sup.running


def test_run_returns_exit_codes(h):
    ok = h.sup([ChildSpec(id="t", start=sup_children.exit_now, restart="temporary",
                          significant=True)], auto_shutdown="any_significant")
    assert ok.run() == 0
    bad = h.sup([ChildSpec(id="t", start=sup_children.crash_now)], intensity=0)
    assert bad.run() == 1


def test_a_failed_restart_counts_towards_intensity(h, tmp_path):
    import os
    import signal

    script = tmp_path / "prog.sh"
    script.write_text("#!/bin/sh\nexec sleep 1000\n")
    script.chmod(0o755)
    sup = h.sup([ChildSpec(id="p", command=[str(script)])], intensity=1, period=60)
    sup.start()
    (pid,) = [c.pid for c in sup.which_children()]
    script.unlink()  # the program is gone: the restart cannot start it
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RestartIntensityError) as info:
        sup.wait(10)
    exit_reason = info.value.info.exit
    assert info.value.info.child_id == "p" and "not found" in str(exit_reason)
