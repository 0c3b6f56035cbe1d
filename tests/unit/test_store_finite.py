"""A data directory holding a number that is not finite (``NaN``, ``Infinity``, ``1e400``: a
damaged or hand-made file) keeps every good row and field at a restart: only what holds it is
dropped, with a WARNING naming the file, the row and the field (clerk._store, ``_row_texts``).

Before, the reader's texts of the rows failed whole (``allow_nan=False``) and it kept none: the
next snapshot (a graceful stop's, of a directory a kill -9 left) wrote an empty table."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from clerk._record import pack_table, unpack_table
from clerk._replica import DUMP
from clerk._store import Store

NODE = "a@h"
GOOD = {"state": {"count": 7}, "has_state": True, "version": 7, "slot": 40}
BAD = {"state": {"count": 1}, "has_state": True, "version": 3, "slot": 41,
       "counts": {"ok": 3, "error": 0}}

pytestmark = pytest.mark.timeout(30)


def _killed(path: Path, table: dict[str, Any]) -> Store:
    """A store that wrote ``table`` and was killed (no close: the snapshot names its
    journal, as a kill -9 leaves it); its lock released as the dead process's would be."""
    s = Store(path, NODE)
    s.open()
    s.write(table, 0.0)
    s.flush()
    return s


def _release(s: Store) -> None:
    assert s._fd is not None
    os.close(s._fd)
    s._fd = None


def _corrupt(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))


def _start(path: Path) -> tuple[dict[str, Any] | None, Store]:
    s = Store(path, NODE)
    return s.open(), s


def test_a_restart_and_a_graceful_stop_keep_the_good_rows(tmp_path: Path) -> None:
    """The loss as it was: every row gone after one restart of a directory a kill -9 left."""
    d = tmp_path / "d"
    _release(_killed(d, {"tasks": {"good": GOOD, "bad": BAD}, "node_runs": {"a": 7}}))
    _corrupt(d / "tasks.json", '"count":1', '"count":NaN')
    _, s = _start(d)
    s.close()
    after, s2 = _start(d)
    s2.close()
    assert after is not None and after["tasks"].get("good") == GOOD, after
    assert after.get("node_runs") == {"a": 7}


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_state_not_finite_in_the_snapshot_drops_that_state_only_and_survives_a_restart(
        tmp_path: Path, bad: str, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    _release(_killed(d, {"tasks": {"good": GOOD, "bad": BAD}, "node_runs": {"a": 7}}))
    _corrupt(d / "tasks.json", '"count":1', f'"count":{bad}')
    with caplog.at_level(logging.WARNING, "clerk.store"):
        table, s = _start(d)
    assert table is not None
    assert table["tasks"]["good"] == GOOD, "the good row is kept"
    assert table["node_runs"] == {"a": 7}
    assert table["tasks"]["bad"] == {"slot": 41, "counts": {"ok": 3, "error": 0}}, \
        "the bad row keeps its schedule, without the state (a member's copy or init)"
    json.dumps(table, allow_nan=False)  # nothing not finite is handed on
    assert str(d / "tasks.json") in caplog.text and "'bad'" in caplog.text
    assert "state.count" in caplog.text
    s.close()  # a graceful stop folds the journal in: a snapshot of what was read
    again, s2 = _start(d)
    s2.close()
    assert again == table, "the restart after it reads the same rows (not an empty table)"


def test_a_journal_record_not_finite_drops_only_that_field_naming_the_journal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    s = _killed(d, {"tasks": {"good": GOOD, "bad": BAD}})
    row = DUMP({**BAD, "version": 4, "last": {"took": 1.5}}).replace("1.5", "NaN")
    assert s.write_changes({"t:bad": row}, 1.0)
    s.flush()
    journal, = d.glob("tasks.*.journal")
    _release(s)
    with caplog.at_level(logging.WARNING, "clerk.store"):
        table, s2 = _start(d)
    assert table is not None
    assert table["tasks"] == {"good": GOOD, "bad": {**BAD, "version": 4}}, \
        "only the field is dropped: the state and the other rows are kept"
    assert f"{journal} (record 1)" in caplog.text and "last.took: nan" in caplog.text
    s2.close()
    again, s3 = _start(d)
    s3.close()
    assert again == table


def test_history_entries_table_keys_and_fields_go_one_by_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    history = [[1000, 1, "a@h", 0.5], [2000, 2, "a@h", 0.25]]
    _release(_killed(d, {"tasks": {"good": GOOD, "h": {**BAD, "run_history": history},
                                   "whole": 5},
                         "node_runs": {"a": 7, "b": 8}}))
    f = d / "tasks.json"
    _corrupt(f, "0.25", "Infinity")  # a run history entry (its list form, an older build's)
    _corrupt(f, '"b":8', '"b":NaN')  # an item of a table key
    _corrupt(f, '"error":0', '"error":-1e999')  # a field of the schedule part
    _corrupt(f, '"whole":5', '"whole":NaN')  # a row that is not even an object
    with caplog.at_level(logging.WARNING, "clerk.store"):
        table, s = _start(d)
    s.close()
    assert table is not None
    assert table["tasks"]["good"] == GOOD
    h = {k: v for k, v in BAD.items() if k != "counts"}
    assert table["tasks"]["h"] == {**h, "run_history": history[:1]}
    assert "whole" not in table["tasks"]
    assert table["node_runs"] == {"a": 7}
    for said in ("run_history[1][3]: inf", "counts.error: -inf", "'node_runs'", "b: nan",
                 "'whole'", "the row itself: nan"):
        assert said in caplog.text
    # What the node does with it (clerk._runner: Scheduler.load; replication packs it).
    assert unpack_table(pack_table(table)) == table


def test_a_good_directory_reads_as_before_without_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    good = {"tasks": {"good": GOOD, "other": {**BAD, "last": {"took": 1e300}}},
            "node_runs": {"a": 7}}
    _release(_killed(d, good))
    with caplog.at_level(logging.WARNING, "clerk.store"):
        table, s = _start(d)
    s.close()
    assert table == good and not caplog.records
