"""Exit reasons and shutdown infos: classification and how they read in logs; and
invariants of the restart strategy over arbitrary children (hypothesis)."""

import signal

from hypothesis import given
from hypothesis import strategies as st

from supervisor import ExitReason, ShutdownInfo, ShutdownReason
from supervisor._strategy import ChildView, on_child_exit, should_restart


def test_exit_reason_classification():
    assert ExitReason.from_returncode(0) == ExitReason("normal", exitcode=0)
    assert ExitReason.from_returncode(3) == ExitReason("abnormal", exitcode=3)
    assert ExitReason.from_returncode(-signal.SIGKILL).kind == "abnormal"
    assert ExitReason.from_returncode(-signal.SIGTERM).kind == "shutdown"
    assert ExitReason.from_returncode(-signal.SIGKILL, by_supervisor=True).kind == "shutdown"
    assert ExitReason.from_returncode(1, by_supervisor=True).kind == "shutdown"


def test_exit_reason_text():
    assert str(ExitReason.from_returncode(0)) == "normal"
    assert str(ExitReason.from_returncode(3)) == "exit code 3"
    assert str(ExitReason.from_returncode(-9)) == "signal SIGKILL"
    assert str(ExitReason.from_returncode(-15)) == "shutdown (signal SIGTERM)"
    assert str(ExitReason("abnormal", detail="command not found")) == "command not found"


def test_shutdown_info():
    ok = ShutdownInfo(ShutdownReason.AUTO_SHUTDOWN, "s", ExitReason("normal", exitcode=0))
    assert ok.ok and ok.exit_code == 0 and str(ok) == "auto_shutdown (child 's': normal)"
    bad = ShutdownInfo(ShutdownReason.INTENSITY, "b", ExitReason("abnormal", signal=9))
    assert not bad.ok and bad.exit_code == 1
    assert str(bad) == "reached_max_restart_intensity (child 'b': signal SIGKILL)"


child_views = st.lists(
    st.builds(
        ChildView,
        id=st.just(""),
        restart=st.sampled_from(["permanent", "transient", "temporary"]),
        running=st.booleans(),
        significant=st.booleans(),
    ),
    min_size=1,
    max_size=8,
).map(lambda cs: [ChildView(f"c{i}", c.restart, c.running, c.significant)
                  for i, c in enumerate(cs)])


@given(
    child_views,
    st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    st.sampled_from(["never", "any_significant", "all_significant"]),
    st.sampled_from(["normal", "shutdown", "abnormal"]),
    st.data(),
)
def test_strategy_invariants(children, strategy, auto, kind, data):
    exited = data.draw(st.sampled_from(children))
    d = on_child_exit(strategy, auto, children, exited.id, kind)
    order = {c.id: i for i, c in enumerate(children)}
    by_id = {c.id: c for c in children}
    ops = [a.op for a in d.actions]
    stops = [a.child_id for a in d.actions if a.op == "stop"]
    starts = [a.child_id for a in d.actions if a.op == "start"]
    removes = [a.child_id for a in d.actions if a.op == "remove"]

    assert d.restart == should_restart(exited.restart, kind)
    if not d.restart:
        assert not stops and not starts
        assert removes == ([exited.id] if exited.restart == "temporary" else [])
        if not exited.significant or auto == "never":
            assert not d.auto_shutdown
        return
    assert not d.auto_shutdown
    # All stops (right to left) come before all starts (left to right).
    if starts and stops:
        assert max(i for i, op in enumerate(ops) if op == "stop") < ops.index("start")
    assert stops == sorted(stops, key=order.get, reverse=True)
    assert starts == sorted(starts, key=order.get)
    assert exited.id in starts and exited.id not in stops
    # Only running children are stopped; removed ones are temporary and never restarted.
    assert all(by_id[s].running for s in stops)
    assert all(by_id[r].restart == "temporary" and r not in starts for r in removes)
    affected = {
        "one_for_one": {exited.id},
        "one_for_all": set(order),
        "rest_for_one": {c for c in order if order[c] >= order[exited.id]},
    }[strategy]
    assert set(starts) | set(stops) | set(removes) <= affected
    assert set(starts) == {c for c in affected
                           if c == exited.id or by_id[c].restart != "temporary"}


def test_an_exit_code_listed_in_shutdown_exits_is_a_shutdown_not_restarted():
    reason = ExitReason.from_returncode(2, shutdown_exits=(2, 7))
    assert reason == ExitReason("shutdown", exitcode=2)
    assert str(reason) == "shutdown (exit code 2)"
    assert ExitReason.from_returncode(3, shutdown_exits=(2,)).kind == "abnormal"
    assert ExitReason.from_returncode(-9, shutdown_exits=(9,)).kind == "abnormal"
    assert not should_restart("transient", reason.kind)
    assert should_restart("permanent", reason.kind)
    views = [ChildView("agent", "transient", False, True)]
    decision = on_child_exit("one_for_one", "any_significant", views, "agent", reason.kind)
    assert not decision.restart and decision.auto_shutdown
