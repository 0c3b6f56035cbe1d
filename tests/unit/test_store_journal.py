"""The data directory's journal: changed rows appended, torn tails dropped, compaction safe at
every crash point, an older build's directory upgraded in place."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import clerk._storewriter as writer_mod
from clerk._journal import (
    apply_rows,
    change_record,
    frame,
    header_record,
    journal_name,
    journals,
    split_records,
    torn_tail,
)
from clerk._replica import DUMP, Replica, ReplicaLog
from clerk._store import FORMAT, JOURNAL_KEY, Store

NODE = "a@h"


def row(count: int, pad: int = 0) -> str:
    return DUMP({"state": {"count": count}, "has_state": True, "version": count,
                 "pad": "x" * pad})


def table_of(rows: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"tasks": {}}
    for key, text in rows.items():
        if key.startswith("t:"):
            out["tasks"][key[2:]] = json.loads(text)
        else:
            out[key[2:]] = json.loads(text)
    return out


def older_build_read(path: Path, node: str = NODE) -> tuple[dict[str, Any], dict[str, str]]:
    """What main before the journal (``git show main:clerk/_store.py``, ``Store.read``) takes
    from ``tasks.json``: the same checks, in the same order; an AssertionError where it would
    move the file aside as foreign or unreadable. Its table and recorded members."""
    doc = json.loads((path / "tasks.json").read_bytes())
    assert isinstance(doc, dict) and doc.get("format") == "clerk-task-table/1", "foreign"
    assert doc.get("node") == node, "foreign"
    table = doc.get("table")
    assert isinstance(table, dict), "unreadable"
    members = doc.get("members")
    recorded = ({k: v for k, v in members.items()
                 if isinstance(k, str) and isinstance(v, str) and k != node}
                if isinstance(members, dict) else {})
    return table, recorded


def older_build_write(path: Path, table: dict[str, Any], members: dict[str, str]) -> None:
    """A snapshot as main before the journal writes it (``Store._frame``): no journal key."""
    doc = {"format": "clerk-task-table/1", "node": NODE, "written": 0.0,
           "members": members, "table": table}
    (path / "tasks.json").write_text(json.dumps(doc))


def crash_copy(src: Path, dst: Path) -> Path:
    """The directory as a kill -9 would leave it now (every file but the lock)."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name != "lock":
            shutil.copy2(p, dst / p.name)
    return dst


def read(path: Path) -> tuple[dict[str, Any] | None, Store]:
    s = Store(path, NODE)
    table = s.open()
    s._plain = True  # reading only: no final snapshot on close
    s.close()
    return table, s


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "d", NODE)
    s.open()
    yield s
    s.close()


def test_a_write_appends_only_the_changed_rows(opened: Store, tmp_path: Path) -> None:
    rows = {f"t:t{i}": row(0, 400) for i in range(1000)}
    assert opened.write_changes({"t:t1": row(1)}, 0.0) is False, "no whole table yet"
    opened.write_rows(list(rows.items()), 0.0)
    opened.flush()
    snap = (tmp_path / "d" / "tasks.json").stat().st_size
    assert snap > 400_000 and opened.snapshots == 1
    for n in range(1, 6):
        rows["t:t7"] = row(n, 400)
        opened.write_changes({"t:t7": rows["t:t7"]}, float(n))
        opened.flush()
    (gen, jpath), = journals(tmp_path / "d")
    assert jpath.stat().st_size < 5 * 600, "five records of one row each, not the table"
    assert opened.snapshots == 1 and opened.writes == 6
    assert (tmp_path / "d" / "tasks.json").stat().st_size == snap, "the snapshot stays"
    table, _ = read(crash_copy(tmp_path / "d", tmp_path / "c"))
    assert table == table_of(rows)
    # A removed row and a member list change travel in the journal too.
    opened.members = lambda: {"b@h": "h:1"}
    del rows["t:t3"]
    opened.write_changes({"t:t3": None}, 9.0)
    opened.flush()
    table, again = read(crash_copy(tmp_path / "d", tmp_path / "c2"))
    assert table == table_of(rows) and again.recorded == {"b@h": "h:1"}


