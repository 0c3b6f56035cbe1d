"""A row's run history replicated as what changed (clerk._histdelta): the manager's table log
sends a member that holds the log as of the delta's base only the entries it has not got, and
the member rebuilds the very text the manager holds; anything that does not fit is refused.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from clerk import _control
from clerk._control import RunHistory, make_entry, merge_run_history, parse_run_history
from clerk._histdelta import HistVersions, parse_hist
from clerk._messages import TableDelta
from clerk._record import TaskRecord
from clerk._replica import Replica, ReplicaLog, row_key

CAP = 2_000


@pytest.fixture(autouse=True)
def _short_histories_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' histories are short: patch them anyway (the threshold has its own test)."""
    monkeypatch.setattr(_control, "PATCH_MIN_CHARS", 0)


def entry(slot: int, error: str = "") -> list[object]:
    return make_entry(slot=slot, due_ms=1000.0 * slot, node="n1@h", start_ms=1000.0 * slot + 0.3,
                      duration_ms=0.25, outcome="error" if error else "ok", error=error,
                      version=slot, trigger=False)


def put(log: ReplicaLog, name: str, rec: TaskRecord) -> None:
    log.put(row_key(name), rec.to_text(), rec.run_history.patch_view())


def send(log: ReplicaLog, replica: Replica, hist: int) -> TableDelta | None:
    """The delta from the replica's position (whole or patched), applied."""
    d = log.delta(replica.seq if replica.log == log.log else -1, 10**9, hist)
    if d is not None:
        replica.apply(d)
    return d


def held_whole(entries: int) -> tuple[ReplicaLog, Replica, TaskRecord, TableDelta | None]:
    """A complete log of one row (``t:a``, its history ``entries`` long) and a replica sent
    it whole: (the log, the replica, the row, the delta it was sent)."""
    log, replica = ReplicaLog("L"), Replica()
    rec = TaskRecord()
    for i in range(entries):
        rec.run_history.append(entry(i), CAP)
    put(log, "a", rec)
    log.mark_complete()
    return log, replica, rec, send(log, replica, 1)


def test_a_history_knows_which_it_is_and_how_far() -> None:
    h = RunHistory()
    assert (h.n, len(h)) == (0, 0)
    for i in range(60):
        h.append(entry(i), CAP)
    assert h.n == 60 and len(h) < 60, "the oldest went, the count did not"
    view = h.patch_view()
    assert view is not None and view[:3] == (h.hid, 60, len(h.quoted()))
    assert h.quoted().endswith(",".join(view[3]) + ']"'), "the newest entries, as quoted"
    other = parse_run_history(h.text())
    assert other.hid != h.hid and other.n == len(h), "a parsed history is another one"
    merged = merge_run_history(h, RunHistory([entry(1000)]), CAP)
    assert merged.hid not in (h.hid, other.hid)
    spaced = parse_run_history(h.text().replace(",", ", "))
    assert spaced.patch_view() is None, "a text not made of its entries' texts goes whole"


def test_a_short_history_goes_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_control, "PATCH_MIN_CHARS", 1024)
    h = RunHistory()
    while len(h.quoted()) < 1024:
        assert h.patch_view() is None
        h.append(entry(h.n), 10**6)
    assert h.patch_view() is not None


def test_a_member_at_the_logs_end_gets_only_the_new_entries_and_rebuilds_the_same_row() -> None:
    log, replica, rec, first = held_whole(5)
    assert first is not None and first.hist is not None, "whole, with the history's identity"
    for i in range(5, 80):
        rec.dispatched = i
        put(log, "a", rec)  # a dispatch: the history as it was
        d = send(log, replica, 2)
        assert d is not None and d.hist is not None
        assert "run_history" not in "".join(d.rows), "only the row's head travels"
        assert dict(replica.items()) == dict(log.items())
        rec.slot = i
        rec.run_history.append(entry(i, error="boom" * (i % 3)), CAP)
        put(log, "a", rec)  # a result: one more entry (and the oldest gone past the cap)
        d = send(log, replica, 2)
        assert d is not None and d.hist is not None
        patch = parse_hist("".join(d.hist))["t:a"]  # type: ignore[index]
        assert patch[1:3] == [rec.run_history.n - 1, rec.run_history.n]
        assert dict(replica.items()) == dict(log.items())
    whole = len(rec.to_text())
    assert d is not None and d.hist is not None
    assert sum(len(p) for p in d.rows + d.hist) < whole / 3
    assert replica.refused == 0


