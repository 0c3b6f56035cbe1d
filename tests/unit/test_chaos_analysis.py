"""The chaos tool's analysis (tools/_chaos_analysis.py): pure rules over a ledger and faults."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from _chaos_analysis import (  # type: ignore[import-not-found]  # noqa: E402
    CHECKS,
    analyse,
    render,
    violations,
)

pytestmark = pytest.mark.timeout(30)

IV = 200
A, B, C, D, E = "a", "b", "c", "d", "e"


def run(slot: int, count: int, node: str = A, late: float = 3.0) -> dict[str, Any]:
    return {"slot": slot, "term": 1, "node": node, "count": count, "due": slot * IV,
            "start": slot * IV + late}


def steady(first: int, last: int, count0: int, node: str = A) -> list[dict[str, Any]]:
    return [run(s, count0 + s - first, node) for s in range(first, last + 1)]


def report(ledger: list[dict[str, Any]], faults: list[dict[str, Any]] | None = None,
           **kw: Any) -> dict[str, Any]:
    end = max(r["start"] for r in ledger) + IV
    return analyse(ledger, faults or [], interval=IV, late_ms=kw.pop("late_ms", IV),
                   heal_max_ms=kw.pop("heal_max_ms", 2000), end=end, **kw)


def split(cut_slot: int, up_slot: int, healed_ms: float | None,
          sides: list[list[str]]) -> dict[str, Any]:
    cut, up = cut_slot * IV - 50, up_slot * IV - 50
    return {"kind": "split", "start": cut, "end": up + 500, "nodes": sides[1], "cut": cut,
            "up": up, "healed": None if healed_ms is None else up + healed_ms, "sides": sides,
            "window_ms": 1000}


def test_a_clean_connected_run_breaks_nothing() -> None:
    r = report(steady(0, 99, 0))
    assert r["runs"] == r["slots"] == 100
    assert r["twice_connected"] == r["twice_partitioned"] == []
    assert r["late"] == 0 and r["regressions"] == []
    assert violations(r, CHECKS) == []
    assert "| runs / distinct slots | 100 / 100 |" in render(r, 0)


def test_a_slot_run_twice_counts_as_partitioned_only_inside_the_partition() -> None:
    ledger = steady(0, 49, 0)
    ledger.append(run(10, 10, B))                   # connected: a resumed manager's double
    ledger.append(run(30, 30, B))                   # inside the split below
    f = split(25, 40, 300, [[A, C, D], [B, E]])
    r = report(ledger, [f])
    assert r["twice_connected"] == [10]
    assert r["twice_partitioned"] == [30]
    assert violations(r, ["twice"]) and not violations(r, ["late"])


def test_a_heal_that_takes_too_long_stops_counting_as_partitioned() -> None:
    ledger = steady(0, 99, 0) + [run(60, 60, B)]
    f = split(25, 40, None, [[A, C, D], [B, E]])    # never healed: partitioned until up + 2 s
    r = report(ledger, [f])
    assert r["twice_connected"] == [60] and r["unhealed"] == 1
    assert any(v.startswith("unhealed") for v in violations(r, CHECKS))


def test_late_runs_are_over_the_threshold_only() -> None:
    ledger = steady(0, 9, 0)
    ledger[3]["start"] += IV          # just over one interval late: the node should drop it
    ledger[5]["start"] += IV - 10     # under: fine
    r = report(ledger)
    assert r["late"] == 1 and r["lateness_ms"]["max"] == pytest.approx(IV + 3)
    assert violations(r, ["late"]) == [f"late: 1 runs started > {IV} ms late"]


def partitioned_ledger(major_runs: int, minor_runs: int, after: int,
                       minor_base: int = 20) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """20 connected runs (counts 0-19), a split at slot 20 (majority A/C/D, minority B/E),
    then runs after the heal from ``after``."""
    ledger = steady(0, 19, 0)
    ledger += [run(20 + i, 20 + i, A) for i in range(major_runs)]
    ledger += [run(20 + i, minor_base + i, B) for i in range(minor_runs)]
    ledger += [run(41 + i, after + i, C) for i in range(10)]
    return ledger, split(20, 40, 200, [[A, C, D], [B, E]])


def test_a_heal_where_more_history_wins_is_good_and_counts_the_dropped_side() -> None:
    ledger, f = partitioned_ledger(major_runs=15, minor_runs=8, after=35)
    [h] = report(ledger, [f])["heals"]
    assert (h["pre"], h["tops"], h["after"]) == (20, [35, 28], 35)
    assert h["winner"] == 0 and h["dropped"] == 8 and not h["bad"]
    assert h["heal_ms"] == 200


def test_a_heal_where_less_history_wins_is_bad() -> None:
    ledger, f = partitioned_ledger(major_runs=15, minor_runs=8, after=28)
    r = report(ledger, [f])
    [h] = r["heals"]
    assert h["winner"] == 1 and h["below_best"] == 7 and h["bad"]
    assert any(v.startswith("heal-loss") for v in violations(r, CHECKS))


def test_a_stale_run_after_the_heal_does_not_decide_the_winner() -> None:
    ledger, f = partitioned_ledger(major_runs=15, minor_runs=8, after=35)
    stale = run(19, 19, B, late=f["healed"] + 10 - 19 * IV)  # an EXECUTE queued in the split
    r = report(ledger + [stale], [f])
    [h] = r["heals"]
    assert h["after"] == 35 and h["winner"] == 0 and not h["bad"]
    assert r["late"] == 1 and r["twice_connected"] == [19]


def test_runs_on_one_sides_table_just_before_the_merge_lands_are_not_the_outcome() -> None:
    # The managers agreed, the majority ran twice more on its own table, then the merged
    # table (the minority's, with more history) took over: more history won.
    ledger, f = partitioned_ledger(major_runs=8, minor_runs=15, after=28)
    ledger = [r for r in ledger if r["slot"] < 41]
    ledger += [run(41, 28, C), run(42, 29, C), run(43, 35, D), run(44, 36, D), run(45, 37, C)]
    [h] = report(ledger, [f])["heals"]
    assert (h["tops"], h["after"], h["winner"], h["bad"]) == ([28, 35], 35, 1, False)


def linked(runs: list[tuple[int, int, str, str | None]]) -> list[dict[str, Any]]:
    """Runs (slot, count, node, from) as the ledger writes them now: ``from`` names the run
    whose result each one received, ``"<node>/<slot>"``."""
    return [dict(run(slot, count, node), **{"from": parent})
            for slot, count, node, parent in runs]


def chain(first: int, last: int, count0: int, node: str,
          parent: str | None) -> list[tuple[int, int, str, str | None]]:
    out = []
    for slot in range(first, last + 1):
        out.append((slot, count0 + slot - first, node, parent))
        parent = f"{node}/{slot}"
    return out


def test_a_merged_count_that_happens_to_follow_the_losing_sides_runs_is_told_by_from() -> None:
    # Chaos seed 9 in CI: the majority reached 79, the minority 77. After the managers agreed
    # (the minority's won the election) it ran 77 and 78 on its own table, then the merge kept
    # the majority's 79, and the next run received 79: by counts alone 77, 78, 79, 80 is one
    # unbroken line from the minority's table (2 updates lost); ``from`` shows the jump.
    pre = chain(0, 19, 0, A, None)
    major = chain(20, 38, 20, C, f"{A}/19")                    # counts 20..38: top 39
    minor = chain(20, 36, 20, B, f"{A}/19")                    # counts 20..36: top 37
    after_heal = [(41, 37, B, f"{B}/36"), (42, 38, B, f"{B}/41"),
                  (43, 39, D, f"{C}/38")] + chain(44, 50, 40, D, f"{D}/43")
    ledger = linked(pre + major + minor + after_heal)
    f = split(20, 40, 150, [[A, C, D], [B, E]])
    [h] = report(ledger, [f])["heals"]
    assert (h["tops"], h["after"], h["winner"], h["bad"]) == ([39, 37], 39, 0, False)
    # The same ledger without ``from`` (an older one) reads as the loss it is not.
    legacy = [{k: v for k, v in r.items() if k != "from"} for r in ledger]
    [old] = report(legacy, [f])["heals"]
    assert (old["after"], old["bad"]) == (37, True)


def test_the_winners_runs_before_the_merge_and_nothing_after_it_in_the_window() -> None:
    # Chaos seed 9, twice in 9 runs on main (kept in the chaos14 branch's report): the
    # majority reached 39, the minority 37; after the heal the minority's manager (the
    # election's winner) ran twice on its own table, then merged the majority's (more
    # history) and held its slots for the members' OFFERs until the next fault; the first run
    # after that (here slot 60, past the window) received the majority's 39. The window's two
    # runs are one unbroken chain of the minority's: they are not the outcome.
    pre = chain(0, 19, 0, A, None)
    major = chain(20, 38, 20, C, f"{A}/19")                    # counts 20..38: top 39
    minor = chain(20, 36, 20, B, f"{A}/19")                    # counts 20..36: top 37
    after_heal: list[tuple[int, int, str, str | None]] = [(41, 37, B, f"{B}/36"),
                                                          (42, 38, B, f"{B}/41")]
    after_heal += chain(60, 65, 39, D, f"{C}/38")
    ledger = linked(pre + major + minor + after_heal)
    f = split(20, 40, 150, [[A, C, D], [B, E]])
    nxt = {"kind": "full-stop-kill", "start": 50 * IV, "end": 55 * IV, "nodes": [A, B, C, D, E],
           "window_ms": None}
    [h] = report(ledger, [f, nxt])["heals"]
    assert (h["tops"], h["after"], h["winner"], h["bad"]) == ([39, 37], 39, 0, False)
    # Had the run after the window continued the minority's chain, the minority's table won.
    lost = linked(pre + major + minor + [(41, 37, B, f"{B}/36"), (42, 38, B, f"{B}/41")]
                  + chain(60, 65, 39, D, f"{B}/42"))
    [h] = report(lost, [f, nxt])["heals"]
    assert (h["after"], h["winner"], h["bad"]) == (37, 1, True)


def test_a_lesser_table_that_runs_on_is_bad_by_from_too() -> None:
    pre = chain(0, 19, 0, A, None)
    major = chain(20, 38, 20, C, f"{A}/19")
    minor = chain(20, 36, 20, B, f"{A}/19")
    after_heal = chain(41, 50, 37, D, f"{B}/36")               # the minority's table went on
    [h] = report(linked(pre + major + minor + after_heal),
                 [split(20, 40, 150, [[A, C, D], [B, E]])])["heals"]
    assert (h["after"], h["winner"], h["below_best"], h["bad"]) == (37, 1, 2, True)


def test_a_lesser_table_that_runs_on_after_the_heal_is_still_bad() -> None:
    ledger, f = partitioned_ledger(major_runs=8, minor_runs=15, after=28)
    [h] = report(ledger, [f])["heals"]
    assert (h["after"], h["winner"], h["below_best"], h["bad"]) == (28, 0, 7, True)


def test_a_table_that_is_neither_sides_has_no_winner() -> None:
    # Both sides ran on, and the merge brought back the table from before the split.
    ledger, f = partitioned_ledger(major_runs=15, minor_runs=8, after=20)
    [h] = report(ledger, [f])["heals"]
    assert h["winner"] is None and h["bad"] and h["below_best"] == 15
    assert "| 20 BAD | none |" in render(report(ledger, [f]), 0)


def test_one_update_below_the_best_side_is_tolerated() -> None:
    ledger, f = partitioned_ledger(major_runs=15, minor_runs=8, after=34)
    assert not report(ledger, [f])["heals"][0]["bad"]


def test_a_reinitialised_side_that_wins_is_bad_and_a_regression() -> None:
    # The cut-off seed restarted and called init (counts from 0); its table won the merge.
    ledger, f = partitioned_ledger(major_runs=15, minor_runs=8, after=8, minor_base=0)
    r = report(ledger, [f])
    [h] = r["heals"]
    assert h["after"] == 8 and h["below_pre"] == 12 and h["bad"]
    kinds = sorted((x["partitioned"], x["from"], x["to"]) for x in r["regressions"])
    assert kinds == [(False, 20, 8), (True, 20, 0)]  # the reset side once, the heal once


def test_a_connected_drop_counts_once() -> None:
    ledger = steady(0, 9, 0) + steady(10, 29, 0)  # a full stop lost everything: 10 -> 0
    regs = report(ledger)["regressions"]
    assert [(x["from"], x["to"]) for x in regs] == [(10, 0)]


def test_missed_slots_are_charged_to_the_fault_whose_span_holds_them() -> None:
    ledger = steady(0, 9, 0) + steady(20, 39, 10) + steady(42, 60, 30)
    kill = {"kind": "kill-manager", "start": 9 * IV + 50, "end": 12 * IV, "nodes": [A],
            "window_ms": 1000}
    term = {"kind": "term-node", "start": 35 * IV, "end": 36 * IV, "nodes": [B],
            "window_ms": 1000}
    r = report(ledger, [kill, term])
    assert [(m["kind"], m["missed"], m["allowed"], m["over"]) for m in r["missed"]] == [
        ("kill-manager", 10, 6, True), ("term-node", 2, 6, False)]
    assert violations(r, ["kill-idle"]) == [
        "kill-idle: 1 manager kills idled the task past the window"]


def test_a_slot_run_twice_while_connected_is_charged_to_its_fault() -> None:
    ledger = steady(0, 59, 0) + [run(33, 10, B, late=20)]  # a resumed manager's stale run
    pause = {"kind": "pause-manager", "start": 25 * IV, "end": 32 * IV, "nodes": [B],
             "window_ms": 1000}
    term = {"kind": "term-node", "start": 40 * IV, "end": 41 * IV, "nodes": [C],
            "window_ms": 1000}
    r = report(ledger, [pause, term])
    assert [m["twice"] for m in r["missed"]] == [1, 0]
    assert r["regressions"][0]["to"] == 10


def full_stop(kind: str, lost: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ledger = steady(0, 19, 0) + steady(40, 50, 20 - lost)
    return ledger, {"kind": kind, "start": 20 * IV, "end": 39 * IV, "nodes": [A, B],
                    "window_ms": None}


@pytest.mark.parametrize(("kind", "lost", "bad"), [
    ("full-stop-term", 0, False), ("full-stop-term", 1, True),
    ("full-stop-kill", 1, False), ("full-stop-kill", 2, True),
])
def test_a_full_stop_must_continue_the_counter(kind: str, lost: int, bad: bool) -> None:
    ledger, f = full_stop(kind, lost)
    r = report(ledger, [f])
    [s] = r["full_stops"]
    assert (s["before"], s["after"], s["lost"], s["bad"]) == (20, 20 - lost, lost, bad)
    assert bool(violations(r, ["full-stop"])) is bad
    assert r["missed"][0]["allowed"] is None  # down on purpose: no failover window


def test_slow_heals_and_deaths_are_violations_only_when_enforced() -> None:
    ledger, f = partitioned_ledger(major_runs=15, minor_runs=8, after=35)
    f["healed"] = f["up"] + 2500
    r = report(ledger, [f], deaths=[{"node": B, "t": 0, "code": 1}],
               rss={A: [100.0, 104.0]})
    assert r["heal_times_ms"]["max"] == 2500
    assert [v.split(":")[0] for v in violations(r, CHECKS)] == ["heal-time", "dead"]
    assert violations(r, ["twice", "late"]) == []
    text = render(r, 0)
    assert "| a | 100 -> 104 | +4 |" in text and "dead on its own: b" in text


def test_the_tool_says_why_it_cannot_run_without_root(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import _chaos_net  # type: ignore[import-not-found]
    import chaos  # type: ignore[import-not-found]

    monkeypatch.setattr(_chaos_net.os, "geteuid", lambda: 1000)
    assert chaos.main(["--seconds", "1"]) == 2
    assert "chaos: cannot run here: needs root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        chaos.main(["--enforce", "twice,nonsense"])
    assert "unknown checks ['nonsense']" in capsys.readouterr().err


# --- quorum mode (issue 10) --------------------------------------------------------------------

V = [A, B, C]  # the voters; D and E do not vote


def test_quorum_checks_only_in_quorum_mode() -> None:
    from _chaos_analysis import QUORUM_CHECKS

    r = report(steady(0, 49, 0))
    assert "voters" not in r and violations(r, QUORUM_CHECKS) == []
    q = report(steady(0, 49, 0), voters=V)
    assert q["committed_lost"] == [] and q["minority"] == []
    assert violations(q, {**CHECKS, **QUORUM_CHECKS}) == []
    assert "| quorum: committed updates lost | 0 |" in render(q, 0)


def test_quorum_mode_counts_a_partitioned_double_and_a_busy_minority() -> None:
    from _chaos_analysis import QUORUM_CHECKS

    ledger = steady(0, 24, 0) + [run(s, s, D) for s in range(25, 50)]
    # The split: {A, D, E} (one voter: a minority) | {B, C} (two voters: the majority side).
    f = split(25, 40, 300, [[A, D, E], [B, C]])
    ledger.append(run(30, 30, B))  # the majority side ran slot 30 too
    r = report(ledger, [f], voters=V)
    assert r["twice_partitioned"] == [30]
    (minority,) = r["minority"]
    assert minority["side"] == [A, D, E] and minority["runs"] == 15 and minority["over"]
    broken = violations(r, QUORUM_CHECKS)
    assert any(b.startswith("twice-any: 1 ") for b in broken)
    assert any(b.startswith("minority-idle: 1 ") for b in broken)


def test_a_minority_may_run_one_reserved_slot_and_a_count_may_repeat() -> None:
    from _chaos_analysis import QUORUM_CHECKS

    ledger = steady(0, 25, 0, node=D)  # slot 25 was reserved and sent before the cut
    ledger += [run(s, s - 1, B) for s in range(27, 50)]  # slot 25's result never committed
    f = split(25, 40, 300, [[C, D], [A, B, E]])
    ledger[25]["start"] = 25 * IV + 3  # after the cut (at 25 * IV - 50)
    r = report(ledger, [f], voters=V)
    assert r["minority"][0]["runs"] == 1 and not r["minority"][0]["over"]
    assert r["committed_lost"] == []
    assert violations(r, QUORUM_CHECKS) == []


def test_a_run_receiving_less_than_an_earlier_slot_lost_a_committed_update() -> None:
    from _chaos_analysis import QUORUM_CHECKS

    ledger = steady(0, 20, 0) + [run(s, s - 3, B) for s in range(21, 30)]
    r = report(ledger, voters=V)
    assert r["committed_lost"][0] == {"at": 21 * IV + 3, "slot": 21, "from": 20, "to": 18,
                                      "node": B}
    assert any(b.startswith("committed-lost") for b in violations(r, QUORUM_CHECKS))
    assert any(b.startswith("regress-any") for b in violations(r, QUORUM_CHECKS))
