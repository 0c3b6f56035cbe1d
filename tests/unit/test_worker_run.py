"""One run inside a worker process (``clerk._worker.run_job``), called directly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import clerk
from clerk._lead import SPIN_MS
from clerk._tasks import MAX_STATE_BYTES, due_datetime
from clerk._worker import hold_until, run_job

HERE = __name__


class Echo(clerk.Task):
    def init(self, args: Any) -> Any:
        return {"from_init": args}

    def execute(self, state: Any) -> Any:
        run = clerk.current_run()
        return {"state": state, "run": [run.task, run.slot, run.term, run.node],
                "due": run.due.isoformat()}


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


DUE_MS = 1_764_640_000_250  # 2025-12-02T01:46:40.250+00:00


def job(cls: type, state: Any = None, init: bool = False) -> dict[str, Any]:
    return {"run": "r-1", "task": "poll", "target": f"{HERE}:{cls.__name__}", "slot": 7,
            "term": 3, "node": "a@h", "state": state, "init": init, "due_ms": DUE_MS}


def test_ok_returns_the_new_state_and_current_run_is_set() -> None:
    out = run_job(job(Echo, state={"n": 1}), {})
    assert out["outcome"] == "ok" and out["error"] == "" and out["run"] == "r-1"
    assert out["state"] == {"state": {"n": 1}, "run": ["poll", 7, 3, "a@h"],
                            "due": "2025-12-02T01:46:40.250000+00:00"}
    assert out["duration_ms"] >= 0


def test_due_is_a_timezone_aware_utc_datetime() -> None:
    due = clerk.Run("t", 1, 1, "n", due_datetime(DUE_MS)).due
    assert due.tzinfo is not None and due.utcoffset() == timedelta(0)
    assert due == datetime(2025, 12, 2, 1, 46, 40, 250_000, tzinfo=UTC)
    assert due.timestamp() * 1000 == DUE_MS


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


# --- JSON round trip: the path inside the state --------------------------------------------


class Returns(clerk.Task):
    """Returns the state it is given (the test passes the value in the job)."""

    def execute(self, state: Any) -> Any:
        return state


class InitTuple(clerk.Task):
    def init(self, args: Any) -> Any:
        return {"pair": (1, 2)}

    def execute(self, state: Any) -> Any:
        return state


def returned(value: Any) -> dict[str, Any]:
    # The job's state is handed to execute as is (no JSON on the way in, in this test).
    return run_job(job(Returns, state=value), {})


@pytest.mark.parametrize(("value", "where"), [
    ({1: "one", "t": (1, 2)}, "state[1]: int key"),
    ({"t": (1, 2)}, 'state["t"]: tuple'),
    ({"a": [0, {"b": {3}}]}, 'state["a"][1]["b"]: set'),
    ([1.0, float("nan")], "state[1]: float nan"),
    ({"when": b"x"}, 'state["when"]: bytes'),
    ((1,), "state: tuple"),
])
def test_a_state_json_would_change_names_the_path(value: Any, where: str) -> None:
    out = returned(value)
    assert out["outcome"] == "error" and out["state"] is None
    assert "task 'poll' execute() returned a state JSON cannot carry unchanged" in out["error"]
    assert where in out["error"], out["error"]
    assert "Traceback" not in out["error"]


@pytest.mark.parametrize("value", [None, True, 0, -3, 1.5, "s", [], {}, {"a": [1, {"b": None}]}])
def test_a_state_json_keeps_is_accepted(value: Any) -> None:
    out = returned(value)
    assert out["outcome"] == "ok" and out["state"] == value


def test_an_init_state_json_would_change_fails_the_run() -> None:
    out = run_job(job(InitTuple, init=True), {})
    assert out["outcome"] == "error"
    assert 'init() returned a state JSON cannot carry unchanged: state["pair"]: tuple' in (
        out["error"])


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    out = returned(deep)
    assert out["outcome"] == "error" and "nested deeper than" in out["error"]


# --- async def execute / init --------------------------------------------------------------


class AsyncEcho(clerk.Task):
    async def init(self, args: Any) -> Any:
        await asyncio.sleep(0)
        return {"from_init": args}

    async def execute(self, state: Any) -> Any:
        await asyncio.sleep(0.001)
        self.loop = asyncio.get_running_loop()
        return {"state": state, "slot": clerk.current_run().slot}


class AsyncRaises(clerk.Task):
    async def execute(self, state: Any) -> Any:
        await asyncio.sleep(0)
        raise KeyError("inside the coroutine")


def test_async_init_and_execute_are_awaited() -> None:
    cache: dict[str, clerk.Task] = {}
    out = run_job(job(AsyncEcho, state={"u": 1}, init=True), cache)
    assert out["outcome"] == "ok", out["error"]
    assert out["state"] == {"state": {"from_init": {"u": 1}}, "slot": 7}
    first_loop = cache["poll"].loop  # type: ignore[attr-defined]
    out = run_job(job(AsyncEcho, state={"n": 2}), cache)
    assert out["outcome"] == "ok"
    assert cache["poll"].loop is first_loop  # type: ignore[attr-defined]  # one loop per worker, kept across runs


def test_async_execute_raising_is_an_error_with_its_traceback() -> None:
    out = run_job(job(AsyncRaises), {})
    assert out["outcome"] == "error"
    assert "KeyError: 'inside the coroutine'" in out["error"]


def test_due_is_in_the_tasks_zone_for_a_cron_task() -> None:
    berlin = {**job(Echo, state={"n": 1}), "timezone": "Europe/Berlin"}
    out = run_job(berlin, {})
    assert out["state"]["due"] == "2025-12-02T02:46:40.250000+01:00"  # the same instant
    assert due_datetime(DUE_MS, "Australia/Lord_Howe").isoformat() == (
        "2025-12-02T12:46:40.250000+11:00")


# --- runs sent ahead of their due time (clerk._lead) ----------------------------------------------


class StampStart(clerk.Task):
    def execute(self, state: Any) -> Any:
        return {"start": time.time(), "due": clerk.current_run().due.timestamp()}


def test_hold_until_sleeps_then_spins_and_never_returns_before_due() -> None:
    clock = [100.0]
    slept: list[float] = []
    reads = iter([100.0, 100.0099, 100.00995, 100.01, 100.02])

    def wall() -> float:
        clock[0] = next(reads)
        return clock[0]

    at = hold_until(100_010.0, wall=wall, sleep=slept.append)
    # One sleep to SPIN_MS before the due time, then reads of the clock until it is reached.
    assert slept == [pytest.approx(0.01 - SPIN_MS / 1000)]
    assert at == 100.01


@pytest.mark.parametrize("spin_ms", [0.0, SPIN_MS])
def test_hold_until_never_returns_before_due_when_the_sleep_wakes_early(
        spin_ms: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the spin (0: sleep to the due time, as tools/bench_hold.py compares), a sleep
    that returns early (a signal, a clock stepped back) is followed by reads of the wall clock
    until it reaches the due time: the task's code never starts before it."""
    from clerk import _worker

    monkeypatch.setattr(_worker, "SPIN_MS", spin_ms)
    # The clock moves 1 us per read; each sleep advances it only half of what was asked.
    clock = [200.0]
    slept: list[float] = []

    def wall() -> float:
        clock[0] += 1e-6
        return clock[0]

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s / 2

    at = hold_until(200_005.0, wall=wall, sleep=sleep)
    assert at >= 200.005
    assert at < 200.005 + 2e-6  # and no later than the read that reached it
    assert len(slept) == 1 and slept[0] == pytest.approx(0.005 - spin_ms / 1000, abs=2e-6)


