"""Spec validation: every invalid spec is rejected before anything starts, naming the
child and the field. Also the package's exported surface."""

import pytest

import supervisor
from supervisor import ChildSpec, InvalidSpecError, Supervisor


def work(n=0):
    return n


def test_public_surface_is_exactly_all():
    public = {n for n in dir(supervisor) if not n.startswith("_")} - {"testing"}
    assert set(supervisor.__all__) == public
    assert "intensity" in supervisor.__doc__ and "PDEATHSIG" in supervisor.__doc__


def test_defaults_follow_otp():
    spec = ChildSpec(id="w", start=work)
    assert (spec.restart, spec.shutdown, spec.type, spec.significant) == (
        "permanent", 5000, "worker", False)
    nested = ChildSpec(id="s", start=Supervisor([]))
    assert (nested.type, nested.shutdown) == ("supervisor", "infinity")
    sup = Supervisor([spec])
    assert (sup.strategy, sup.intensity, sup.period, sup.auto_shutdown) == (
        "one_for_one", 1, 5, "never")


def test_args_become_a_tuple_and_string_start_resolves():
    spec = ChildSpec(id="w", start="os.path:join", args=["a", "b"])
    assert spec.args == ("a", "b")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": work, "command": ["true"]}, "start"),
        ({}, "start"),
        ({"start": "no_such_module_xyz:main"}, "start"),
        ({"start": "os:no_such_function"}, "start"),
        ({"start": "os:sep"}, "start"),  # not callable
        ({"start": "os.getpid"}, "start"),  # no colon
        ({"start": lambda: None}, "start"),  # not picklable
        ({"start": 42}, "start"),
        ({"start": work, "restart": "sometimes"}, "restart"),
        ({"start": work, "shutdown": "soon"}, "shutdown"),
        ({"start": work, "shutdown": -5}, "shutdown"),
        ({"start": work, "shutdown": 0}, "shutdown"),
        ({"start": work, "shutdown": True}, "shutdown"),
        ({"start": work, "type": "daemon"}, "type"),
        ({"start": work, "type": "supervisor"}, "type"),
        ({"start": Supervisor([]), "type": "worker"}, "type"),
        ({"start": work, "significant": True}, "significant"),  # permanent
        ({"start": work, "args": "abc"}, "args"),
        ({"start": work, "args": (lambda: 1,)}, "args"),
        ({"command": "sleep 5"}, "command"),
        ({"command": []}, "command"),
        ({"command": ["sleep", 5]}, "command"),
        ({"command": ["true"], "kwargs": {"a": 1}}, "kwargs"),
        ({"start": work, "env": {"A": 1}}, "env"),
    ],
)
def test_invalid_child_spec_names_child_and_field(kwargs, field):
    with pytest.raises(InvalidSpecError) as info:
        ChildSpec(id="bad", **kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.child_id == "bad"
    assert info.value.field == field
    assert "'bad'" in str(info.value) and field in str(info.value)


def test_empty_id_is_rejected():
    with pytest.raises(InvalidSpecError, match="id"):
        ChildSpec(id="", start=work)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "one_for_some"}, "strategy"),
        ({"intensity": -1}, "intensity"),
        ({"intensity": 1.5}, "intensity"),
        ({"period": 0}, "period"),
        ({"period": -2}, "period"),
        ({"auto_shutdown": "sometimes"}, "auto_shutdown"),
        ({"on_event": 3}, "on_event"),
    ],
)
def test_invalid_supervisor_flags(kwargs, field):
    with pytest.raises(InvalidSpecError) as info:
        Supervisor([ChildSpec(id="a", start=work)], **kwargs)
    assert info.value.field == field and info.value.child_id is None


def test_duplicate_ids_are_rejected():
    with pytest.raises(InvalidSpecError, match="duplicate") as info:
        Supervisor([ChildSpec(id="a", start=work), ChildSpec(id="a", command=["true"])])
    assert info.value.child_id == "a"


def test_significant_needs_auto_shutdown():
    spec = ChildSpec(id="s", start=work, restart="transient", significant=True)
    with pytest.raises(InvalidSpecError, match="auto_shutdown") as info:
        Supervisor([spec])
    assert info.value.field == "significant"
    Supervisor([spec], auto_shutdown="any_significant")


def test_children_must_be_specs():
    with pytest.raises(InvalidSpecError, match="ChildSpec"):
        Supervisor([{"id": "a"}])  # type: ignore[list-item]


def test_errors_survive_pickling():
    import pickle

    err = InvalidSpecError("a", "restart", "x", "bad")
    again = pickle.loads(pickle.dumps(err))
    assert (again.child_id, again.field, str(again)) == ("a", "restart", str(err))


def test_supervisor_pickles_as_its_configuration():
    import pickle

    sup = Supervisor([ChildSpec(id="a", start=work)], strategy="one_for_all", name="n")
    again = pickle.loads(pickle.dumps(sup))
    assert (again.strategy, again.name, again.children) == ("one_for_all", "n", sup.children)


def test_nested_supervisor_must_pickle():
    inner = Supervisor([], on_event=lambda event: None)
    with pytest.raises(InvalidSpecError, match="pickle") as info:
        ChildSpec(id="pool", start=inner)
    assert info.value.field == "start"


@pytest.mark.parametrize("codes", [(0,), (256,), ("2",), (True,), "2", 2])
def test_shutdown_exits_must_be_exit_codes(codes):
    with pytest.raises(InvalidSpecError, match=r"shutdown_exits.*exit codes from 1 to 255"):
        ChildSpec(id="w", start=work, restart="transient", shutdown_exits=codes)


def test_shutdown_exits_become_a_tuple():
    spec = ChildSpec(id="w", start=work, restart="transient", shutdown_exits=[2, 3])
    assert spec.shutdown_exits == (2, 3)


def test_shutdown_exits_on_a_permanent_child_is_an_error_that_says_why():
    # A permanent child is restarted whatever its exit: the listed codes would not stop it.
    for spec in ({}, {"restart": "permanent"}):
        with pytest.raises(InvalidSpecError, match=r"shutdown_exits.*permanent child is "
                                                   r"restarted whatever.*'transient'"):
            ChildSpec(id="w", start=work, shutdown_exits=[3], **spec)
    assert ChildSpec(id="w", start=work, restart="temporary", shutdown_exits=[3]).shutdown_exits
    assert ChildSpec(id="w", start=work, shutdown_exits=[]).shutdown_exits == ()
