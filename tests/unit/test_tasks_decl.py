"""Task declarations in code and in TOML: every error names the task and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clerk
from clerk._tasks import TaskDef, load_task_entries
from tests.integration.cluster_tasks import Counter

TARGET = "tests.integration.cluster_tasks:Counter"


class NoExecute(clerk.Task):
    pass


def entry(**kw: Any) -> dict[str, Any]:
    return {"task": TARGET, "interval": 1000, **kw}


def bad(entries: list[Any], *fragments: str) -> clerk.ConfigError:
    with pytest.raises(clerk.ConfigError) as info:
        load_task_entries(entries, "tasks.toml")
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return info.value


def test_code_declaration_defaults() -> None:
    d = clerk.task(Counter, interval=10_000, args={"log": "/tmp/x"})
    assert d == TaskDef(name=TARGET, target=TARGET, interval=10_000, timeout=5000,
                        instant=False, enabled=True, args={"log": "/tmp/x"})
    assert clerk.task(TARGET, interval=None, instant=True, name="c").name == "c"


def test_toml_entries_load() -> None:
    (d,) = load_task_entries([entry(timeout=300, instant=True, enabled=False, args={"a": [1]},
                                    name="poll")], "tasks.toml")
    assert (d.name, d.interval, d.timeout, d.instant, d.enabled, d.args) == (
        "poll", 1000, 300, True, False, {"a": [1]})


def test_import_failure_names_the_task_and_the_error() -> None:
    err = bad([entry(task="no_such_module_xyz:Foo")], "tasks.toml", "no_such_module_xyz:Foo",
              "task", "cannot be imported", "ModuleNotFoundError")
    assert err.key.endswith(": task")
    bad([entry(task="tests.integration.cluster_tasks:Nope")], "cannot be imported",
        "AttributeError")
    bad([entry(task="no_colon")], "'no_colon'", "module:Class")
    bad([entry(task="os:sep")], "is not a class")
    bad([{"interval": 1000}], "task", "is required")


def test_class_without_execute() -> None:
    bad([entry(task=f"{__name__}:NoExecute")], "NoExecute", "has no execute")
    with pytest.raises(clerk.ConfigError, match="has no execute"):
        clerk.task(NoExecute, interval=1000)


@pytest.mark.parametrize("interval", [99, 0, -5, 1.5, "1000", True])
def test_bad_interval(interval: Any) -> None:
    err = bad([entry(interval=interval, name="poll")], "task 'poll': interval", ">= 100")
    assert err.value == interval


def test_interval_missing_is_only_allowed_for_instant_tasks() -> None:
    bad([{"task": TARGET, "name": "poll"}], "task 'poll': interval",
        "required (milliseconds) unless instant = true")
    (d,) = load_task_entries([{"task": TARGET, "instant": True}], "")
    assert d.interval is None and d.instant
    with pytest.raises(clerk.ConfigError, match="interval"):
        clerk.task(Counter, interval=None)


@pytest.mark.parametrize("timeout", [0, -1, 2.5, "5s", None, False])
def test_bad_timeout(timeout: Any) -> None:
    bad([entry(timeout=timeout, name="poll")], "task 'poll': timeout", "positive integer")


@pytest.mark.parametrize("key", ["instant", "enabled"])
def test_bad_flags(key: str) -> None:
    bad([entry(**{key: "yes"}, name="poll")], f"task 'poll': {key}", "true or false")


@pytest.mark.parametrize("args", [{"f": float("nan")}, {"s": {1, 2}}, {"b": b"x"}, object()])
def test_args_must_be_json(args: Any) -> None:
    bad([entry(args=args, name="poll")], "task 'poll': args", "must be JSON")
    with pytest.raises(clerk.ConfigError, match="'poll': args"):
        clerk.task(Counter, interval=1000, args=args, name="poll")


def test_unknown_key_names_the_task_and_the_key() -> None:
    bad([entry(intervall=5)], TARGET, "intervall", "unknown key")


def test_duplicate_names_name_the_task() -> None:
    bad([entry(), entry()], f"task {TARGET!r}: name", "duplicate task name")
    bad([entry(name="x"), entry(name="x", interval=2000)], "#2", "task 'x': name", "duplicate")
    (a, b) = load_task_entries([entry(), entry(name="second")], "")
    assert a.name != b.name


def test_bad_name_and_non_table_entries() -> None:
    bad([entry(name="  ")], "name", "non-empty")
    bad(["task"], "must be a table")


def test_main_module_classes_are_refused() -> None:
    cls = type("Local", (clerk.Task,), {"execute": lambda self, state: state,
                                        "__module__": "__main__"})
    with pytest.raises(clerk.ConfigError, match="importable module"):
        clerk.task(cls, interval=1000)


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "a@127.0.0.1"\n\n[[task]]\n'
                    'task = "tests.integration.cluster_tasks:Counter"\ninterval = 50\n')
    with pytest.raises(clerk.ConfigError) as info:
        clerk.load_config(str(path), {})
    assert str(path) in str(info.value) and "interval" in str(info.value)


def test_current_run_outside_a_run() -> None:
    with pytest.raises(RuntimeError, match="only available inside"):
        clerk.current_run()


# --- cron schedules ------------------------------------------------------------------------


def test_cron_declared_in_code_and_toml() -> None:
    d = clerk.task(Counter, cron="30 2 * * *", timezone="Europe/Berlin", catch_up="last")
    assert (d.interval, d.cron, d.timezone, d.catch_up) == (None, "30 2 * * *",
                                                             "Europe/Berlin", "last")
    (t,) = load_task_entries([{"task": TARGET, "name": "nightly", "cron": "@daily"}], "")
    assert (t.cron, t.timezone, t.catch_up) == ("@daily", "UTC", "skip")
    assert clerk.task(Counter, interval=1000).catch_up == "skip"


def test_exactly_one_of_interval_and_cron() -> None:
    err = bad([entry(cron="* * * * *", name="poll")], "task 'poll': cron", "exactly one")
    assert err.value == "* * * * *"
    with pytest.raises(clerk.ConfigError, match="exactly one"):
        clerk.task(Counter, interval=1000, cron="@hourly")
    bad([{"task": TARGET, "name": "poll"}], "task 'poll': interval", "cron")


@pytest.mark.parametrize(("expr", "why"), [("30 2 * *", "has 4 fields"),
                                           ("0 0 * * FUNDAY", "Bad day-of-week"),
                                           ("@reboot", "unknown macro"), (5, "cron expression")])
def test_invalid_cron_names_task_key_and_value(expr: Any, why: str) -> None:
    err = bad([{"task": TARGET, "name": "nightly", "cron": expr}], "tasks.toml",
              "task 'nightly': cron", why)
    assert err.value == expr


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", "", 3])
def test_unknown_zone_names_task_key_and_value(zone: Any) -> None:
    err = bad([{"task": TARGET, "name": "nightly", "cron": "@daily", "timezone": zone}],
              "task 'nightly': timezone")
    assert err.value == zone


def test_timezone_on_an_interval_task_is_checked_and_bad_catch_up_is_an_error() -> None:
    (d,) = load_task_entries([entry(timezone="Asia/Kolkata", name="poll")], "")
    assert (d.interval, d.timezone) == (1000, "Asia/Kolkata")  # only how its times are shown
    bad([entry(timezone="Asia/Kolkatta", name="poll")], "task 'poll': timezone", "not a known")
    bad([entry(catch_up="all", name="poll")], "task 'poll': catch_up", '"last"')


def test_cron_without_the_library_names_the_task_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cronsim", None)
    err = bad([{"task": TARGET, "name": "nightly", "cron": "30 2 * * *"}],
              "task 'nightly': cron", "'30 2 * * *'", 'pip install "clerk-cluster[cron]"')
    assert err.value == "30 2 * * *"
    assert clerk.task(Counter, interval=1000).cron is None  # interval tasks do not need it


def test_local_cluster_writes_cron_keys_to_toml() -> None:
    import tomllib

    from clerk.testing import task_toml

    for d in (clerk.task(Counter, cron="*/5 * * * * *", timezone="Australia/Lord_Howe",
                         catch_up="last", name="c"),
              clerk.task(Counter, interval=1000, timezone="Asia/Kolkata", name="i"),
              clerk.task(Counter, cron="@daily", name="u")):
        (back,) = load_task_entries(tomllib.loads(task_toml(d))["task"], "")
        assert back == d


def test_an_unknown_key_names_the_task_by_its_name_and_suggests_the_key_meant() -> None:
    err = bad([entry(intervall=5, name="poll")], "task 'poll' (", TARGET, "intervall",
              "did you mean 'interval'?", "unknown key")
    assert err.key.startswith("task 'poll'")
    # Nothing close: the known keys only.
    text = str(bad([entry(frobnicate=1)], "frobnicate", "unknown key (known: task, name"))
    assert "did you mean" not in text
