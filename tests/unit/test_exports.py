"""The public surface is exactly what ``__all__`` says, and every name in it exists."""

import clerk
import supervisor

CLERK_PUBLIC = {
    "ClerkError", "Clock", "ConfigError", "ControlError", "FakeClock", "Node", "NodeConfig",
    "__version__",
    "NotReachableError", "Run", "StartError", "SystemClock", "Task", "TaskDef", "TaskStateError",
    "current_run", "load_config", "node_spec", "task",
}

SUPERVISOR_PUBLIC = {
    "ChildInfo", "ChildNotFoundError", "ChildSpec", "ChildStartError", "ChildStateError",
    "ControlClient", "ControlError", "Event", "ExitReason", "HELD_SIGNALS", "InvalidSpecError",
    "NotRunningError", "ReloadResult", "RestartIntensityError",
    "ShutdownInfo", "ShutdownReason", "Supervisor", "SupervisorError",
}


def test_clerk_all_is_the_public_surface():
    assert set(clerk.__all__) == CLERK_PUBLIC
    for name in clerk.__all__:
        assert getattr(clerk, name) is not None


def test_supervisor_all_is_the_public_surface():
    assert set(supervisor.__all__) == SUPERVISOR_PUBLIC
    for name in supervisor.__all__:
        assert getattr(supervisor, name) is not None


def test_no_public_module_level_names_leak():
    for mod in (clerk, supervisor):
        public = {n for n in vars(mod) if not n.startswith("_")}
        submodules = {n for n in public if type(getattr(mod, n)).__name__ == "module"}
        assert public - submodules - set(mod.__all__) == set()
