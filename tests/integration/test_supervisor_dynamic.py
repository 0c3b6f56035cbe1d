"""Dynamic children (start/terminate/restart/delete_child), counts, events, the
embedder's kill-and-replace pattern, and API misuse."""

import os
import signal
import threading

import pytest

from supervisor import (
    ChildNotFoundError,
    ChildSpec,
    ChildStartError,
    ChildStateError,
    InvalidSpecError,
    NotRunningError,
    Supervisor,
    SupervisorError,
)
from supervisor.testing import wait_until
from tests.integration import sup_children
from tests.integration.sup_harness import Harness, alive

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def test_dynamic_children_lifecycle(h):
    sup = h.sup([h.spec("a")])
    sup.start()
    pid = sup.start_child(h.spec("b", restart="transient"))
    assert alive(pid)
    assert [c.id for c in sup.which_children()] == ["a", "b"]
    assert sup.count_children() == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}

    with pytest.raises(ChildStateError, match="already_started"):
        sup.start_child(h.spec("b"))
    with pytest.raises(ChildStateError, match="running"):
        sup.restart_child("b")
    with pytest.raises(ChildStateError, match="running"):
        sup.delete_child("b")

    sup.terminate_child("b")
    assert not alive(pid)
    info = {c.id: c for c in sup.which_children()}["b"]
    assert (info.pid, info.status) == (None, "terminated")
    assert h.exits("b") == ["shutdown"]
    sup.terminate_child("b")  # no-op when not running
    with pytest.raises(ChildStateError, match="already_present"):
        sup.start_child(h.spec("b"))

    new = sup.restart_child("b")
    assert new != pid and alive(new)
    assert ("restart", "b") in h.kinds()
    sup.terminate_child("b")
    sup.delete_child("b")
    assert [c.id for c in sup.which_children()] == ["a"]
    assert sup.count_children()["specs"] == 1

    for call in (sup.terminate_child, sup.restart_child, sup.delete_child):
        with pytest.raises(ChildNotFoundError):
            call("zz")


def test_terminating_a_temporary_child_removes_it(h):
    sup = h.sup([h.spec("a")])
    sup.start()
    sup.start_child(h.spec("t", restart="temporary"))
    sup.terminate_child("t")
    assert [c.id for c in sup.which_children()] == ["a"]


def test_start_child_failures(h):
    sup = h.sup([h.spec("a")])
    sup.start()
    with pytest.raises(ChildStartError, match="not found"):
        sup.start_child(ChildSpec(id="x", command=["no-such-program-xyz"]))
    assert [c.id for c in sup.which_children()] == ["a"]
    with pytest.raises(InvalidSpecError, match="auto_shutdown"):
        sup.start_child(h.spec("s", restart="transient", significant=True))


def test_dynamic_nested_supervisor(h):
    sup = h.sup([])
    sup.start()
    inner = Supervisor([h.spec("w")], name="inner")
    pid = sup.start_child(ChildSpec(id="inner", start=inner))
    (w,) = h.wait_started("w")  # started before start_child returned
    assert sup.count_children() == {"specs": 1, "active": 1, "supervisors": 1, "workers": 0}
    assert sup.which_children()[0].type == "supervisor"
    sup.terminate_child("inner")
    assert not alive(pid)
    wait_until(lambda: not alive(w))
    assert h.lines("stop", "w")  # stopped in order by the inner supervisor


def test_kill_and_replace_a_hung_worker_from_another_thread(h):
    """What a Clerk node does when a run times out: terminate_child + restart_child,
    from any thread; no restart is counted, so intensity is not consumed."""
    sup = h.sup([h.spec("w", sup_children.stubborn, shutdown=200)], intensity=0)
    sup.start()
    (old,) = h.wait_started("w")
    result = {}

    def replace():
        sup.terminate_child("w")
        result["pid"] = sup.restart_child("w")

    threads = [threading.Thread(target=replace)]
    threads[0].start()
    threads[0].join(30)
    assert not alive(old)
    assert h.wait_started("w", 2)[1] == result["pid"]
    assert [k for k, c in h.kinds()] == ["start", "exit", "restart"]
    assert sup.running


