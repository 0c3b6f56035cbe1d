"""Restart types, strategies, ordering and escalation, with real processes
(modelled on OTP's supervisor_SUITE)."""

import os
import signal

import pytest

from supervisor import RestartIntensityError, ShutdownReason
from supervisor.testing import wait_until
from tests.integration.sup_harness import Harness, alive

pytestmark = pytest.mark.timeout(60)

EXIT_SIGNAL = {"normal": signal.SIGUSR1, "shutdown": signal.SIGTERM, "abnormal": signal.SIGUSR2}


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


@pytest.mark.parametrize("how", ["normal", "shutdown", "abnormal"])
@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
def test_restart_type_by_exit_reason(h, restart, how):
    from tests.integration import sup_children

    # 'plain' dies of SIGTERM (reason shutdown); 'worker' maps USR1/USR2 to exit 0 / crash.
    fn = sup_children.plain if how == "shutdown" else sup_children.worker
    sup = h.sup([h.spec("c", fn, restart=restart), h.spec("other")])
    sup.start()
    other = h.settled(sup)["other"]
    (pid,) = h.wait_started("c")
    os.kill(pid, EXIT_SIGNAL[how])
    wait_until(lambda: h.exits("c"), message="exit event")
    assert h.exits("c") == [how]

    if restart == "permanent" or (restart == "transient" and how == "abnormal"):
        pids = h.wait_started("c", 2)
        assert h.pids(sup)["c"] == pids[1] != pid
    elif restart == "transient":
        wait_until(lambda: h.pids(sup)["c"] is None)
        assert sup.which_children()[0].status == "terminated"
        assert len(h.lines("start", "c")) == 1
    else:
        wait_until(lambda: "c" not in h.pids(sup))
        assert len(h.lines("start", "c")) == 1
    assert h.pids(sup)["other"] == other


def test_one_for_one_restarts_only_the_failed_child(h):
    sup = h.sup([h.spec("a"), h.spec("b"), h.spec("c")], strategy="one_for_one")
    sup.start()
    before = h.settled(sup)
    os.kill(before["b"], signal.SIGKILL)
    h.wait_started("b", 2)
    after = h.pids(sup)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    assert h.exits("b") == ["abnormal"]


def started_order(h):
    """Start/restart order as the supervisor spawned them (events are emitted in order;
    the children's own "start" lines race each other through interpreter start-up)."""
    return [(e.kind, e.child_id) for e in list(h.events) if e.kind in ("start", "restart")]


def test_one_for_all_order_is_reverse_stop_then_start_in_order(h):
    sup = h.sup([h.spec(x) for x in "abcd"], strategy="one_for_all")
    sup.start()
    first = h.settled(sup)
    os.kill(first["b"], signal.SIGKILL)
    for x in "abcd":
        h.wait_started(x, 2)
    # Stops are sequential (each waits for the previous child to exit): the children's
    # own log shows the order in which they received SIGTERM.
    assert [c for e, c, _ in h.lines("stop")] == ["d", "c", "a"]
    assert h.kinds()[4:] == [
        ("exit", "b"), ("exit", "d"), ("exit", "c"), ("exit", "a"),
        ("restart", "a"), ("restart", "b"), ("restart", "c"), ("restart", "d"),
    ]
    # Every restarted process is one that then really ran the child's code.
    restarted = [e.pid for e in h.events if e.kind == "restart"]
    assert sorted(restarted) == sorted(h.settled(sup).values())
    assert all(not alive(pid) for pid in first.values())
    assert h.exits("b") == ["abnormal"]
    assert h.exits("a") == h.exits("c") == h.exits("d") == ["shutdown"]


def test_rest_for_one_order_from_what_children_did(h):
    sup = h.sup([h.spec(x) for x in "abcd"], strategy="rest_for_one")
    sup.start()
    first = h.settled(sup)
    os.kill(first["b"], signal.SIGUSR2)  # b crashes with an exception
    for x in "bcd":
        h.wait_started(x, 2)
    assert [c for e, c, _ in h.lines("stop")] == ["d", "c"]
    assert h.kinds()[4:] == [
        ("exit", "b"), ("exit", "d"), ("exit", "c"),
        ("restart", "b"), ("restart", "c"), ("restart", "d"),
    ]
    assert started_order(h)[4:] == [("restart", "b"), ("restart", "c"), ("restart", "d")]
    assert h.pids(sup)["a"] == first["a"]