def test_a_member_that_lacks_the_base_is_refused_the_patch_and_whole_rows_fix_it() -> None:
    log, replica = ReplicaLog("L"), Replica()
    rec = TaskRecord()
    rec.run_history.append(entry(0), CAP)
    put(log, "a", rec)
    log.mark_complete()
    send(log, replica, 0)  # an older manager's way: no identity
    rec.run_history.append(entry(1), CAP)
    put(log, "a", rec)
    patched = log.delta(replica.seq, 10**9, 2)
    assert patched is not None and patched.hist is not None
    assert not replica.apply(patched) and replica.refused_hist == 1, "no base: refused"
    assert dict(replica.items()) != dict(log.items())
    assert replica.apply(log.delta(replica.seq, 10**9, 1))  # type: ignore[arg-type]
    assert dict(replica.items()) == dict(log.items())
    rec.run_history = merge_run_history(rec.run_history, RunHistory([entry(7)]), CAP)
    put(log, "a", rec)  # another history (a merge): whole again
    d = log.delta(replica.seq, 10**9, 2)
    assert d is not None and d.hist is not None
    assert len(parse_hist("".join(d.hist))["t:a"]) == 3  # type: ignore[index]
    assert replica.apply(d) and dict(replica.items()) == dict(log.items())


def test_a_patch_that_does_not_fit_the_held_history_is_refused_whole() -> None:
    log, replica = ReplicaLog("L"), Replica()
    recs = {n: TaskRecord() for n in "ab"}
    for n, rec in recs.items():
        rec.run_history.append(entry(0), CAP)
        put(log, n, rec)
    log.mark_complete()
    send(log, replica, 1)
    held = dict(replica.items())
    for rec in recs.values():
        rec.run_history.append(entry(1), CAP)
    put(log, "a", recs["a"])
    put(log, "b", recs["b"])
    d = log.delta(replica.seq, 10**9, 2)
    assert d is not None and d.hist is not None
    hist = parse_hist("".join(d.hist))
    assert hist is not None
    hist["t:b"][1] += 5  # a base the member does not hold
    forged = TableDelta(d.log, d.base, d.upto, d.rows, d.gone, d.done, (json.dumps(hist),))
    assert not replica.apply(forged)
    assert dict(replica.items()) == held, "nothing of a refused delta applied"
    assert replica.apply(d) and dict(replica.items()) == dict(log.items())


def test_a_patch_keeps_whole_entries_and_adds_json_only() -> None:
    log, replica = ReplicaLog("L"), Replica()
    rec = TaskRecord()
    for i in range(3):
        rec.run_history.append(entry(i, error='quote " and \\ back'), CAP)
    put(log, "a", rec)
    log.mark_complete()
    send(log, replica, 1)
    rec.run_history.append(entry(3), 10**6)
    put(log, "a", rec)
    d = log.delta(replica.seq, 10**9, 2)
    assert d is not None and d.hist is not None
    hid, base_n, n, keep, new = parse_hist("".join(d.hist))["t:a"]  # type: ignore[index]
    for bad in ([hid, base_n, n, keep - 1, new], [hid, base_n, n, keep, new + "\\"],
                [hid, base_n + 1, n, keep, new], [hid + 1, base_n, n, keep, new]):
        forged = TableDelta(d.log, d.base, d.upto, d.rows, d.gone, d.done,
                            ('{"t:a":' + json.dumps(bad) + "}",))
        assert not Replica.apply(copy.deepcopy(replica), forged), bad
    assert replica.apply(d) and dict(replica.items()) == dict(log.items())


def test_the_log_notes_a_few_history_states_per_row() -> None:
    v = HistVersions()
    v.note("k", 3, (1, 1, 7, ("[0]",)))
    v.note("k", 4, (1, 1, 7, ("[0]",)))  # a dispatch: same history
    for seq in range(5, 12):
        v.note("k", seq, (1, seq - 3, 7, ("[0]",)))
    assert v.at("k", 2) is None, "before the row's first change here"
    assert v.at("k", 11) == (1, 8)
    assert v.at("k", 7) is None, "older than the states kept"
    v.note("k", 12, None)
    assert v.at("k", 12) is None and v.at("k", 11) == (1, 8)


