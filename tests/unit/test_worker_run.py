"""One run inside a worker process (``clerk._worker.run_job``), called directly."""

from __future__ import annotations

from typing import Any

import clerk
from clerk._tasks import MAX_STATE_BYTES
from clerk._worker import run_job

HERE = __name__


class Echo(clerk.Task):
    def init(self, args: Any) -> Any:
        return {"from_init": args}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        return {"state": state, "run": [run.task, run.slot, run.term, run.node]}


class BadState(clerk.Task):
    def execute(self, state: Any) -> Any:
        return {"a set": {1, 2}}


class Huge(clerk.Task):
    def execute(self, state: Any) -> Any:
        return "x" * (MAX_STATE_BYTES + 1)


class Raises(clerk.Task):
    def execute(self, state: Any) -> Any:
        raise KeyError("missing")


class Exits(clerk.Task):
    def execute(self, state: Any) -> Any:
        raise SystemExit(3)


def job(cls: type, state: Any = None, init: bool = False) -> dict[str, Any]:
    return {"run": "r-1", "task": "poll", "target": f"{HERE}:{cls.__name__}", "slot": 7,
            "term": 3, "node": "a@h", "state": state, "init": init}


def test_ok_returns_the_new_state_and_current_run_is_set() -> None:
    out = run_job(job(Echo, state={"n": 1}), {})
    assert out["outcome"] == "ok" and out["error"] == "" and out["run"] == "r-1"
    assert out["state"] == {"state": {"n": 1}, "run": ["poll", 7, 3, "a@h"]}
    assert out["duration_ms"] >= 0


def test_init_gets_the_args_and_feeds_execute() -> None:
    out = run_job(job(Echo, state={"url": "u"}, init=True), {})
    assert out["state"]["state"] == {"from_init": {"url": "u"}}


def test_state_json_cannot_carry_is_an_error_naming_the_task() -> None:
    out = run_job(job(BadState), {})
    assert out["outcome"] == "error" and out["state"] is None
    assert "task 'poll'" in out["error"] and "JSON" in out["error"]


def test_state_over_the_limit_is_an_error_naming_the_task() -> None:
    out = run_job(job(Huge), {})
    assert out["outcome"] == "error"
    assert "task 'poll'" in out["error"] and str(MAX_STATE_BYTES) in out["error"]


def test_exceptions_report_the_traceback() -> None:
    out = run_job(job(Raises), {})
    assert out["outcome"] == "error" and out["state"] is None
    assert out["error"].startswith("Traceback (most recent call last)")
    assert "KeyError: 'missing'" in out["error"]
    out = run_job(job(Exits), {})
    assert out["outcome"] == "error" and "SystemExit: 3" in out["error"]


def test_current_run_is_cleared_after_the_run() -> None:
    run_job(job(Echo), {})
    try:
        clerk.current_run()
    except RuntimeError:
        pass
    else:
        raise AssertionError("current_run() still set after the run")


def test_instances_are_cached_per_task() -> None:
    cache: dict[str, clerk.Task] = {}
    run_job(job(Echo), cache)
    first = cache["poll"]
    run_job(job(Echo), cache)
    assert cache["poll"] is first
