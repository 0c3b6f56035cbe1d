"""A whole row's run history holding a number that is not finite (clerk._finitejson).

A row's history is a JSON string inside the row: a delta's scan reads it as a string, and
only a patch's new entries were checked. A whole row whose history held ``1e400`` (read as
inf), ``NaN`` or ``Infinity`` was parsed as it was: the entry kept, the history written out
again with ``Infinity`` in it at the next result (not JSON), a status showing it. Now such an
entry is dropped where the history is parsed (``parse_run_history``), with a WARNING naming it.
"""

from __future__ import annotations

import json

import pytest

from clerk._control import make_entry, parse_run_history
from clerk._finitejson import finite_float, no_constant
from clerk._record import TaskRecord

GOOD = '[1,null,"a",1.0,2.0,"ok","",1,0]'
STRICT = json.JSONDecoder(parse_constant=no_constant, parse_float=finite_float).decode


@pytest.mark.timeout(10)
@pytest.mark.parametrize("bad", ['[2,null,"a",1e400,2.0,"ok","",1,0]',
                                 '[2,NaN,"a",1.0,2.0,"ok","",1,0]',
                                 '[2,null,"a",1.0,-Infinity,"ok","",1,0]'])
def test_an_entry_not_finite_in_a_whole_rows_history_is_dropped(
        bad: str, caplog: pytest.LogCaptureFixture) -> None:
    rec = TaskRecord.from_json({"run_history": f"[{GOOD},{bad}]"})
    assert rec is not None
    assert rec.run_history == [json.loads(GOOD)]  # main: the entry kept (inf, nan)
    rec.run_history.append(make_entry(slot=3, due_ms=None, node="b", start_ms=5.0,
                                      duration_ms=1.0, outcome="ok", error="", version=2,
                                      trigger=False), 8192)
    STRICT(rec.run_history.text())  # JSON still (main: 'Infinity'/'NaN' written out)
    STRICT(rec.to_text())
    assert "not finite ([1][" in caplog.text, caplog.text


@pytest.mark.timeout(10)
def test_a_good_history_is_kept_as_received() -> None:
    text = f"[{GOOD},{GOOD.replace('1,null', '2,null')}]"
    history = parse_run_history(text)
    assert len(history) == 2 and history.text() is text
    assert len(parse_run_history("[1e400]")) == 0  # (not an entry: dropped either way)
    assert len(parse_run_history("[[")) == 0


@pytest.mark.timeout(10)
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), float("-inf")])
def test_an_entry_not_finite_in_a_history_sent_as_a_list_is_dropped(
        bad: float, caplog: pytest.LogCaptureFixture) -> None:
    """The other wire form of a history (a list of entries, "its JSON text, or a list"): a
    packed table (an OFFER's rows, a quorum voter's) is read with ``json.loads``, which makes
    ``1e400`` inf and ``NaN`` nan. On main only the text form was checked: the entry was kept
    and the row's next encode wrote 'Infinity'/'NaN' into its history text."""
    entry = [2, None, "a", 1.0, 2.0, "ok", "", 1, 0]
    entry[4] = bad
    history = parse_run_history([json.loads(GOOD), entry])
    assert history.entries == [json.loads(GOOD)], history.entries
    STRICT(history.text())
    assert "not finite ([1][4]" in caplog.text, caplog.text


@pytest.mark.timeout(10)
def test_a_packed_rows_list_history_not_finite_is_dropped() -> None:
    """As an OFFER's packed rows bring it (clerk._record.unpack_table: json.loads)."""
    from clerk._record import unpack_table

    text = ('{"tasks":{"t":{"run_history":[' + GOOD + ',[2,null,"a",1e400,2.0,"ok","",1,0]'
            + ']}}}')
    table = unpack_table({"packed": 1, "chunks": [text]})
    rec = TaskRecord.from_json(table["tasks"]["t"])
    assert rec is not None
    assert rec.run_history.entries == [json.loads(GOOD)]  # main: the inf entry kept
    STRICT(rec.to_text())  # main: 'Infinity' in the row's text


@pytest.mark.timeout(10)
@pytest.mark.parametrize("history", [f'[{GOOD},[2,null,"a",1e400,2.0,"ok","",1,0]]',
                                     [json.loads(GOOD), [2, None, "a", float("inf"), 2.0,
                                                         "ok", "", 1, 0]]],
                         ids=["text", "list"])
def test_the_warning_names_the_row_the_entry_came_in(
        history: object, caplog: pytest.LogCaptureFixture) -> None:
    """A row read whole (``TaskRecord.from_json(raw, name)``, as a table's rows are): its
    history's WARNING names the row, as the pause register's does. On main it said only
    'run history: 1 entry dropped', in a table of thousands of rows."""
    rec = TaskRecord.from_json({"run_history": history}, "billing.nightly")
    assert rec is not None and rec.run_history.entries == [json.loads(GOOD)]
    assert "row 'billing.nightly': run history: 1 entry dropped" in caplog.text, caplog.text


@pytest.mark.timeout(10)
def test_a_metrics_scrape_names_the_row(caplog: pytest.LogCaptureFixture) -> None:
    """The scrape reads every row of the replicated table (clerk._metrics): it has the name."""
    pytest.importorskip("prometheus_client")
    from clerk._metrics import _task_families

    list(_task_families({"tasks": {"billing.nightly": {
        "run_history": f'[{GOOD},[2,null,"a",1e400,2.0,"ok","",1,0]]'}}}))
    assert "row 'billing.nightly': run history: 1 entry dropped" in caplog.text, caplog.text
