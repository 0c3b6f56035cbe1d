"""Rolling deploys: announcements, the one rule for disagreements, and the scheduler adopting
definitions (clerk._deploy, Scheduler.update_defs), with fake wall times."""

from __future__ import annotations

from datetime import datetime

import pytest

from clerk._deploy import (
    MAX_ANNOUNCE_CHARS,
    MAX_ENTRY_CHARS,
    announce,
    parse_entry,
    resolve,
    task_names,
)
from tests.unit.test_schedule import IV, K, due, run_ok, sched, started, tdef


def test_an_announcement_round_trips_and_names_come_back() -> None:
    d = tdef("poll", interval=2000, timeout=700, args={"url": "u"})
    (entry,) = announce([d], started=123.456)
    name, parsed, when = parse_entry(entry)
    assert (name, parsed, when) == ("poll", d, 123.456)
    assert task_names([entry, "bare"]) == ("poll", "bare")
    assert parse_entry("bare") == ("bare", None, 0.0)
    assert parse_entry("x\x1f{not json")[1] is None
    assert parse_entry('x\x1f{"target": "m:C", "interval": null}')[1] is None  # not schedulable


def test_huge_args_are_announced_by_name_only() -> None:
    big = tdef("big", args={"blob": "x" * MAX_ENTRY_CHARS})
    assert announce([big], 1.0) == ("big",)


def test_the_announcement_stays_within_its_budget() -> None:
    defs = [tdef(f"task{i}", args={"i": i}) for i in range(1000)]
    entries = announce(defs, 1.0)
    full = [e for e in entries if "\x1f" in e]
    assert sum(map(len, full)) <= MAX_ANNOUNCE_CHARS
    assert len(full) > 100  # the compact form fits a few hundred typical tasks
    assert task_names(entries) == tuple(d.name for d in defs)  # the rest by name
    assert parse_entry(full[-1])[1] == defs[len(full) - 1]  # defaults restored on parse


def test_every_task_any_live_member_has_is_scheduled() -> None:
    old, new = tdef("t"), tdef("fresh", interval=500)
    members = {"m": announce([old], 10.0), "n": announce([old, new], 20.0)}
    res = resolve([old], members)
    assert set(res.defs) == {"t", "fresh"} and res.defs["fresh"] == new
    assert res.loaded == {"m": ("t",), "n": ("t", "fresh")}
    assert res.variants == {}


def test_disagreement_the_most_recently_started_node_wins_and_is_shown() -> None:
    v1, v2 = tdef("t", interval=1000), tdef("t", interval=2000)
    members = {"old1": announce([v1], 10.0), "old2": announce([v1], 11.0),
               "new": announce([v2], 30.0)}
    res = resolve([v1], members)
    assert res.defs["t"] == v2
    variants = res.variants["t"]
    assert sorted((v["definition"]["interval"], v["nodes"], v["chosen"]) for v in variants) == [
        (1000, ["old1", "old2"], False), (2000, ["new"], True)]
    # The same answer whichever node computes it (the order of the members does not matter).
    again = resolve([v2], dict(reversed(list(members.items()))))
    assert again.defs == res.defs and again.variants == res.variants


def test_a_bare_name_uses_this_nodes_own_definition() -> None:
    mine = tdef("t", interval=3000)
    res = resolve([mine], {"a": ("t",)})
    assert res.defs == {"t": mine}
    assert resolve([], {"a": ("t",)}).defs == {}  # no definition anywhere: not scheduled


def test_the_scheduler_adopts_a_task_it_has_not_loaded_and_runs_it() -> None:
    s = started(sched(tdef("t")), due("t", K) + 0.1)
    new = tdef("new")
    notes = s.update_defs({"t": tdef("t"), "new": new}, due("new", K) + 0.1)
    assert notes == ["task=new is loaded by a live member: scheduling it"]
    next_due = s.status(due("new", K) + 0.1)[-1]["next_due"]  # ISO 8601 with the offset
    assert datetime.fromisoformat(next_due).timestamp() == pytest.approx(due("new", K + 1))
    node = run_ok(s, K + 1, name="new", members={"b": ("new",)})
    assert node == "b"  # only the member that has it


