"""plan_reload: OTP's release-upgrade diff of child specs, by id (pure, no processes)."""

import pytest

from supervisor import ChildSpec, Supervisor
from supervisor._reload import plan_reload, spec_key

pytestmark = pytest.mark.timeout(10)


def cmd(cid, *argv, **kw):
    return ChildSpec(id=cid, command=list(argv) or ["sleep", "100"], **kw)


def test_added_removed_changed_and_unchanged():
    old = [cmd("a"), cmd("b"), cmd("c"), cmd("d", "sleep", "1")]
    new = [cmd("a"), cmd("c", restart="transient"), cmd("e"), cmd("d", "sleep", "1")]
    plan = plan_reload(old, new)
    assert plan.stop == ("b",)
    assert plan.restart == ("c",)
    assert plan.start == ("e",)
    assert plan.unchanged == ("a", "d")
    assert plan.nested == ()


def test_removed_ones_are_stopped_right_to_left():
    plan = plan_reload([cmd("a"), cmd("b"), cmd("c")], [cmd("b")])
    assert plan.stop == ("c", "a")


def test_every_field_counts_as_a_change():
    base = cmd("a")
    for change in (
        {"command": ["sleep", "101"]}, {"shutdown": 10}, {"env": {"X": "1"}},
        {"cwd": "/"}, {"stdout": "/tmp/a.out"}, {"max_bytes": 10}, {"backups": 0},
        {"args": ["x"]},
    ):  # fmt: skip
        fields = {"command": ["sleep", "100"], **change}
        assert plan_reload([base], [ChildSpec(id="a", **fields)]).restart == ("a",), change


def test_equal_specs_built_twice_are_unchanged():
    def build():
        return [
            ChildSpec(id="p", start="os:getpid", args=(1,), kwargs={"k": 2}, env={"A": "b"}),
            ChildSpec(id="n", start=Supervisor([cmd("w")], strategy="one_for_all")),
        ]

    plan = plan_reload(build(), build())
    assert plan.unchanged == ("p", "n") and not (plan.restart or plan.nested)


def test_a_nested_supervisor_whose_tree_changed_is_recursed_into_not_restarted():
    old = [ChildSpec(id="pool", start=Supervisor([cmd("w1")]))]
    new = [ChildSpec(id="pool", start=Supervisor([cmd("w1"), cmd("w2")]))]
    plan = plan_reload(old, new)
    assert plan.nested == ("pool",) and plan.restart == ()
    flags = [ChildSpec(id="pool", start=Supervisor([cmd("w1")], intensity=5))]
    assert plan_reload(old, flags).nested == ("pool",)


def test_a_nested_supervisor_whose_own_spec_changed_is_restarted():
    old = [ChildSpec(id="pool", start=Supervisor([cmd("w1")]))]
    new = [ChildSpec(id="pool", start=Supervisor([cmd("w1")]), restart="transient")]
    assert plan_reload(old, new).restart == ("pool",)
    worker = [cmd("pool")]
    assert plan_reload(old, worker).restart == ("pool",)


def test_spec_key_compares_nested_supervisors_by_configuration():
    a = ChildSpec(id="n", start=Supervisor([cmd("w")], name="n"))
    b = ChildSpec(id="n", start=Supervisor([cmd("w")], name="n"))
    c = ChildSpec(id="n", start=Supervisor([cmd("w", "true")], name="n"))
    assert spec_key(a) == spec_key(b) != spec_key(c)
