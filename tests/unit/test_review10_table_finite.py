"""review10: a packed table's non-finite numbers were let through when their path merely
*read* like a run history's (clerk._record.unpack_table matched ``.run_history[`` in the
dotted path): a state ``{"run_history": [NaN]}`` (or a task named ``x.run_history[0]``) came
back holding NaN, was adopted, and the table's next ``pack_table`` raised, which 215686d set
out to end. And a quorum write's rows (``<name>.record``) whose list-form history held one came
back as ``json.loads`` read them: a voter's register keeps the raw record (no
``parse_run_history``), so its next PROMISE's ``pack_table`` raised. Now the history entries
are dropped in ``unpack_table`` itself, at the rows' own places only, and no number that is not
finite is ever returned."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from clerk._quorum import VoterRegister, chunk_rows
from clerk._record import pack_table, unpack_table
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef

ENTRY = '[2,null,"a",1e400,2.0,"ok","",1,0]'
GOOD = '[1,null,"a",1.5,2.0,"ok","",1,0]'


def _packed(text: str) -> dict[str, Any]:
    return {"packed": 1, "chunks": [text[:9], text[9:]]}


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", [
    # a state whose key is run_history: a state, not the row's history
    '{"tasks":{"t":{"state":{"run_history":[NaN]},"has_state":true,"slot":3,"version":1}}}',
    '{"tasks":{"t":{"state":{"a":{"run_history":[[1,Infinity]]}},"has_state":true}}}',
    # a task whose name reads like a history path
    '{"tasks":{"x.run_history[0]":{"state":NaN,"has_state":true}}}',
    # the quorum form: a record's state key
    '{"t":{"reserved":3,"accepted":[1,"a",0],"seq":1,"record":{"state":{"run_history":[NaN]}}}}',
])
def test_a_number_not_finite_outside_a_rows_history_is_refused(
        text: str, caplog: pytest.LogCaptureFixture) -> None:
    """On main each came back with NaN/inf in it (a path containing '.run_history[')."""
    assert unpack_table(_packed(text)) is None
    assert "a packed table refused" in caplog.text, caplog.text


@pytest.mark.timeout(10)
def test_an_adopted_state_named_run_history_does_not_break_the_next_pack() -> None:
    """On main Scheduler.load adopted {'run_history': [nan]} and pack_table raised
    ValueError ('Out of range float values are not JSON compliant')."""
    s = Scheduler([TaskDef(name="t", target="m:C", interval=60_000, timeout=5_000)],
                  random.Random(1))
    s.load(_packed('{"tasks":{"t":{"state":{"run_history":[NaN]},"has_state":true,"slot":3,'
                   '"dispatched":3,"decided":3,"version":1,"origin":{"n":"a","t":1}}}}'))
    pack_table(s.table())
    assert _finite(s.table())


@pytest.mark.timeout(10)
def test_a_quorum_records_history_entries_are_dropped_before_a_voter_keeps_them(
        caplog: pytest.LogCaptureFixture) -> None:
    """On main the entry (inf) came back, the voter's register kept it as is, and its next
    PROMISE's pack_table raised ValueError."""
    text = ('{"t":{"reserved":3,"accepted":[1,"a",0],"seq":1,"record":{"state":1,'
            '"run_history":[' + GOOD + ',' + ENTRY + ']}}}')
    rows = unpack_table(_packed(text))
    assert rows is not None and _finite(rows)
    assert rows["t"]["record"]["run_history"] == [json.loads(GOOD)]
    assert rows["t"]["record"]["state"] == 1
    assert "row 't': run history: 1 entry dropped" in caplog.text, caplog.text
    reg = VoterRegister()
    assert reg.prepare((1, 0, "a"), "tcp://a:1")
    assert reg.accept((1, 0, "a"), 1, rows, "tcp://a:1")
    for part in chunk_rows(reg.rows_json()):
        pack_table(part)  # a PROMISE's rows


@pytest.mark.timeout(10)
def test_a_whole_tables_history_entries_are_dropped_there_and_named() -> None:
    text = '{"tasks":{"t":{"state":1,"run_history":[' + GOOD + ',' + ENTRY + ']}}}'
    table = unpack_table(_packed(text))
    assert table is not None and _finite(table)
    assert table["tasks"]["t"]["run_history"] == [json.loads(GOOD)]