def test_a_changed_interval_applies_from_the_next_slot_of_the_new_grid() -> None:
    s = started(sched(tdef("t")), due("t", K) + 0.1)
    run_ok(s, K + 1)
    wall = due("t", K + 1) + 0.2
    (note,) = s.update_defs({"t": tdef("t", interval=2 * IV)}, wall)
    assert note == "task=t definition changed (interval 1000 -> 2000)"
    current = int((wall * 1000 - (due("t", 0, 2 * IV) * 1000)) // (2 * IV))
    assert s.next_slot["t"] == current + 1
    ds, _ = s.tick(due("t", current + 1, 2 * IV), {"a": ("t",)})
    assert [d.slot for d in ds] == [current + 1]


def test_a_task_no_live_member_has_stops_and_says_since_when() -> None:
    s = started(sched(tdef("t"), tdef("u")), due("t", K) + 0.1)
    gone_at = due("u", K) + 0.2
    assert s.update_defs({"t": tdef("t")}, gone_at) == [
        "task=u is no longer loaded by any live member: stopped"]
    row = next(r for r in s.status(gone_at) if r["name"] == "u")
    assert row["gone_since"] == gone_at and row["next_due"] is None
    for slot in range(K + 1, K + 4):
        ds, _ = s.tick(due("u", slot), {"a": ("t", "u")})
        assert all(d.task != "u" for d in ds)
    assert s.update_defs({"t": tdef("t")}, due("u", K + 4)) == []  # said once
    back = s.update_defs({"t": tdef("t"), "u": tdef("u")}, due("u", K + 4) + 0.1)
    assert back == ["task=u is loaded by a live member again: scheduling it"]
    ds, _ = s.tick(due("u", K + 5), {"a": ("t", "u")})
    assert [(d.task, d.slot) for d in ds if d.task == "u"] == [("u", K + 5)]


def test_a_record_without_a_definition_is_kept_until_one_comes() -> None:
    leader = started(sched(tdef("new")), due("new", K) + 0.1)
    run_ok(leader, K + 1, state={"n": 1}, name="new", members={"a": ("new",)})
    follower = sched(tdef("t"))  # has not loaded "new"
    follower.load(leader.table())
    assert "new" in follower.table()["tasks"]  # replicated onward, state intact
    follower.update_defs({"t": tdef("t"), "new": tdef("new")}, due("new", K + 2))
    follower.activate(due("new", K + 2) + 0.1, graceful=True)
    assert follower.records["new"].state == {"n": 1}
    assert follower.next_slot["new"] == K + 2


def test_cron_schedules_are_announced_and_a_bad_one_is_not_adopted() -> None:
    from clerk._tasks import TaskDef

    d = TaskDef(name="nightly", target="m:C", interval=None, cron="30 2 * * *",
                timezone="Europe/Berlin", catch_up="last")
    (entry,) = announce([d], started=5.0)
    assert parse_entry(entry) == ("nightly", d, 5.0)
    bad = entry.replace("Europe/Berlin", "Europe/Berlln")
    assert parse_entry(bad) == ("nightly", None, 5.0)  # this node could not schedule it
    assert parse_entry(entry.replace("30 2", "30 25"))[1] is None
    # An interval task's entry is unchanged by the cron keys (left out at their defaults).
    (plain,) = announce([tdef("poll")], started=1.0)
    assert '"c"' not in plain and '"z"' not in plain and '"u"' not in plain


def test_the_scheduler_adopts_an_announced_cron_task_and_a_new_grid_on_change() -> None:
    from clerk._tasks import TaskDef

    s = started(sched(tdef("t")), due("t", K) + 0.1)
    cron = TaskDef(name="t", target="x:Y", interval=None, cron="* * * * * *")
    wall = due("t", K) + 0.6
    (note,) = s.update_defs({"t": cron}, wall)
    assert "cron None -> * * * * * *" in note
    assert s.next_slot["t"] == int(wall) + 1  # the next fire time of the new grid
    ds, _ = s.tick(int(wall) + 1.0, {"a": ("t",)})
    assert [x.slot for x in ds] == [int(wall) + 1]
