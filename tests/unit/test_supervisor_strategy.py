"""Restart strategies as a pure function: OTP's exact stop/remove/start ordering."""

import pytest

from supervisor._strategy import Action, ChildView, Decision, on_child_exit, should_restart


def stop(i):
    return Action("stop", i)


def start(i):
    return Action("start", i)


def remove(i):
    return Action("remove", i)


def kids(*specs):
    """'a' -> permanent running; 'b:transient' -> transient running; '!c' not running."""
    out = []
    for spec in specs:
        running = not spec.startswith("!")
        cid, _, restart = spec.lstrip("!").partition(":")
        significant = restart.endswith("*")
        out.append(ChildView(cid, (restart.rstrip("*") or "permanent"), running, significant))
    return out


@pytest.mark.parametrize(
    ("restart", "kind", "expected"),
    [
        ("permanent", "normal", True),
        ("permanent", "shutdown", True),
        ("permanent", "abnormal", True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", "abnormal", True),
        ("temporary", "normal", False),
        ("temporary", "shutdown", False),
        ("temporary", "abnormal", False),
    ],
)
def test_restart_type_table(restart, kind, expected):
    assert should_restart(restart, kind) is expected


def test_one_for_one_restarts_only_the_failed_child():
    d = on_child_exit("one_for_one", "never", kids("a", "b", "c"), "b", "abnormal")
    assert d == Decision((start("b"),), restart=True)


def test_one_for_all_stops_others_right_to_left_then_starts_all_left_to_right():
    d = on_child_exit("one_for_all", "never", kids("a", "b", "c", "d"), "b", "abnormal")
    assert d.restart
    assert d.actions == (stop("d"), stop("c"), stop("a"), start("a"), start("b"),
                         start("c"), start("d"))


def test_one_for_all_removes_temporary_siblings_and_starts_stopped_ones():
    d = on_child_exit(
        "one_for_all", "never", kids("a", "b:temporary", "!c:transient", "d"), "d", "abnormal"
    )
    assert d.actions == (stop("b"), remove("b"), stop("a"),
                         start("a"), start("c"), start("d"))


def test_rest_for_one_stops_later_children_in_reverse_and_restarts_in_order():
    d = on_child_exit("rest_for_one", "never", kids("a", "b", "c", "d"), "b", "abnormal")
    assert d.actions == (stop("d"), stop("c"), start("b"), start("c"), start("d"))


def test_rest_for_one_last_child_is_like_one_for_one():
    d = on_child_exit("rest_for_one", "never", kids("a", "b", "c"), "c", "normal")
    assert d.actions == (start("c"),)


def test_rest_for_one_drops_temporary_later_children():
    d = on_child_exit(
        "rest_for_one", "never", kids("a", "b", "c:temporary", "d"), "a", "abnormal"
    )
    assert d.actions == (stop("d"), stop("c"), remove("c"), stop("b"),
                         start("a"), start("b"), start("d"))


def test_transient_normal_exit_is_kept_not_restarted():
    d = on_child_exit("one_for_all", "never", kids("a", "b:transient"), "b", "normal")
    assert d == Decision((), restart=False, auto_shutdown=False)


def test_temporary_exit_removes_the_spec():
    d = on_child_exit("rest_for_one", "never", kids("a:temporary", "b"), "a", "abnormal")
    assert d == Decision((remove("a"),), restart=False)


def test_any_significant_stops_on_first_significant_exit():
    children = kids("a", "b:transient*", "c:transient*")
    d = on_child_exit("one_for_one", "any_significant", children, "b", "normal")
    assert d.auto_shutdown and not d.restart


def test_all_significant_waits_for_the_last_significant_child():
    children = kids("a", "b:transient*", "c:temporary*")
    d = on_child_exit("one_for_one", "all_significant", children, "b", "normal")
    assert not d.auto_shutdown
    children = kids("a", "!b:transient*", "c:temporary*")
    d = on_child_exit("one_for_one", "all_significant", children, "c", "shutdown")
    assert d.auto_shutdown and d.actions == (remove("c"),)


def test_significant_child_restarted_after_abnormal_exit_does_not_shut_down():
    children = kids("a", "b:transient*")
    d = on_child_exit("one_for_one", "any_significant", children, "b", "abnormal")
    assert d.restart and not d.auto_shutdown


def test_non_significant_exit_never_shuts_down():
    d = on_child_exit("one_for_one", "any_significant", kids("a:temporary", "b:temporary*"),
                      "a", "normal")
    assert not d.auto_shutdown


def test_unknown_child_is_a_key_error():
    with pytest.raises(KeyError):
        on_child_exit("one_for_one", "never", kids("a"), "zz", "normal")
