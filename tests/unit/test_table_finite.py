"""A number that is not finite in a packed table's rows or in a whole row's pause register
(clerk._finitejson). A packed table (a HANDOVER's, an ACCEPT's, a PROMISE's rows) was read with
``json.loads``, which reads ``NaN``, ``Infinity`` and ``1e400`` (as inf): the row was adopted,
and the table's next ``pack_table`` (``allow_nan=False``) raised. A pause register's ``at`` was
not checked either. Now the table is refused whole and the pause register dropped, each with a
WARNING naming the row and the field."""

from __future__ import annotations

import json
import random

import pytest

from clerk._control import parse_pause
from clerk._record import TaskRecord, pack_table, unpack_table
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef

DEFS = [TaskDef(name="t", target="m:C", interval=60_000, timeout=5_000)]


def _packed(text: str) -> dict[str, object]:
    return {"packed": 1, "chunks": [text[:7], text[7:]]}


def _table(value: str) -> str:
    return ('{"tasks":{"t":{"state":{"n":1,"x":VALUE},"has_state":true,"slot":3,'
            '"dispatched":3,"decided":3,"version":1}},"node_runs":{}}').replace("VALUE", value)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("bad", ["Infinity", "-Infinity", "NaN", "1e400", "-1e400"])
def test_a_packed_table_holding_a_number_not_finite_is_refused_naming_row_and_field(
        bad: str, caplog: pytest.LogCaptureFixture) -> None:
    """On main the table came back with inf/nan in task t's state; adopted, the scheduler's
    next pack_table raised ValueError ('Out of range float values are not JSON compliant')."""
    packed = _packed(_table(bad))
    assert unpack_table(packed) is None
    assert "tasks.t.state.x: " + bad in caplog.text, caplog.text


@pytest.mark.timeout(10)
@pytest.mark.parametrize("bad", ["Infinity", "NaN", "1e400"])
def test_a_scheduler_given_such_a_table_still_packs_its_own(bad: str) -> None:
    s = Scheduler(DEFS, random.Random(1))
    s.load(_packed(_table(bad)))  # a HANDOVER's table: refused, nothing adopted
    text = pack_table(s.table())["chunks"]
    assert "Infinity" not in "".join(text) and "NaN" not in "".join(text)
    assert s.records["t"].state is None


@pytest.mark.timeout(10)
def test_a_packed_table_of_finite_numbers_reads_as_json_loads_does() -> None:
    text = _table("[1.5, -2e300, 1e-320, 7, 0.1]")
    assert unpack_table(_packed(text)) == json.loads(text)
    assert unpack_table(_packed(text[:-3])) is None  # not JSON: malformed, as before
    rows = {"t": {"record": {"state": 1.25}}}  # the quorum form (rows at the top)
    assert unpack_table(pack_table(rows)) == rows
    assert unpack_table(rows) is rows  # not packed: as is


@pytest.mark.timeout(10)
def test_the_quorum_form_names_its_row(caplog: pytest.LogCaptureFixture) -> None:
    assert unpack_table(_packed('{"a":{"record":{"state":1}},"b":{"record":{"last":'
                                '{"duration_ms":NaN}}}}')) is None
    assert "b.record.last.duration_ms: NaN" in caplog.text, caplog.text


@pytest.mark.timeout(10)
@pytest.mark.parametrize("at", [float("inf"), float("-inf"), float("nan"), 10 ** 400])
def test_a_pause_whose_at_is_not_finite_is_dropped_with_a_warning(
        at: float, caplog: pytest.LogCaptureFixture) -> None:
    """On main the register was kept (inf, nan; an int past the largest float made the whole
    row None, OverflowError), and the row's next encode raised."""
    raw = {"state": 1, "has_state": True, "pause": {"paused": True, "node": "a", "at": at}}
    rec = TaskRecord.from_json(raw)
    assert rec is not None and rec.pause is None and not rec.paused
    rec.to_text()  # encodes (allow_nan=False)
    assert "pause register dropped: its at is not a finite number" in caplog.text
    assert parse_pause(raw["pause"], "t") is None
    assert "row 't': pause register dropped" in caplog.text, caplog.text
    good = {"paused": True, "node": "a", "at": 5}
    assert parse_pause(good) == {"paused": True, "node": "a", "at": 5.0}


@pytest.mark.timeout(10)
def test_only_history_entries_not_finite_keep_the_table(
        caplog: pytest.LogCaptureFixture) -> None:
    """A history's entries are dropped where the row is read (parse_run_history, as in
    test_history_finite), the row kept; one more such number elsewhere refuses the table."""
    entry = '[2,null,"a",1e400,2.0,"ok","",1,0]'
    history = '{"tasks":{"t":{"state":1,"run_history":[' + entry + ']}}}'
    table = unpack_table(_packed(history))
    assert table is not None and table["tasks"]["t"]["state"] == 1
    both = history.replace('"state":1', '"state":NaN')
    assert unpack_table(_packed(both)) is None
    assert "1 number in it not finite (tasks.t.state: NaN)" in caplog.text, caplog.text
