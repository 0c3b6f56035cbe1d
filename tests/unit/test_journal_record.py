"""A journal record's bytes: ``change_record`` quotes its keys without an encoder per call and
must give the bytes the per-call ``json.JSONEncoder`` gave (an older build reads them)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from clerk._journal import HEADER, change_record, split_records


def _old_record(changes: Mapping[str, str | None],
                members: dict[str, str] | None = None) -> bytes:
    """``change_record`` as it was (an encoder made at every call)."""
    dump = json.JSONEncoder(separators=(",", ":")).encode
    body = ",".join(f"{dump(k)}:{'null' if t is None else t}" for k, t in changes.items())
    text = '{"rows":{' + body + "}"
    if members is not None:
        text += ',"members":' + dump(members)
    payload = (text + "}").encode()
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


_rows = st.one_of(st.none(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8).map(lambda v: json.dumps(v, separators=(",", ":"))))


@given(st.dictionaries(st.text(), _rows, max_size=6),
       st.none() | st.dictionaries(st.text(), st.text(), max_size=3))
def test_a_record_is_the_bytes_of_the_per_call_encoder(
        changes: dict[str, str | None], members: dict[str, str] | None) -> None:
    got = change_record(changes, members)
    assert got == _old_record(changes, members)
    (payload,), end = split_records(got)
    assert end == len(got)
    assert payload["rows"] == {k: None if t is None else json.loads(t)
                               for k, t in changes.items()}
    if members is not None:
        assert payload["members"] == members