def test_random_changes_and_members_at_random_positions_end_with_the_managers_rows() -> None:
    """Members pick up at random positions, some exact (after a delta that reached the log's
    end: patches), some after a cut one (whole rows); deltas are lost at random. Whatever
    happens, a member either refuses a delta or ends with exactly the log's rows."""
    rng = random.Random(11)
    for trial in range(30):
        log = ReplicaLog(f"L{trial}")
        recs = {f"t{i}": TaskRecord() for i in range(6)}
        slot = 0
        for n, rec in recs.items():
            put(log, n, rec)
        log.mark_complete()
        members = [Replica() for _ in range(3)]
        exact: list[set[int]] = [set() for _ in members]
        for _step in range(200):
            n = rng.choice(list(recs))
            rec = recs[n]
            op = rng.random()
            slot += 1
            if op < 0.4:
                rec.dispatched = slot
            elif op < 0.9:
                rec.slot = slot
                rec.run_history.append(entry(slot, "e" * rng.randrange(0, 300)),
                                       rng.choice([600, CAP]))
            else:
                rec.run_history = merge_run_history(rec.run_history,
                                                    RunHistory([entry(slot + 10**6)]), CAP)
            put(log, n, rec)
            for m, snaps in zip(members, exact, strict=True):
                if rng.random() < 0.5:
                    continue
                base = m.seq if m.log == log.log else -1
                d = log.delta(base, rng.choice([300, 3000, 10**9]), 2 if base in snaps else 1)
                if d is None or rng.random() < 0.1:
                    continue  # nothing to send, or lost
                end = log.seq
                if m.apply(d) and d.upto == end:
                    snaps.add(end)
                    assert dict(m.items()) == dict(log.items()), (trial, _step)
            for m in members:
                assert m.refused_hist == 0, "a patch only where the member holds its base"


def test_parse_hist_takes_exactly_the_two_shapes() -> None:
    """``[hid, n, qlen]`` or ``[hid, base_n, n, keep, "new"]`` of non-negative ints (no bool,
    no float) and a string; anything else refuses the whole ``hist``."""
    good = {"t:a": [1, 2, 30], "t:b": [1, 2, 3, 4, "x"], "t:c": [0, 0, 0, 0, ""]}
    assert parse_hist(json.dumps(good)) == good
    bad_values: list[object] = [
        [1, 2], [1, 2, 3, 4], [1, 2, 3, 4, "x", 6], [1, 2, -1], [1, -2, 3, 4, "x"],
        [True, 2, 3], [1, 2.0, 3], [1, 2, 3, 4, 5], [1, 2, 3, 4, None], [1, 2, 3, False, "x"],
        "1,2,3", {"hid": 1}, None, [1, 2, "3"],
    ]
    for value in bad_values:
        assert parse_hist(json.dumps({"t:a": [1, 2, 30], "t:b": value})) is None, value
    for text in ("[]", "1", "nope", '{"t:a": [1, 2, NaN]}', ""):
        assert parse_hist(text) is None, text


@pytest.mark.parametrize("number", ["1e400", "-1e999", "NaN", "Infinity"])
def test_a_patch_whose_new_entries_hold_a_number_that_is_not_finite_is_refused_by_name(
        number: str, caplog: pytest.LogCaptureFixture) -> None:
    """The new entries of a patch are JSON with finite numbers, as the manager writes them;
    ``1e400`` (which Python's json reads as inf) is refused with the row and the field named
    (on main the patch applied and the row held an entry with an inf duration)."""
    log, replica, rec, _ = held_whole(3)
    rec.run_history.append(entry(3), CAP)
    put(log, "a", rec)
    d = log.delta(replica.seq, 10**9, 2)
    assert d is not None and d.hist is not None
    hid, base_n, n, keep, new = parse_hist("".join(d.hist))["t:a"]  # type: ignore[index]
    assert "0.25" in new
    forged = TableDelta(d.log, d.base, d.upto, d.rows, d.gone, d.done,
                        ('{"t:a":' + json.dumps([hid, base_n, n, keep,
                                                 new.replace("0.25", number)]) + "}",))
    held = dict(replica.items())
    with caplog.at_level("WARNING", logger="clerk.replica"):
        assert not replica.apply(forged)
        assert not replica.apply(forged)  # sent again: refused again, logged once
    assert dict(replica.items()) == held and replica.refused_hist == 2
    assert replica.refusal.endswith(f"are not JSON: row 't:a', new run_history entry [0][4]: "
                                    f"{number} is not a finite number"), replica.refusal
    assert [r.getMessage() for r in caplog.records] == [
        f"refused a table delta: {replica.refusal}"]
    assert replica.apply(d) and dict(replica.items()) == dict(log.items())


def test_a_hist_with_a_number_that_is_not_finite_is_refused_by_name() -> None:
    assert parse_hist('{"t:a": [1, 2, 1e400]}') is None
    replica = Replica()
    replica.apply(TableDelta("L", -1, 1, ('{"t:a":{"x":1}}',)))
    forged = TableDelta("L", 1, 2, ('{"t:a":{"x":2}}',), (), False, ('{"t:a": [1, 2, 1e400]}',))
    assert not replica.apply(forged)
    assert replica.refusal.endswith("row 't:a', history patch field [2]: 1e400 is not a finite "
                                    "number"), replica.refusal