def test_rest_for_one_failure_of_last_child_touches_no_sibling(h):
    sup = h.sup([h.spec(x) for x in "abc"], strategy="rest_for_one")
    sup.start()
    first = h.settled(sup)
    os.kill(first["c"], signal.SIGKILL)
    h.wait_started("c", 2)
    after = h.pids(sup)
    assert (after["a"], after["b"]) == (first["a"], first["b"])


def test_one_for_all_drops_temporary_siblings(h):
    sup = h.sup([h.spec("a"), h.spec("t", restart="temporary"), h.spec("c")],
                strategy="one_for_all")
    sup.start()
    first = h.settled(sup)
    os.kill(first["c"], signal.SIGKILL)
    h.wait_started("a", 2)
    h.wait_started("c", 2)
    assert [c.id for c in sup.which_children()] == ["a", "c"]
    assert not alive(first["t"])


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_escalation_when_intensity_is_exceeded(h, strategy):
    sup = h.sup([h.spec("a"), h.spec("b"), h.spec("c")], strategy=strategy,
                intensity=2, period=60)
    sup.start()
    for n in range(1, 4):
        pid = h.wait_started("b", n)[-1]
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(RestartIntensityError) as info:
        sup.wait(timeout=10)
    assert info.value.info.reason is ShutdownReason.INTENSITY
    assert info.value.info.child_id == "b"
    assert info.value.info.exit.kind == "abnormal"
    every_pid = [pid for _, _, pid in h.lines("start")]
    assert len(h.lines("start", "b")) == 3
    wait_until(lambda: not any(alive(p) for p in every_pid))
    assert h.kinds()[-1] == ("shutdown", None)


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_other_child_fails(h, strategy):
    """A failure of the first child: who else is restarted depends on the strategy."""
    sup = h.sup([h.spec("a"), h.spec("b")], strategy=strategy)
    sup.start()
    first = h.settled(sup)
    os.kill(first["a"], signal.SIGKILL)
    h.wait_started("a", 2)
    if strategy == "one_for_one":
        assert h.pids(sup)["b"] == first["b"]
    else:
        h.wait_started("b", 2)
        assert h.pids(sup)["b"] != first["b"]
    # And a failure of the last child never touches the first.
    before = h.settled(sup)
    os.kill(before["b"], signal.SIGKILL)
    wait_until(lambda: h.pids(sup)["b"] not in (None, before["b"]))
    if strategy == "one_for_all":
        assert h.pids(sup)["a"] != before["a"]
    else:
        assert h.pids(sup)["a"] == before["a"]


def test_default_intensity_gives_up_on_second_restart_in_five_seconds(h):
    sup = h.sup([h.spec("a")], intensity=1)
    assert sup.period == 5
    sup.start()
    os.kill(h.wait_started("a")[0], signal.SIGKILL)
    os.kill(h.wait_started("a", 2)[1], signal.SIGKILL)
    with pytest.raises(RestartIntensityError):
        sup.wait(10)
    assert sup.run.__doc__  # the object stays usable for inspection


def test_command_child_exit_codes(h):
    from supervisor import ChildSpec

    sup = h.sup([ChildSpec(id="sh", command=["sh", "-c", "exit 3"], restart="transient")],
                intensity=0)
    sup.start()
    with pytest.raises(RestartIntensityError) as info:
        sup.wait(10)
    assert info.value.info.exit.exitcode == 3
    assert str(info.value.info.exit) == "exit code 3"


def test_simultaneous_crashes_under_one_for_all(h):
    """Two exits ready in the same poll: the second one's (now stale) event must not
    reap or stall on the fresh processes that replaced it."""
    sup = h.sup([h.spec(x) for x in "abc"], strategy="one_for_all", intensity=20)
    sup.start()
    first = h.settled(sup)
    for _ in range(3):
        pids = h.settled(sup)
        os.kill(pids["a"], signal.SIGKILL)
        os.kill(pids["c"], signal.SIGKILL)
        def replaced(old=pids):
            now = h.pids(sup)
            return None not in now.values() and not set(now.values()) & set(old.values())

        wait_until(replaced)
    final = h.settled(sup)
    assert all(alive(p) for p in final.values())
    assert not any(alive(p) for p in first.values())
    assert sup.count_children()["active"] == 3


def test_injected_clock_drives_the_intensity_window(h):
    """With a clock that jumps 10 s per restart, intensity=1/period=5 is never exceeded."""
    import itertools

    ticks = itertools.count(0, 10)
    sup = h.sup([h.spec("a")], intensity=1, period=5, clock=lambda: float(next(ticks)))
    sup.start()
    for n in range(1, 5):
        os.kill(h.wait_started("a", n)[-1], signal.SIGKILL)
    h.wait_started("a", 5)
    assert sup.running
