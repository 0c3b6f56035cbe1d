"""Nested supervisors (escalation up the tree) and significant children with
auto_shutdown, with real processes."""

import os
import signal

import pytest

from supervisor import ChildSpec, RestartIntensityError, ShutdownReason, Supervisor
from supervisor.testing import wait_until
from tests.integration import sup_children
from tests.integration.sup_harness import Harness, alive

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def inner(h, *ids, **kwargs):
    return Supervisor([h.spec(i) for i in ids], name="inner", **kwargs)


def crash_twice(h, cid):
    """Make the inner supervisor (intensity 1) give up: two crashes of ``cid``."""
    os.kill(h.wait_started(cid, 1)[-1], signal.SIGKILL)
    os.kill(h.wait_started(cid, 2)[-1], signal.SIGKILL)


def test_nested_supervisor_starts_and_stops_its_children_in_order(h):
    sup = h.sup([h.spec("a"), ChildSpec(id="pool", start=inner(h, "x", "y")), h.spec("b")])
    sup.start()
    started = h.settled(sup)
    h.wait_started("x")
    h.wait_started("y")
    pids = [pid for _, _, pid in h.lines("start")]
    sup.stop()
    assert [c for _, c, _ in h.lines("stop")] == ["b", "y", "x", "a"]
    assert not any(alive(p) for p in pids + [started["pool"]])
    assert h.exits("pool") == ["shutdown"]


def test_nested_escalation_restarts_the_subtree(h):
    sup = h.sup([ChildSpec(id="pool", start=inner(h, "x", intensity=1)), h.spec("b")])
    sup.start()
    first = h.settled(sup)
    crash_twice(h, "x")
    wait_until(lambda: h.exits("pool"), message="inner supervisor gave up")
    assert h.exits("pool") == ["abnormal"]  # exit code 1: escalated
    h.wait_started("x", 3)  # the restarted inner supervisor started x again
    assert h.pids(sup)["pool"] not in (None, first["pool"])
    assert h.pids(sup)["b"] == first["b"]


def test_escalation_to_the_top(h):
    sup = h.sup([ChildSpec(id="pool", start=inner(h, "x", intensity=1)), h.spec("b")],
                intensity=0)
    sup.start()
    h.settled(sup)
    crash_twice(h, "x")
    with pytest.raises(RestartIntensityError) as info:
        sup.wait(10)
    assert info.value.info.child_id == "pool"
    pids = [pid for _, _, pid in h.lines("start")]
    wait_until(lambda: not any(alive(p) for p in pids))


def test_two_levels_of_nesting(h):
    deep = Supervisor([ChildSpec(id="mid", start=inner(h, "x"))], name="mid")
    sup = h.sup([ChildSpec(id="top", start=deep)])
    sup.start()
    (x,) = h.wait_started("x")
    sup.stop()
    assert not alive(x) and h.lines("stop", "x")


@pytest.mark.parametrize("restart", ["transient", "temporary"])
def test_any_significant_stops_the_supervisor(h, restart):
    sup = h.sup(
        [h.spec("a"), h.spec("s", restart=restart, significant=True), h.spec("c")],
        auto_shutdown="any_significant",
    )
    sup.start()
    pids = h.settled(sup)
    os.kill(pids["s"], signal.SIGUSR1)  # normal exit
    info = sup.wait(10)
    assert info.reason is ShutdownReason.AUTO_SHUTDOWN and info.child_id == "s"
    assert [c for _, c, _ in h.lines("stop")] == ["c", "a"]
    assert not any(alive(p) for p in pids.values())


def test_all_significant_waits_for_every_significant_child(h):
    sup = h.sup(
        [h.spec("a"), h.spec("s1", restart="transient", significant=True),
         h.spec("s2", restart="temporary", significant=True)],
        auto_shutdown="all_significant",
    )
    sup.start()
    pids = h.settled(sup)
    os.kill(pids["s1"], signal.SIGUSR1)
    wait_until(lambda: h.pids(sup)["s1"] is None)
    assert sup.running
    os.kill(pids["s2"], signal.SIGTERM)  # shutdown exit: not restarted either
    assert sup.wait(10).reason is ShutdownReason.AUTO_SHUTDOWN


def test_significant_child_restarted_after_crash_and_terminate_child_does_not_count(h):
    sup = h.sup([h.spec("a"), h.spec("s", restart="transient", significant=True)],
                auto_shutdown="any_significant")
    sup.start()
    pids = h.settled(sup)
    os.kill(pids["s"], signal.SIGUSR2)  # abnormal: restarted, no auto shutdown
    h.wait_started("s", 2)
    sup.terminate_child("s")  # the supervisor's own doing: no auto shutdown
    assert sup.running and sup.count_children()["active"] == 1


def test_nested_supervisor_auto_shutdown_is_a_normal_exit_for_its_parent(h):
    pool = Supervisor(
        [ChildSpec(id="job", start=sup_children.exit_now, restart="transient",
                   significant=True)],
        auto_shutdown="any_significant",
    )
    sup = h.sup([h.spec("a"), ChildSpec(id="pool", start=pool, restart="transient")])
    sup.start()
    wait_until(lambda: h.exits("pool"))
    assert h.exits("pool") == ["normal"]
    assert {c.id: c.status for c in sup.which_children()} == {
        "a": "running", "pool": "terminated"}