def test_a_graceful_stop_folds_the_journal_into_a_plain_snapshot(tmp_path: Path) -> None:
    s = Store(tmp_path / "d", NODE)
    s.open()
    s.members = lambda: {"b@h": "h:1"}
    rows = {"t:a": row(1), "k:node_runs": DUMP({"a@h": 1})}
    s.write_rows(list(rows.items()), 0.0)
    rows["t:a"] = row(2)
    s.write_changes({"t:a": rows["t:a"]}, 1.0)
    s.close()
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["lock", "tasks.json"]
    doc = json.loads((tmp_path / "d" / "tasks.json").read_text())
    assert doc["format"] == FORMAT and JOURNAL_KEY not in doc, "no journal left to replay"
    assert doc["table"] == table_of(rows) and doc["members"] == {"b@h": "h:1"}


def _journal_bytes(gen: int, records: list[dict[str, str | None]]) -> tuple[bytes, list[int]]:
    data = header_record(NODE, gen)
    ends = [len(data)]
    for rec in records:
        data += change_record(rec)
        ends.append(len(data))
    return data, ends


def _snapshot(path: Path, table: dict[str, Any], gen: int | None) -> None:
    doc: dict[str, Any] = {"format": FORMAT, "node": NODE, "table": table}
    if gen is not None:
        doc[JOURNAL_KEY] = gen
    path.mkdir(parents=True, exist_ok=True)
    (path / "tasks.json").write_text(json.dumps(doc))


RECORDS: list[dict[str, str | None]] = [{"t:a": row(1)}, {"t:b": row(1), "t:a": row(2)},
                                        {"t:a": None}, {"t:c": row(5, 300)}]


def _states() -> list[dict[str, Any]]:
    """The table after 0, 1, ... records of RECORDS over an empty snapshot."""
    out: list[dict[str, Any]] = [{"tasks": {}}]
    for rec in RECORDS:
        t = json.loads(json.dumps(out[-1]))
        assert apply_rows(t, {k: None if v is None else json.loads(v) for k, v in rec.items()})
        out.append(t)
    return out


def test_a_torn_tail_at_every_byte_offset_is_dropped_never_misread(tmp_path: Path) -> None:
    data, ends = _journal_bytes(1, RECORDS)
    states = _states()
    for cut in range(len(data) + 1):
        d = tmp_path / f"c{cut}"
        _snapshot(d, {"tasks": {}}, 1)
        (d / journal_name(1)).write_bytes(data[:cut])
        table, s = read(d)
        whole = sum(1 for e in ends[1:] if e <= cut)
        assert table == states[whole], cut
        assert not s.moved_aside, "a torn tail is not damage"
    # Garbage after the last record (a crash that extended the file but not its data).
    for tail in (b"\x00" * 40, b"\xff" * 9, frame(b'{"rows":{')[:-3]):
        d = tmp_path / f"g{len(tail)}{tail[:1]!r}"
        _snapshot(d, {"tasks": {}}, 1)
        (d / journal_name(1)).write_bytes(data + tail)
        assert read(d)[0] == states[-1]


def test_a_checksum_mismatch_before_the_end_is_damage_moved_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, ends = _journal_bytes(1, RECORDS)
    bad = bytearray(data)
    bad[ends[2] - 3] ^= 0x01  # inside the second change record's payload
    records, end = split_records(bytes(bad))
    assert end == ends[1] and len(records) == 2 and not torn_tail(bytes(bad), end)
    d = tmp_path / "d"
    _snapshot(d, {"tasks": {}}, 1)
    (d / journal_name(1)).write_bytes(bytes(bad))
    with caplog.at_level(logging.WARNING, "clerk.store"):
        table, s = read(d)
    assert table == _states()[1], "the records before the damage, none after"
    (aside,) = s.moved_aside
    assert aside.name.startswith(journal_name(1) + ".unreadable-")
    assert aside.read_bytes() == bytes(bad), "never deleted"
    assert str(aside) in caplog.text


