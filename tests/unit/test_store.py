"""The data directory: atomic writes, pacing, moving bad files aside, one node per directory."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import clerk
from clerk._config import load_config
from clerk._store import (
    FORMAT,
    MAX_FILE_BYTES,
    WRITE_INTERVAL,
    WRITE_SHARE,
    DataDirInUse,
    Store,
    check_free,
    default_data_dir,
)
from clerk.node import build_parser, config_from_args

TABLE = {"tasks": {"t": {"state": {"count": 7}, "has_state": True, "version": 7}},
         "node_runs": {"a": 7}}


def test_written_table_is_read_back_by_the_next_start(tmp_path: Path) -> None:
    s = Store(tmp_path / "d", "a@h")
    assert s.open() is None  # nothing yet
    s.mark()
    assert s.due(0.0)
    assert s.write(TABLE, 0.0)
    s.flush()
    assert s.writes == 1
    s.close()
    again = Store(tmp_path / "d", "a@h")
    assert again.open() == TABLE
    again.close()
    leftovers = [p.name for p in (tmp_path / "d").iterdir()]
    assert sorted(leftovers) == ["lock", "tasks.json"], "no temp file left behind"


def test_writes_are_coalesced_and_paced(tmp_path: Path) -> None:
    s = Store(tmp_path, "a@h")
    s.open()
    assert s.next_deadline() == float("inf") and not s.due(5.0)
    s.mark()
    s.write(TABLE, 10.0)
    s.mark()
    s.mark()
    assert not s.due(10.0 + WRITE_INTERVAL / 2)  # many changes, one write per interval
    assert s.next_deadline() >= 10.0 + WRITE_INTERVAL
    assert s.due(s.next_deadline())
    # A table that took long to build spaces the next write out (the loop's share, bounded).
    s.write(TABLE, 20.0, spent=1.0)
    s.mark()
    assert s.next_deadline() >= 20.0 + (WRITE_SHARE - 1) * 1.0
    s.close()


def test_a_table_over_the_size_bound_is_not_written(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    s = Store(tmp_path, "a@h")
    s.open()
    s.write(TABLE, 0.0)
    s.flush()
    huge = {"tasks": {"t": {"state": "x" * (MAX_FILE_BYTES + 1)}}}
    with caplog.at_level(logging.ERROR, "clerk.store"):
        assert not s.write(huge, 1.0)
    assert "over the" in caplog.text
    s.close()
    again = Store(tmp_path, "a@h")
    assert again.open() == TABLE, "the previous file stays"
    again.close()


@pytest.mark.parametrize(("content", "reason"), [
    (b"\x00\xffnot json", "unreadable"),
    (json.dumps({"hello": "world"}).encode(), "foreign"),
    (json.dumps({"format": FORMAT, "node": "b@h", "table": {}}).encode(), "foreign"),
    (json.dumps({"format": FORMAT, "node": "a@h", "table": [1]}).encode(), "unreadable"),
])
def test_a_bad_file_is_moved_aside_with_a_warning_naming_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str) -> None:
    (tmp_path / "tasks.json").write_bytes(content)
    s = Store(tmp_path, "a@h")
    with caplog.at_level(logging.WARNING, "clerk.store"):
        assert s.open() is None
    s.close()
    (aside,) = s.moved_aside
    assert aside.name.startswith(f"tasks.json.{reason}-")
    assert aside.read_bytes() == content, "never deleted"
    assert str(tmp_path / "tasks.json") in caplog.text and str(aside) in caplog.text
    assert not (tmp_path / "tasks.json").exists()


def test_two_nodes_cannot_share_a_directory(tmp_path: Path) -> None:
    first = Store(tmp_path, "a@h")
    first.open()
    # Another process (a second node) is refused, with a message naming the holder.
    code = ("import sys; from clerk._store import Store, DataDirInUse\n"
            f"try:\n    Store({str(tmp_path)!r}, 'b@h').open()\n"
            "except DataDirInUse as e:\n    print(e); sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 3, out.stderr
    assert "in use by node a@h" in out.stdout and "data_dir" in out.stdout
    with pytest.raises(DataDirInUse):
        check_free(tmp_path)
    first.close()
    check_free(tmp_path)  # free again once the holder is gone


def test_data_dir_config_key_flags_and_default(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert load_config(None, {"name": "a@h"}).data_path == tmp_path / "xdg/clerk/a@h"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_data_dir("a@h") == Path.home() / ".local/state/clerk/a@h"
    toml = tmp_path / "c.toml"
    toml.write_text('[node]\nname = "a@h"\ndata_dir = false\n')
    assert load_config(str(toml), {}).data_path is None
    toml.write_text(f'[node]\nname = "a@h"\ndata_dir = "{tmp_path}/d"\n')
    assert load_config(str(toml), {}).data_path == tmp_path / "d"
    toml.write_text('[node]\nname = "a@h"\ndata_dir = true\n')
    with pytest.raises(clerk.ConfigError, match="data_dir"):
        load_config(str(toml), {})
    p = build_parser()
    args = p.parse_args(["--name", "a@h", "--data-dir", str(tmp_path / "e")])
    assert config_from_args(args).data_path == tmp_path / "e"
    args = p.parse_args(["--name", "a@h", "--no-data-dir"])
    assert config_from_args(args).data_path is None
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "a@h", "--no-data-dir", "--data-dir", "x"])
    node = clerk.Node(name="a@127.0.0.1", data_dir=tmp_path / "n")
    assert node.config.data_path == tmp_path / "n"
    assert clerk.Node(name="a@127.0.0.1", data_dir=False).config.data_path is None
    spec = clerk.node_spec(name="a@127.0.0.1", data_dir=str(tmp_path / "s"))
    assert spec.args[0].data_path == tmp_path / "s"


def test_the_writer_thread_keeps_only_the_newest_table_and_close_waits_for_it(
        tmp_path: Path) -> None:
    s = Store(tmp_path, "a@h")
    s.open()
    for i in range(200):
        s.write({"tasks": {}, "n": i}, float(i))
    s.close()  # waits for the last one
    assert 1 <= s.writes <= 200
    again = Store(tmp_path, "a@h")
    assert again.open() == {"tasks": {}, "n": 199}
    again.close()
