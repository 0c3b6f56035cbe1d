"""clerk._logging in one process: formats, the sink, levels, the fallback, big records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from clerk._logging import (
    ERRORS_KEPT,
    MAX_RECORD_BYTES,
    ContextFilter,
    ForwardHandler,
    JsonFormatter,
    LogSink,
    TextFormatter,
    run_context,
)
from supervisor.testing import wait_until

pytestmark = pytest.mark.timeout(30)


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def make(name: str, msg: str, *args: object, level: int = logging.INFO,
         **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    record.created = 86400.25  # 1970-01-02T00:00:00.250Z
    record.__dict__.update(extra)
    return record


def test_text_lines_carry_the_zone_and_a_tasks_context() -> None:
    fmt = TextFormatter()
    line = fmt.format(make("clerk.node", "manager is %s", "b", node="a@h", task=None))
    assert line == "1970-01-02T00:00:00.250Z a@h clerk.node INFO manager is b"
    task = fmt.format(make("myapp.tasks", "tally %d", 3, node="a@h", task="t", slot=7,
                           run="r1"))
    assert task.endswith("myapp.tasks INFO tally 3 [task=t slot=7 run=r1]")


def test_json_lines_have_every_field() -> None:
    row = json.loads(JsonFormatter().format(make("myapp.tasks", "x", node="a@h", task="t",
                                                 slot=1, run="r")))
    assert row == {"ts": "1970-01-02T00:00:00.250Z", "level": "INFO", "logger": "myapp.tasks",
                   "message": "x", "node": "a@h", "task": "t", "slot": 1, "run": "r",
                   "pid": row["pid"]}


@pytest.fixture
def sink() -> Iterator[LogSink]:
    s = LogSink()
    yield s
    s.close()


@pytest.fixture
def host() -> Iterator[Keep]:
    keep = Keep()
    logger = logging.getLogger("fwd.test")
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    yield keep
    logger.removeHandler(keep)
    logger.setLevel(logging.NOTSET)


def test_records_reach_the_hosts_logger_with_their_context(sink: LogSink, host: Keep) -> None:
    fallback = Keep()
    handler = ForwardHandler(sink.endpoint, fallback)
    handler.addFilter(ContextFilter("a@h"))
    run_context("t", 4, "r9")
    try:
        handler.handle(make("fwd.test", "hello %s", "there"))
        handler.handle(make("fwd.test.quiet", "debug only", level=logging.DEBUG))
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            rec = make("fwd.test", "failed")
            rec.exc_info = sys.exc_info()
            handler.handle(rec)
        wait_until(lambda: len(host.records) >= 2, timeout=5)
    finally:
        run_context()
        handler.close()
    first, second = host.records[:2]
    assert first.getMessage() == "hello there"
    assert (first.node, first.task, first.slot, first.run) == (  # type: ignore[attr-defined]
        "a@h", "t", 4, "r9")
    assert "ValueError: boom" in (second.exc_text or "")
    # The host's level decides: DEBUG was sent (the child's level allowed it) but dropped.
    assert all(r.levelno >= logging.INFO for r in host.records)
    assert not fallback.records and sink.received == 3


def test_without_a_host_records_fall_back_to_stderr(tmp_path: Path) -> None:
    fallback = Keep()
    handler = ForwardHandler(str(tmp_path / "nobody-listens"), fallback)
    handler.handle(make("fwd.test", "lost?"))
    wait_until(lambda: fallback.records, timeout=5)
    handler.close()
    assert fallback.records[0].getMessage() == "lost?" and handler.undelivered == 1


def test_a_huge_record_is_cut_not_dropped(sink: LogSink, host: Keep) -> None:
    handler = ForwardHandler(sink.endpoint, Keep())
    handler.handle(make("fwd.test", "x" * (3 * MAX_RECORD_BYTES) + "THE END"))
    wait_until(lambda: host.records, timeout=5)
    handler.close()
    msg = host.records[0].getMessage()
    assert len(msg) < MAX_RECORD_BYTES and msg.endswith("THE END") and "cut" in msg


def test_the_sink_keeps_the_last_error_messages_whatever_the_host_does(sink: LogSink) -> None:
    """What ``Node.start()`` quotes when the node ends before it answers: kept even when the
    host's logging drops the records (here, the logger is silenced)."""
    quiet = logging.getLogger("fwd.silenced")
    quiet.setLevel(logging.CRITICAL + 1)
    handler = ForwardHandler(sink.endpoint, Keep())
    try:
        handler.handle(make("fwd.silenced", "just info"))
        for i in range(7):
            handler.handle(make("fwd.silenced", "cannot %s #%d", "listen", i,
                                level=logging.ERROR))
        handler.handle(make("fwd.silenced", "bad", level=logging.CRITICAL))
        wait_until(lambda: sink.received >= 9, timeout=5)
    finally:
        handler.close()
        quiet.setLevel(logging.NOTSET)
    assert ERRORS_KEPT == 5  # the last five at ERROR or above, formatted; INFO is not kept
    assert list(sink.errors) == [f"cannot listen #{i}" for i in range(3, 7)] + ["bad"]
