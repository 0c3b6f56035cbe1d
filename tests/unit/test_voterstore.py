"""The voter file: durable before answered, in order, coalesced, never a silent fresh start."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clerk._errors import ConfigError
from clerk._voterstore import FORMAT, MAX_RECORD_BYTES, VOTER_FILE, VoterStore
from supervisor.testing import wait_until

pytestmark = pytest.mark.timeout(30)

A = {"version": 1, "promised": [3, 0, "a@h"], "rows": {"t": {"reserved": 5}}}
B = {"version": 1, "promised": [4, 0, "a@h"], "rows": {"t": {"reserved": 9}}}


def test_a_written_record_is_loaded_by_the_next_start(tmp_path: Path) -> None:
    s = VoterStore(tmp_path / "d", "a@h")
    assert s.load() is None  # a voter's first start
    called: list[str] = []
    assert s.write(A, lambda: called.append("a"))
    assert s.flush()
    assert called == [], "callbacks run on the loop (deliver), never in the writer thread"
    assert s.deliver() == 1 and called == ["a"]
    s.close()
    assert VoterStore(tmp_path / "d", "a@h").load() == A
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [VOTER_FILE]
    doc = json.loads((tmp_path / "d" / VOTER_FILE).read_text())
    assert doc["format"] == FORMAT and doc["node"] == "a@h"


def test_callbacks_run_in_order_after_their_record_is_durable(tmp_path: Path) -> None:
    """Records handed over during a write are coalesced into one write of the newest; every
    callback still runs, in the order of the writes, and only once its record is on disk."""
    s = VoterStore(tmp_path, "a@h")
    gate = threading.Event()
    real = s._write_file
    seen_on_disk: list[int] = []

    def slow_write(data: bytes) -> bool:
        gate.wait(10)
        return real(data)

    s._write_file = slow_write  # type: ignore[method-assign]
    order: list[int] = []

    def then(i: int) -> None:
        order.append(i)
        on_disk = VoterStore(tmp_path, "a@h").load()
        assert on_disk is not None
        seen_on_disk.append(on_disk["rows"]["t"]["reserved"])

    for i in range(1, 6):
        s.write({"version": 1, "promised": None, "rows": {"t": {"reserved": i}}},
                functools.partial(then, i))
    assert s.deliver() == 0, "nothing is durable yet"
    gate.set()
    assert s.flush()
    s.deliver()
    assert order == [1, 2, 3, 4, 5]
    assert all(r >= i for r, i in zip(seen_on_disk, order, strict=True)), \
        "a callback ran before a record at least as new as its own was on disk"
    assert 1 <= s.writes < 5, "the records queued behind the first write were coalesced"
    s.close()


def test_the_writer_wakes_the_loop_after_a_write(tmp_path: Path) -> None:
    woken = threading.Event()
    s = VoterStore(tmp_path, "a@h", wake=woken.set)
    s.write(A, lambda: None)
    wait_until(woken.is_set, timeout=5)
    assert s.deliver() == 1
    assert len(s.latencies) == 1 and s.latencies[0] > 0
    s.close()


def test_a_failed_write_answers_nothing(tmp_path: Path) -> None:
    s = VoterStore(tmp_path, "a@h")
    s._write_file = lambda data: False  # type: ignore[method-assign]  # disk full, EIO
    called: list[int] = []
    s.write(A, lambda: called.append(1))
    s.flush()
    assert s.deliver() == 0 and called == [] and s.failures == 1
    big = {"version": 1, "promised": None, "rows": {"t": "x" * MAX_RECORD_BYTES}}
    assert not s.write(big, lambda: called.append(2))
    assert not s.write({"bad": {1, 2}}, lambda: called.append(3))  # not JSON
    assert s.deliver() == 0 and called == []
    s.close()


@pytest.mark.parametrize(("content", "problem"), [
    (b"{not json", "not valid JSON"),
    (b'{"format": "something-else"}', "not a Clerk voter file"),
    (json.dumps({"format": FORMAT, "node": "b@h", "record": A}).encode(), "node 'b@h'"),
    (json.dumps({"format": FORMAT, "node": "a@h", "record": 3}).encode(), "no record"),
    # A number that is not finite in a row's task record (which the register keeps as it is):
    # every later write of the record would fail (allow_nan=False), the voter answering
    # nothing; its promises are not for a reader to drop piecemeal. In a ballot (which the
    # register refuses too, with a ValueError that names no file): the same error.
    (json.dumps({"format": FORMAT, "node": "a@h", "record": {**A, "rows": {"t": {
        "reserved": 5, "accepted": [3, 0, "a@h"], "seq": 1,
        "record": {"state": {"n": float("nan")}}}}}}).encode(),
     "not finite (record: rows.t.record.state.n: nan)"),
    (json.dumps({"format": FORMAT, "node": "a@h", "record": {**A, "promised": [3, 0, "a@h"]}}
                ).replace("[3, 0", "[1e400, 0").encode(), "promised[0]: inf"),
])
def test_a_corrupt_file_is_an_error_naming_it_never_a_fresh_start(
        tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / VOTER_FILE).write_bytes(content)
    with pytest.raises(ConfigError) as err:
        VoterStore(tmp_path, "a@h").load()
    assert str(tmp_path / VOTER_FILE) in str(err.value)
    assert problem in str(err.value)
    assert (tmp_path / VOTER_FILE).read_bytes() == content, "the file is left for the operator"


_CRASH = """
import os, sys
from clerk import _voterstore
from clerk._voterstore import VoterStore
s = VoterStore(sys.argv[1], "a@h")
s.write({"version": 1, "promised": [3, 0, "a@h"], "rows": {"t": {"reserved": 5}}}, lambda: 0)
assert s.flush()
def crash(src, dst):  # the temp file is written and fsynced: die before the rename
    os._exit(9)
_voterstore.os.replace = crash
s.write({"version": 1, "promised": [4, 0, "a@h"], "rows": {"t": {"reserved": 9}}}, lambda: 0)
s.flush()
"""


def test_a_crash_between_write_and_rename_keeps_the_old_record(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path)], timeout=20,
                          capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert any(p.endswith(".tmp") for p in leftovers), "the crash came after the temp file"
    assert VoterStore(tmp_path, "a@h").load() == A


def test_the_file_is_private(tmp_path: Path) -> None:
    s = VoterStore(tmp_path, "a@h")
    s.write(B, lambda: None)
    s.close()
    assert os.stat(tmp_path / VOTER_FILE).st_mode & 0o077 == 0