def test_hold_until_returns_at_once_for_a_past_due_time() -> None:
    slept: list[float] = []
    assert hold_until(1000.0, wall=lambda: 5.0, sleep=slept.append) == 5.0
    assert slept == []


def test_a_job_sent_ahead_starts_at_its_due_time_and_its_duration_counts_from_it() -> None:
    due_ms = (time.time() + 0.3) * 1000
    j = {**job(StampStart), "due_ms": due_ms}
    out = run_job(j, {})
    assert out["outcome"] == "ok", out["error"]
    assert out["state"]["start"] >= due_ms / 1000  # never before due, by the wall clock
    assert out["state"]["due"] == pytest.approx(due_ms / 1000, abs=1e-6)
    assert out["duration_ms"] < 250  # the 300 ms wait is not part of the run


@pytest.mark.parametrize("cls", [Echo, BadState, Huge, Raises])
def test_done_body_carries_the_state_encoded_once(cls: type,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``done`` body holds the state as the text the size check encoded: it reads back
    as the reply itself, and the state is not encoded a second time."""
    import json

    from clerk import _worker

    reply, text = _worker._run_job(job(cls, state={"n": "é"}), {})
    assert (text is None) == (reply["outcome"] != "ok")
    encoded: list[Any] = []
    real = json.dumps
    monkeypatch.setattr(_worker.json, "dumps",
                        lambda obj, **kw: encoded.append(obj) or real(obj, **kw))  # type: ignore[func-returns-value]
    from clerk._workerlink import DONE_FIELDS

    body = _worker.done_body(reply, text)
    assert dict(zip(DONE_FIELDS, json.loads(body), strict=True)) == reply
    assert json.loads(_worker.done_body(reply, text, array=False)) == reply
    assert all("state" not in o for o in encoded) or text is None


# --- the run's Run is made when first asked for; the reply is written in one step -------------


class Quiet(clerk.Task):
    def execute(self, state: Any) -> Any:
        return state


class AsksTwice(clerk.Task):
    def execute(self, state: Any) -> Any:
        first, second = clerk.current_run(), clerk.current_run()
        return {"same": first is second, "due": first.due.isoformat(),
                "repr": repr(first)}


def test_due_is_made_only_for_a_task_that_asks_and_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from clerk import _tasks

    made: list[tuple[float, str]] = []
    real = _tasks.due_in_zone
    monkeypatch.setattr(_tasks, "due_in_zone",
                        lambda ms, zone: made.append((ms, zone)) or real(ms, zone))  # type: ignore[func-returns-value]
    assert run_job(job(Quiet, state={"n": 1}), {})["outcome"] == "ok"
    assert made == []  # never asked: no datetime made
    out = run_job({**job(AsksTwice), "timezone": "Europe/Berlin"}, {})
    assert out["outcome"] == "ok", out["error"]
    assert made == [(DUE_MS, "Europe/Berlin")]
    want = clerk.Run("poll", 7, 3, "a@h", due_datetime(DUE_MS, "Europe/Berlin"))
    assert out["state"] == {"same": True, "due": "2025-12-02T02:46:40.250000+01:00",
                            "repr": repr(want)}


def test_the_lazy_run_is_the_run_it_replaced() -> None:
    """``_begin_run`` then ``current_run()``: equal to the Run that was made up front, same
    zone, same repr; cleared by ``_set_current(None)``."""
    from clerk import _tasks

    for zone in ("UTC", "Asia/Kolkata", "No/Such_Zone"):
        _tasks._begin_run("t", 5, 2, "n@h", DUE_MS + 0.4, zone)
        got = clerk.current_run()
        want = clerk.Run("t", 5, 2, "n@h", due_datetime(DUE_MS + 0.4, zone))
        assert got == want and repr(got) == repr(want) and hash(got) == hash(want)
        assert got.due.tzinfo is want.due.tzinfo and clerk.current_run() is got
        _tasks._set_current(None)
        with pytest.raises(RuntimeError):
            clerk.current_run()
    _tasks._set_current(want)
    assert clerk.current_run() is want
    _tasks._set_current(None)


@pytest.mark.parametrize("reply", [
    {"run": "r-1", "outcome": "ok", "state": {"n": "é"}, "duration_ms": 0.123,
     "error": ""},
    {"run": 'r "2"\n/é', "outcome": "error", "state": None, "duration_ms": 12.0,
     "error": "Traceback ...\nKeyError: 'é'"},
    {"run": "r-3", "outcome": "refused", "state": None, "duration_ms": 0.0,
     "error": "stale: would start 3 ms after its deadline"},
    {"run": None, "outcome": "ok", "state": [1], "duration_ms": 0, "error": ""},
    {"run": "r-4", "outcome": "ok", "state": 1, "duration_ms": float("nan"), "error": ""},
])
def test_done_body_is_the_replys_json_text(reply: dict[str, Any]) -> None:
    """Written in one step or through the encoder, the body is ``json.dumps(reply)``'s text."""
    import json

    from clerk._worker import _STATE_DUMP, done_body
    from clerk._workerlink import DONE_FIELDS

    text = None if reply["state"] is None else _STATE_DUMP(reply["state"])
    for state_json in (None, text):
        assert done_body(reply, state_json) == json.dumps(
            [reply[k] for k in DONE_FIELDS]).encode()
        assert done_body(reply, state_json, array=False) == json.dumps(reply).encode()


def test_a_worker_answers_in_the_form_its_run_came_in() -> None:
    """A RUN as the array: the DONE is the array (this agent); a RUN as the object an agent of
    an earlier version writes: the DONE is the object (all that agent reads)."""
    import json

    from clerk._worker import _run_request
    from clerk._workerlink import RUN_FIELDS

    j = {**job(Echo, state={"n": 1}), "timezone": "UTC", "deadline_ms": 0,
         "interval_ms": None}
    j["slot_due_ms"] = j["due_ms"]
    assert _run_request(json.dumps([j[k] for k in RUN_FIELDS]).encode(), {})[2] is True
    assert _run_request(json.dumps(j).encode(), {})[2] is False


@pytest.mark.parametrize("deadline", [0, DUE_MS + 5, DUE_MS + 50, None, "x", True])
@pytest.mark.parametrize("interval", [None, 10, 100, "x"])
@pytest.mark.parametrize("after", [0.0, 4.0, 5.5, 10.0, 10.5, 60.0])
def test_late_start_says_what_too_late_says(deadline: Any, interval: Any,
                                            after: float) -> None:
    from clerk._lead import too_late
    from clerk._worker import _late_start

    wall = (DUE_MS + after) / 1000
    want = too_late(wall * 1000, DUE_MS, deadline if isinstance(deadline, int | float) else 0,
                    interval if isinstance(interval, int | float) else None, "would start")
    assert _late_start(deadline, interval, DUE_MS, wall) == want


def test_a_run_message_is_the_array_of_run_fields_or_an_earlier_agents_object() -> None:
    """The agent's array (RUN_FIELDS) and the object an agent of an earlier version wrote run
    the same; any other body is a ValueError naming the fields."""
    import json

    from clerk._worker import _run_message
    from clerk._workerlink import RUN_FIELDS

    j = {**job(Echo, state={"n": 1}), "timezone": "Europe/Berlin", "deadline_ms": 0,
         "interval_ms": None}
    j["slot_due_ms"] = j["due_ms"]
    as_array = json.dumps([j[k] for k in RUN_FIELDS]).encode()
    before = json.dumps([j[k] for k in RUN_FIELDS[:-1]]).encode()  # an agent before review13
    got = [_run_message(body, {})[0] for body in (as_array, before, json.dumps(j).encode())]
    for reply in got:
        reply.pop("duration_ms")
    assert got[0] == got[1] == got[2] and got[0]["outcome"] == "ok"
    assert got[0]["state"]["due"] == "2025-12-02T02:46:40.250000+01:00"
    for bad in (b"[1, 2]", b'"run"', b"null"):
        with pytest.raises(ValueError, match="is not an array of 13 fields"):
            _run_message(bad, {})


@pytest.mark.parametrize("deadline_after", [0, 50, 500, 5000, None, "x", True, 500.5])
@pytest.mark.parametrize("interval", [30, 300, 3000, None, "x", 300.0])
@pytest.mark.parametrize("late_by", [0, 100, 1000])
def test_a_run_is_refused_as_stale_exactly_when_too_late_says(deadline_after: Any,
                                                              interval: Any,
                                                              late_by: int) -> None:
    """The worker judges a run's start in line for int limits (its usual case) and through
    ``_late_start`` otherwise: either way a run is refused exactly when ``too_late`` says so
    (every limit here is 30 ms or more from the start, so the test's clock agrees)."""
    from clerk._lead import too_late

    now_ms = int(time.time() * 1000)
    due = now_ms - late_by
    deadline = (due + deadline_after if type(deadline_after) in (int, float) and deadline_after
                else deadline_after)
    out = run_job({**job(Echo), "due_ms": due, "deadline_ms": deadline,
                   "interval_ms": interval}, {})
    want = too_late(now_ms, due, deadline if isinstance(deadline, int | float) else 0,
                    interval if isinstance(interval, int | float) else None, "would start")
    assert (out["outcome"] == "refused") == bool(want), (out, want)
    if want:
        assert out["error"].startswith("stale: ") and out["state"] is None


def test_a_runs_duration_is_whole_nanoseconds_so_its_text_is_short() -> None:
    """``duration_ms`` is whole ns over 1e6: its repr in the DONE has at most 6 decimals (the
    repr of a 17-digit float was the largest single cost of a worker's run path)."""
    from clerk._worker import done_body

    for cls in (Echo, Raises):
        out = run_job(job(cls), {})
        duration = out["duration_ms"]
        assert type(duration) is float and duration >= 0
        assert round(duration * 1e6) / 1e6 == duration
        text = repr(duration)
        assert "e" in text or len(text.partition(".")[2]) <= 6, text
        assert f", {text}, ".encode() in done_body(out, None)


def test_a_run_moved_into_this_nodes_time_shows_the_slots_due_time() -> None:
    """review13: ``slot_due_ms`` (the due time the manager sent) is current_run().due; the
    run is held to ``due_ms`` (this node's time base: clerk._clockskew), here already past
    (tests/integration/test_review13_skew_due.py)."""
    import json

    from clerk._worker import _run_message
    from clerk._workerlink import RUN_FIELDS

    j = {**job(Echo, state={"n": 1}), "timezone": "UTC", "deadline_ms": 0,
         "interval_ms": None}
    j["slot_due_ms"], j["due_ms"] = j["due_ms"], j["due_ms"] - 1998
    reply = _run_message(json.dumps([j[k] for k in RUN_FIELDS]).encode(), {})[0]
    assert reply["outcome"] == "ok", reply
    assert reply["state"]["due"] == "2025-12-02T01:46:40.250000+00:00", reply
