"""Logs reach the process that started the node, through its logging (issue 12)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import clerk
from clerk.testing import free_ports, wait_until
from tests.integration.cluster_helpers import env_for_nodes
from tests.integration.log_tasks import Chatty

pytestmark = pytest.mark.timeout(90)


class Keep(logging.Handler):
    """The host's own handler: keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def task_records(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == "tests.integration.log_tasks"]


@pytest.fixture
def host_logging() -> Iterator[Keep]:
    root, clerk_log = logging.getLogger(), logging.getLogger("clerk")
    saved = root.level, clerk_log.level
    keep = Keep()
    root.addHandler(keep)
    root.setLevel(logging.INFO)
    clerk_log.setLevel(logging.WARNING)  # the host wants only Clerk's warnings
    try:
        yield keep
    finally:
        root.removeHandler(keep)
        root.setLevel(saved[0])
        clerk_log.setLevel(saved[1])


def test_an_embedded_node_logs_through_the_hosts_logging(
        host_logging: Keep, capfd: pytest.CaptureFixture[str]) -> None:
    (port,) = free_ports(1)
    task = clerk.task(Chatty, name="chatty", interval=200)
    with clerk.Node(name="emb@127.0.0.1", port=port, insecure=True, workers=1,
                    tasks=[task]) as node:
        wait_until(lambda: len(host_logging.task_records()) >= 3, timeout=20,
                   message=lambda: f"task records seen: {host_logging.task_records()}")
        assert node.manager() == "emb@127.0.0.1"
    mine = host_logging.task_records()
    for rec in mine:
        assert rec.getMessage().startswith("tally ")
        assert rec.node == "emb@127.0.0.1"  # type: ignore[attr-defined]
        assert rec.task == "chatty"  # type: ignore[attr-defined]
        assert isinstance(rec.slot, int) and rec.slot >= 0  # type: ignore[attr-defined]
        assert rec.run  # type: ignore[attr-defined]
        assert rec.process != os.getpid()  # it came from the worker process
    assert len({r.slot for r in mine}) == len(mine)  # type: ignore[attr-defined]
    # The task's warnings come as records too (py.warnings), with the run's attributes.
    warned = [r for r in host_logging.records if r.name == "py.warnings"]
    assert warned and all(r.task == "chatty" for r in warned)  # type: ignore[attr-defined]
    # The host's level for "clerk" applied: none of Clerk's INFO lines got through...
    assert not [r for r in host_logging.records
                if r.name.startswith("clerk") and r.levelno < logging.WARNING]
    # ...and the node wrote nothing of its own to the terminal.
    err = capfd.readouterr().err
    assert "clerk.node INFO" not in err and "tally" not in err, err[-2000:]


def test_clerk_node_log_format_json_and_sighup_leaves(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = tmp_path / "node.toml"
    config.write_text('[node]\nname = "j@127.0.0.1"\ninsecure = true\nworkers = 1\n'
                      f'port = {port}\nlog_level = "INFO"\n\n'
                      '[[task]]\ntask = "tests.integration.log_tasks:Chatty"\n'
                      'name = "chatty"\ninterval = 200\n')
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "clerk.node", "--config", str(config),
                                 "--log-format", "JSON"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env_for_nodes(),
                                start_new_session=True)
    try:
        def rows() -> list[dict[str, object]]:
            text = log.read_text(errors="replace")
            return [json.loads(line) for line in text.splitlines()[:-1] if line.strip()]

        wait_until(lambda: sum(r["logger"] == "tests.integration.log_tasks"
                               for r in rows()) >= 2, timeout=20,
                   message=lambda: log.read_text(errors="replace")[-3000:])
        proc.send_signal(signal.SIGHUP)  # the terminal closed: leave as on SIGTERM
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for row in records:
        assert {"ts", "level", "logger", "message", "node", "task", "slot", "run"} <= set(row)
        assert str(row["ts"]).endswith("Z")
        assert datetime.fromisoformat(str(row["ts"])).utcoffset() is not None
        assert row["node"] == "j@127.0.0.1"
    tally = [r for r in records if r["logger"] == "tests.integration.log_tasks"]
    assert all(r["task"] == "chatty" and isinstance(r["slot"], int) and r["run"]
               for r in tally)
    assert any(r["logger"] == "clerk.node" and r["message"] == "leaving the cluster"
               for r in records)
