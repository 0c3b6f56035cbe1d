"""The data directory's journal: the rows changed since the snapshot, appended with one sync.

Rules:

* **Records.** A journal file is a sequence of records, each ``length`` (4 bytes, big endian)
  + ``crc32`` of the payload (4 bytes) + the payload (UTF-8 JSON). The first record is the
  header ``{"format": JOURNAL_FORMAT, "node": ..., "gen": ...}``; every other one is
  ``{"rows": {key: row or null}}`` (row keys as in :mod:`clerk._replica`: ``t:<task>``,
  ``k:<key>``; null: the row is gone), with ``"members"`` when the member list changed.
* **Torn tails.** A crash mid-append leaves a record cut short, or whose bytes never reached
  the disk (zeros, garbage): its length runs past the end, or its checksum does not match.
  :func:`split_records` stops at the first such record and says where: the intact records
  before it are the journal, the rest is dropped, never misread. A payload that is not JSON
  despite a good checksum is treated the same way. A bad record followed by an intact one
  is damage, not a torn tail (:func:`torn_tail`): the reader moves that journal aside.
* **Generations.** Journal ``tasks.<gen>.journal`` continues the snapshot of generation
  ``gen`` (``tasks.json`` says its own). Reading is the snapshot, then the journals of its
  generation and every later one, in order (a compaction in progress: see clerk._store).
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from clerk._replica import table_text

__all__ = ["HEADER", "JOURNAL_FORMAT", "apply_rows", "change_record", "frame",
           "header_record", "journal_name", "journals", "snapshot_text", "split_records",
           "sync_dir", "torn_tail", "write_all"]

JOURNAL_FORMAT = "clerk-task-journal/1"
#: Length and checksum before each payload.
HEADER = struct.Struct(">II")
#: A record longer than this is not one of ours (a corrupt length): the rest is dropped.
MAX_RECORD = 64 * 1024 * 1024
_NAME = re.compile(r"^tasks\.(\d{1,18})\.journal$")


def journal_name(gen: int) -> str:
    return f"tasks.{gen}.journal"


def journals(directory: Path) -> list[tuple[int, Path]]:
    """The journal files in ``directory``, by generation (oldest first)."""
    out: list[tuple[int, Path]] = []
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError:
        return out
    for name in names:
        m = _NAME.match(name)
        if m:
            out.append((int(m.group(1)), directory / name))
    out.sort()
    return out


def frame(payload: bytes) -> bytes:
    """One record: length, checksum, payload."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def header_record(node: str, gen: int) -> bytes:
    return frame(json.dumps({"format": JOURNAL_FORMAT, "node": node, "gen": gen},
                            separators=(",", ":")).encode())


def change_record(changes: Mapping[str, str | None],
                  members: dict[str, str] | None = None) -> bytes:
    """A record of changed rows (their JSON texts as they are: no row is encoded again;
    None: gone) and, if given, the member list."""
    # A key as ``json.JSONEncoder().encode`` quotes a string, without an encoder per call
    # (its set-up was most of a small record's cost).
    quote = encode_basestring_ascii
    body = ",".join(f"{quote(k)}:{'null' if t is None else t}" for k, t in changes.items())
    text = '{"rows":{' + body + "}"
    if members is not None:
        text += ',"members":' + json.dumps(members, separators=(",", ":"))
    return frame((text + "}").encode())


def split_records(data: bytes) -> tuple[list[Any], int]:
    """The parsed payloads of the intact records at the start of ``data``, and the offset
    where they end (``len(data)`` when every byte belongs to an intact record)."""
    out: list[Any] = []
    at = 0
    size = HEADER.size
    while at + size <= len(data):
        length, crc = HEADER.unpack_from(data, at)
        end = at + size + length
        if length > MAX_RECORD or end > len(data):
            break
        payload = data[at + size:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            out.append(json.loads(payload))
        except (ValueError, RecursionError):
            break
        at = end
    return out, at


def torn_tail(data: bytes, end: int) -> bool:
    """Whether the bytes of ``data`` from ``end`` (where :func:`split_records` stopped) are a
    torn tail: no intact record follows the broken one. One that does means damage before
    the end (a flipped bit, not a crash mid-append)."""
    if end >= len(data):
        return True
    if end + HEADER.size <= len(data):
        length, _ = HEADER.unpack_from(data, end)
        nxt = end + HEADER.size + length
        if length <= MAX_RECORD and nxt < len(data) and split_records(data[nxt:])[0]:
            return False
    return True


def apply_rows(table: dict[str, Any], rows: Mapping[str, Any]) -> bool:
    """Apply a record's rows to ``table`` (a whole table, ``{"tasks": {...}, ...}``); False if
    they are malformed (nothing is applied then)."""
    if not all(isinstance(k, str) and k[:2] in ("t:", "k:") for k in rows):
        return False
    tasks = table.get("tasks")
    if not isinstance(tasks, dict):
        tasks = table["tasks"] = {}
    for key, value in rows.items():
        name = key[2:]
        if key.startswith("t:"):
            if value is None:
                tasks.pop(name, None)
            else:
                tasks[name] = value
        elif value is None:
            table.pop(name, None)
        else:
            table[name] = value
    return True


def snapshot_text(items: list[tuple[str, str]]) -> str:
    """The table's JSON text from its rows' texts, with ``tasks`` always present (a snapshot
    is read as a table), joined in slices that let the node's loop run between them (this
    runs in a writer thread): :func:`clerk._replica.table_text`."""
    text = table_text(list(items), yield_gil=True)
    if text.startswith('{"tasks":'):
        return text
    return '{"tasks":{}' + ("," + text[1:] if text != "{}" else "}")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def sync_dir(path: Path) -> None:
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