def test_damage_in_a_journal_before_the_last_stops_the_replay(tmp_path: Path) -> None:
    first, ends = _journal_bytes(1, RECORDS[:2])
    second, _ = _journal_bytes(2, RECORDS[2:])
    d = tmp_path / "d"
    _snapshot(d, {"tasks": {}}, 1)
    (d / journal_name(1)).write_bytes(first[:-2])  # cut short, yet a later journal exists
    (d / journal_name(2)).write_bytes(second)
    table, s = read(d)
    assert table == _states()[1]
    assert len(s.moved_aside) == 2 and not journals(d)


def test_a_foreign_or_orphan_journal_is_moved_aside(tmp_path: Path) -> None:
    d = tmp_path / "d"
    _snapshot(d, {"tasks": {}}, 1)
    (d / journal_name(1)).write_bytes(header_record("b@h", 1) + change_record({"t:a": row(1)}))
    table, s = read(d)
    assert table == {"tasks": {}} and len(s.moved_aside) == 1
    o = tmp_path / "o"
    o.mkdir()
    (o / journal_name(3)).write_bytes(_journal_bytes(3, RECORDS)[0])
    table, s = read(o)
    assert table is None and s.moved_aside[0].name.startswith(journal_name(3) + ".orphan-")


def test_an_older_builds_directory_upgrades_in_place(tmp_path: Path) -> None:
    d = tmp_path / "d"
    old = {"tasks": {"a": json.loads(row(4))}, "node_runs": {"a@h": 4}}
    _snapshot(d, old, None)
    # A journal beside a /1 snapshot is older than it (an older build wrote the snapshot
    # after this build had stopped): superseded, not replayed.
    (d / journal_name(7)).write_bytes(_journal_bytes(7, RECORDS)[0])
    s = Store(d, NODE)
    assert s.open() == old
    s.write_rows([("t:a", row(5)), ("k:node_runs", DUMP({"a@h": 5}))], 0.0)
    s.flush()  # (else both are taken at once: one snapshot)
    s.write_changes({"t:a": row(6)}, 1.0)
    s.flush()
    doc = json.loads((d / "tasks.json").read_text())
    assert doc["format"] == FORMAT and doc[JOURNAL_KEY] == 8
    assert [g for g, _ in journals(d)] == [8], "the superseded journal is gone"
    table, _ = read(crash_copy(d, tmp_path / "c"))
    assert table == {"tasks": {"a": json.loads(row(6))}, "node_runs": {"a@h": 5}}
    s.close()