def test_api_is_thread_safe(h):
    sup = h.sup([h.spec(f"c{i}") for i in range(3)])
    sup.start()
    errors = []

    def hammer():
        try:
            for _ in range(50):
                assert len(sup.which_children()) == 3
                assert sup.count_children()["active"] == 3
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


def test_events_for_start_exit_restart_and_shutdown(h):
    sup = h.sup([h.spec("a")])
    sup.start()
    (pid,) = h.wait_started("a")
    os.kill(pid, signal.SIGKILL)
    h.wait_started("a", 2)
    sup.stop()
    kinds = h.kinds()
    assert kinds == [("start", "a"), ("exit", "a"), ("restart", "a"), ("exit", "a"),
                     ("shutdown", None)]
    exit_event = h.events[1]
    assert exit_event.pid == pid and str(exit_event.reason) == "signal SIGKILL"
    assert h.events[-1].info.ok


def test_hook_errors_are_logged_and_api_calls_from_the_hook_are_refused(h, caplog):
    seen = []

    def hook(event):
        if event.kind == "start":
            try:
                sup.which_children()
            except SupervisorError as exc:
                seen.append(exc)
            raise RuntimeError("hook bug")

    sup = h.sup([h.spec("a")], on_event=hook)
    sup.start()
    assert seen and "loop thread" in str(seen[0])
    assert "on_event hook raised" in caplog.text
    assert sup.which_children()[0].status == "running"


def test_lifecycle_errors(h):
    sup = h.sup([h.spec("a")])
    with pytest.raises(NotRunningError):
        sup.which_children()
    with pytest.raises(NotRunningError):
        sup.wait(0.1)
    sup.start()
    with pytest.raises(SupervisorError, match="already started"):
        sup.start()
    with pytest.raises(TimeoutError):
        sup.wait(timeout=0.05)
    sup.stop()
    with pytest.raises(NotRunningError):
        sup.start_child(h.spec("b"))
    assert sup.wait(0).ok


def test_every_start_exit_and_restart_is_logged_with_id_and_pid(h, caplog):
    caplog.set_level("INFO", logger="supervisor")
    sup = h.sup([h.spec("a")], name="top")
    sup.start()
    (pid,) = h.wait_started("a")
    os.kill(pid, signal.SIGKILL)
    (_, new) = h.wait_started("a", 2)
    sup.stop()
    text = caplog.text
    assert f"top: started child 'a' (pid {pid})" in text
    assert f"top: child 'a' (pid {pid}) exited: signal SIGKILL" in text
    assert f"top: restarted child 'a' (pid {new})" in text
    assert f"top: child 'a' (pid {new}) terminated: shutdown (signal SIGTERM)" not in text
    assert f"top: child 'a' (pid {new}) terminated: shutdown (exit code 0)" in text
    assert "top: supervisor stopped: stopped" in text
    levels = {r.getMessage(): r.levelname for r in caplog.records}
    assert levels[f"top: child 'a' (pid {pid}) exited: signal SIGKILL"] == "WARNING"


def test_intensity_exceeded_is_logged_at_error(h, caplog):
    sup = h.sup([ChildSpec(id="boom", start=sup_children.crash_now)], intensity=0)
    sup.start()
    with pytest.raises(SupervisorError):
        sup.wait(10)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("reached max restart intensity" in r.getMessage() and "'boom'" in r.getMessage()
               for r in errors)


def test_fallback_without_pidfd(h, monkeypatch):
    """Where pidfd_open is missing the loop polls (every 50 ms) and still works."""
    import supervisor._loop
    import supervisor._spawn

    monkeypatch.setattr(supervisor._spawn, "HAVE_PIDFD", False)
    monkeypatch.setattr(supervisor._loop, "HAVE_PIDFD", False)
    sup = h.sup([h.spec("a"), h.spec("s", sup_children.stubborn, shutdown=200)])
    sup.start()
    (pid,) = h.wait_started("a")
    os.kill(pid, signal.SIGKILL)
    h.wait_started("a", 2)
    sup.terminate_child("s")
    assert h.exits("s") == ["shutdown"]
    sup.stop()
    assert h.exits("a") == ["abnormal", "shutdown"]
