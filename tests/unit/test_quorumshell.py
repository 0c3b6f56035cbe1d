"""The agent's quorum shell: VoterWrite durable before its answers (coalesced, in order),
QuorumChanged logged and gauged, status in both modes."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path

import pytest

import clerk
from clerk._coretypes import Effect, QuorumChanged, Send, VoterWrite
from clerk._messages import Ok, Peer
from clerk._metrics import NodeMetrics, Sources
from clerk._quorumshell import QuorumShell, default_quorum_status, describe
from clerk._voterstore import VoterStore
from supervisor.testing import wait_until
from tests.unit.test_metrics import scrape

pytestmark = pytest.mark.timeout(30)

V3 = ["a@h", "b@h", "c@h"]
ME = Peer("a@h", "h:1", "x", 0)


def _send(i: int) -> Send:
    return Send(to=f"h:{i}", msg=Ok(ME, i))


def test_default_mode_is_untouched(tmp_path: Path) -> None:
    shell = QuorumShell(clerk.Node(name="a@h", data_dir=str(tmp_path)).config, lambda: None)
    assert shell.core_kwargs() == {}, "the default mode's core gets no quorum arguments"
    assert shell.store is None and shell.gauges() is None
    assert shell.status({}) == default_quorum_status() == {
        "mode": "available", "voters": [], "reachable": [], "quorum": None, "detail": "",
        "promised": None}
    shell.close()
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_a_voter_reads_its_record_and_writes_before_answering(tmp_path: Path) -> None:
    config = clerk.Node(name="a@h", voters=V3, data_dir=str(tmp_path)).config
    record = {"version": 1, "promised": [2, 0, "a@h"], "rows": {}}
    pre = VoterStore(tmp_path, "a@h")
    pre.write(record, lambda: None)
    pre.close()
    woken = threading.Event()
    shell = QuorumShell(config, woken.set)
    assert shell.core_kwargs() == {"voters": ("a@h", "b@h", "c@h"), "voter_record": record}
    applied: list[list[Effect]] = []
    newer = [{"version": 1, "promised": [3, 0, "b@h"], "rows": {"t": {"reserved": i}}}
             for i in range(3)]
    # Consecutive VoterWrites of one batch: one write (the last record), every then in order.
    shell.voter_writes([VoterWrite(newer[0], (_send(0),)), VoterWrite(newer[1], ()),
                        VoterWrite(newer[2], (_send(1), _send(2)))], applied.append)
    assert applied == [], "nothing is sent before the record is durable"
    wait_until(woken.is_set, timeout=5)
    shell.deliver()
    assert applied == [[_send(0), _send(1), _send(2)]]
    assert shell.store is not None and shell.store.writes == 1
    assert VoterStore(tmp_path, "a@h").load() == newer[2]
    st = shell.status({})
    assert st["mode"] == "quorum" and st["quorum"] == "lost"  # before the core's first report
    assert st["voter_file"]["writes"] == 1 and st["voter_file"]["path"].endswith("voter.json")
    shell.close()


def test_a_non_voter_keeps_no_file(tmp_path: Path) -> None:
    shell = QuorumShell(clerk.Node(name="d@h", voters=V3, data_dir=str(tmp_path)).config,
                        lambda: None)
    assert shell.store is None
    assert shell.core_kwargs() == {"voters": ("a@h", "b@h", "c@h"), "voter_record": None}
    shell.close()


def test_a_corrupt_voter_file_stops_the_node(tmp_path: Path) -> None:
    (tmp_path / "voter.json").write_text("{")
    config = clerk.Node(name="a@h", voters=V3, data_dir=str(tmp_path)).config
    with pytest.raises(clerk.ConfigError, match="voter.json.*not valid JSON"):
        QuorumShell(config, lambda: None)


def test_quorum_changes_are_logged_and_gauged(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    shell = QuorumShell(clerk.Node(name="a@h", voters=V3, data_dir=str(tmp_path)).config,
                        lambda: None)
    with caplog.at_level(logging.INFO, logger="clerk.node"):
        shell.quorum_changed(QuorumChanged(True, ("a@h", "b@h", "c@h"), tuple(V3)))
        assert shell.gauges() == {"ok": 1.0, "reachable": 3.0, "voters": 3.0}
        shell.quorum_changed(QuorumChanged(False, ("c@h",), tuple(V3)))
    assert "quorum ok (3 of 3 voters reachable)" in caplog.text
    assert "quorum lost: 2 of 3 voters unreachable (a@h, b@h)" in caplog.text
    assert shell.gauges() == {"ok": 0.0, "reachable": 1.0, "voters": 3.0}
    m = scrape(Sources(node=NodeMetrics([]), is_manager=lambda: False, term=lambda: 0,
                       bad_frames=Counter, worker_restarts=lambda: 0, table=lambda: None,
                       quorum=shell.gauges))
    assert m["clerk_quorum_ok"] == 0 and m["clerk_quorum_voters_reachable"] == 1
    assert m["clerk_quorum_voters"] == 3
    plain = scrape(Sources(node=NodeMetrics([]), is_manager=lambda: False, term=lambda: 0,
                           bad_frames=Counter, worker_restarts=lambda: 0, table=lambda: None))
    assert not any(k.startswith("clerk_quorum") for k in plain), "no gauges in default mode"
    shell.close()


def test_describe_a_majority_that_does_not_accept() -> None:
    text = describe(False, ("a@h", "b@h", "c@h"), V3)
    assert text.startswith("quorum lost: no majority of the 3 voters accepted")
    assert describe(False, ("a@h", "b@h"), V3).startswith("quorum lost: no majority")
    assert describe(False, ("a@h",), V3) == "quorum lost: 2 of 3 voters unreachable (b@h, c@h)"


def test_status_table_shows_mode_voters_and_quorum() -> None:
    from clerk.__main__ import render_status

    base: dict[str, object] = {"node": "c@h", "role": "follower", "manager": None,
                               "members": [], "term": 4}
    text = render_status({**base, "quorum": {
        "mode": "quorum", "voters": V3, "reachable": ["c@h"], "quorum": "lost",
        "detail": "2 of 3 voters unreachable", "promised": [4, 0, "b@h"]}})
    assert "mode: quorum   quorum: lost (2 of 3 voters unreachable)" in text
    assert "voters: a@h (UNREACHABLE), b@h (UNREACHABLE), c@h (reachable)" in text
    text = render_status({**base, "quorum": {
        "mode": "quorum", "voters": V3, "reachable": V3, "quorum": "ok", "detail": "",
        "promised": None}})
    assert "quorum: ok\n" in text
    assert "mode: available (no voters)" in render_status(
        {**base, "quorum": default_quorum_status()})