class _Gate:
    """Blocks the compaction thread at one point until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def wait_here(self) -> None:
        if threading.current_thread().name == "clerk-store-compact":
            self.reached.set()
            assert self.go.wait(30)


@pytest.mark.parametrize("point", ["before-rename", "after-rename", "after-delete"])
def test_a_crash_at_every_point_of_a_compaction_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    monkeypatch.setattr(writer_mod, "COMPACT_MIN_BYTES", 2000)
    gate = _Gate()
    real_replace: Callable[..., None] = writer_mod.replace_durably
    real_remove = Store._remove_journals

    def replace(file: Path, data: bytes, tmp: Path) -> None:
        if point == "before-rename":
            gate.wait_here()
        real_replace(file, data, tmp)
        if point == "after-rename":
            gate.wait_here()

    def remove(self: Store, below: int | None) -> None:
        real_remove(self, below)
        if point == "after-delete":
            gate.wait_here()

    monkeypatch.setattr(writer_mod, "replace_durably", replace)
    monkeypatch.setattr(Store, "_remove_journals", remove)
    s = Store(tmp_path / "d", NODE)
    s.open()
    rows = {f"t:t{i}": row(0, 100) for i in range(10)}
    s.write_rows(list(rows.items()), 0.0)  # the first snapshot: not the compaction thread
    s.flush()
    n = 0
    while not gate.reached.is_set():
        n += 1
        assert n < 100, "no compaction started"
        rows[f"t:t{n % 10}"] = row(n, 100)
        s.write_changes({f"t:t{n % 10}": rows[f"t:t{n % 10}"]}, float(n))
        s.flush()
    # The compaction is held at its point; appends go on into the next journal.
    for m in range(n + 1, n + 4):
        rows[f"t:t{m % 10}"] = row(m, 100)
        s.write_changes({f"t:t{m % 10}": rows[f"t:t{m % 10}"]}, float(m))
        s.flush()
    assert len(journals(tmp_path / "d")) == (1 if point == "after-delete" else 2)
    crashed = crash_copy(tmp_path / "d", tmp_path / "crash")
    assert older_build_read(crashed)[0], "an older build reads it too (a downgrade)"
    table, r = read(crashed)
    assert table == table_of(rows) and not r.moved_aside
    gate.go.set()
    s.close()
    table, _ = read(tmp_path / "d")
    assert table == table_of(rows)


def test_a_leftover_temp_file_of_a_snapshot_is_ignored(tmp_path: Path) -> None:
    d = tmp_path / "d"
    _snapshot(d, {"tasks": {}}, 1)
    (d / journal_name(1)).write_bytes(_journal_bytes(1, RECORDS)[0])
    (d / ".tasks.json.123.tmp").write_bytes(b'{"format": "clerk-task-t')  # cut short
    assert read(d)[0] == _states()[-1]


def test_the_tables_track_which_rows_changed() -> None:
    log = ReplicaLog("L")
    log.put("t:a", "1")
    assert not log.tracking() and log.take_changes() == {}
    assert log.track() == {"t:a": "1"}
    log.put("t:b", "2")
    log.put("t:a", "3")
    log.remove("t:b")
    assert log.take_changes() == {"t:a": "3", "t:b": None}
    assert log.take_changes() == {}
    rep = Replica()
    rep.track()
    whole = ReplicaLog("M")
    whole.put_table({"tasks": {"x": 1, "y": 2}})
    d = whole.delta(-1)
    assert d is not None and rep.apply(d)
    assert rep.take_changes() == {"t:x": "1", "t:y": "2"}
    again = ReplicaLog("N")  # a new log without y: the done delta drops it
    again.put_table({"tasks": {"x": 1}})
    d = again.delta(-1)
    assert d is not None and rep.apply(d)
    assert rep.take_changes() == {"t:x": "1", "t:y": None}
    rep.reset({"tasks": {}})
    assert not rep.tracking(), "replaced wholesale: the disk takes every row again"


def test_compaction_runs_again_and_again_and_bounds_the_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_mod, "COMPACT_MIN_BYTES", 3000)
    s = Store(tmp_path / "d", NODE)
    s.open()
    rows = {f"t:t{i}": row(0, 100) for i in range(10)}
    s.write_rows(list(rows.items()), 0.0)
    for n in range(1, 300):
        rows[f"t:t{n % 10}"] = row(n, 100)
        s.write_changes({f"t:t{n % 10}": rows[f"t:t{n % 10}"]}, float(n))
        s.flush()
        if s._compactor is not None:
            s._compactor.join()  # (done before the next write: deterministic counts)
        size = sum(p.stat().st_size for _, p in journals(tmp_path / "d"))
        assert size < 2 * 3000 + 2000, "compaction keeps the journal bounded"
    assert s.snapshots > 10
    table, _ = read(crash_copy(tmp_path / "d", tmp_path / "c"))
    assert table == table_of(rows)
    s.close()


@pytest.mark.parametrize("seed", range(4))
def test_random_changes_read_back_after_a_crash_at_any_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """What ``persist`` does (a whole table once, then its change sets; a new table now and
    then), with compactions, read back from a copy of the directory after random writes: the
    table as it was at the last write, exactly."""
    import random

    monkeypatch.setattr(writer_mod, "COMPACT_MIN_BYTES", 4000)
    rng = random.Random(seed)
    s = Store(tmp_path / "d", NODE)
    s.open()
    s.members = lambda: {"b@h": f"h:{rng.randrange(3)}"}
    log = ReplicaLog("L0")
    s.write_rows(log.track(), 0.0)
    for step in range(1, 200):
        for _ in range(rng.randrange(6)):
            key = f"t:t{rng.randrange(30)}"
            if rng.random() < 0.15:
                log.remove(key)
            else:
                log.put(key, row(step, rng.randrange(200)))
        if rng.random() < 0.2:
            log.put("k:node_runs", DUMP({"a@h": step}))
        if rng.random() < 0.03:  # a new table (a takeover): handed over whole
            old, log = log, ReplicaLog(f"L{step}")
            for k, t in old.items():
                if t is not None:
                    log.put(k, t)
            s.write_rows(log.track(), float(step))
        else:
            assert s.write_changes(log.take_changes(), float(step))
        if rng.random() < 0.5:
            s.flush()
        if rng.random() < 0.1:
            s.flush()
            if s._compactor is not None:  # (a copy is not atomic like a crash: the states
                s._compactor.join()  # in the middle of a compaction are tested above)
            want = table_of({k: t for k, t in log.items() if t is not None})
            table, r = read(crash_copy(tmp_path / "d", tmp_path / f"c{step}"))
            assert table == want, step
            assert not r.moved_aside
    s.close()
    table, _ = read(tmp_path / "d")
    assert table == table_of({k: t for k, t in log.items() if t is not None})


def test_a_downgrade_after_a_kill_reads_the_snapshot_and_a_later_upgrade_skips_the_journal(
        tmp_path: Path) -> None:
    """Killed mid-life (snapshot plus journal), then an older build: it reads the snapshot as
    its own (the table as of the snapshot, not the journal's changes since), not as foreign.
    Its own write has no journal key: the new build, back again, ignores the stale journal."""
    s = Store(tmp_path / "d", NODE)
    s.open()
    s.members = lambda: {"b@h": "h:1", "c@h": "h:2"}
    rows = {"t:a": row(1), "t:b": row(1), "k:node_runs": DUMP({"a@h": 1})}
    s.write_rows(list(rows.items()), 0.0)
    s.flush()
    snapshot = table_of(rows)
    for n in range(2, 5):
        rows["t:a"] = row(n)
        s.write_changes({"t:a": rows["t:a"]}, float(n))
        s.flush()
    killed = crash_copy(tmp_path / "d", tmp_path / "k")
    s.close()
    assert journals(killed), "a journal beside the snapshot: the kill -9 case"
    doc = json.loads((killed / "tasks.json").read_text())
    assert doc["format"] == "clerk-task-table/1" and type(doc[JOURNAL_KEY]) is int
    table, recorded = older_build_read(killed)
    assert table == snapshot and recorded == {"b@h": "h:1", "c@h": "h:2"}
    assert read(crash_copy(killed, tmp_path / "n"))[0] == table_of(rows), "the new build: all"
    # The older build runs on and writes its own (older) table; then the new build is back.
    older = {"tasks": {"a": json.loads(row(9)), "b": json.loads(row(1))}}
    older_build_write(killed, older, {"b@h": "h:1"})
    again = Store(killed, NODE)
    assert again.open() == older, "the journal beside a key-less snapshot is not replayed"
    assert again.recorded == {"b@h": "h:1"} and not again.moved_aside
    again.write_rows([("t:a", row(10))], 0.0)
    again.flush()
    assert [p.name for _, p in journals(killed)] == [], "the stale journal is deleted"
    again.close()


def test_a_snapshot_with_a_bad_journal_key_keeps_its_table_and_sets_the_journals_aside(
        tmp_path: Path) -> None:
    d = tmp_path / "d"
    _snapshot(d, {"tasks": {"a": json.loads(row(3))}}, 1)
    doc = json.loads((d / "tasks.json").read_text())
    doc[JOURNAL_KEY] = "1"
    (d / "tasks.json").write_text(json.dumps(doc))
    (d / journal_name(1)).write_bytes(_journal_bytes(1, RECORDS)[0])
    table, s = read(d)
    assert table == {"tasks": {"a": json.loads(row(3))}}
    (aside,) = s.moved_aside
    assert aside.name.startswith(journal_name(1) + ".unreplayed-") and not journals(d)


def test_a_snapshot_of_the_unreleased_format_2_is_foreign(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "tasks.json").write_text(json.dumps(
        {"format": "clerk-task-table/2", "node": NODE, "gen": 1, "table": {"tasks": {}}}))
    table, s = read(d)
    assert table is None and s.moved_aside[0].name.startswith("tasks.json.foreign-")
